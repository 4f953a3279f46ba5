"""ASGI entry point: ``uvicorn bank_simulator.main:app --port 8081`` (configured by env)."""

import gc

from bank_simulator.app import create_app

app = create_app()

# The app and its imports live as long as the process: keep them out of the garbage
# collector's full passes, which otherwise walk them all again and again under load.
gc.collect()
gc.freeze()
