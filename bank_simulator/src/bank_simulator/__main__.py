"""``python -m bank_simulator``: serve on ``HOST``/``PORT`` (default 127.0.0.1:8081)."""

from __future__ import annotations

import os

import uvicorn


def main() -> None:
    uvicorn.run(
        "bank_simulator.main:app",
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8081")),
        access_log=False,
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
        server_header=False,
    )


if __name__ == "__main__":
    main()
