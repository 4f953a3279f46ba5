"""ASGI entry point: ``uvicorn bank_simulator.main:app --port 8081`` (configured by env)."""

from bank_simulator.app import create_app

app = create_app()
