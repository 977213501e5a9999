"""Running an app under uvicorn: the access log's handler, and a graceful stop on SIGTERM.

On SIGTERM (`docker stop`, `kill`, systemd, Kubernetes) uvicorn stops accepting connections,
lets the requests in flight finish (at most `shutdown_timeout_s`), runs the app's shutdown,
and `serve` returns normally, so the process exits 0. uvicorn re-raises the signal it caught
once it is done; `serve` catches that re-raised SIGTERM instead of letting it kill the process.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from changeseg.errors import ChangesegError

ACCESS_LOGGER = "changeseg.access"


def configure_access_log(enabled: bool = True, stream: Any = None) -> logging.Logger:
    """Send the JSON access lines (logger `changeseg.access`) to `stream` (default stderr), one per line.

    The lines are written at INFO whatever uvicorn's `--log-level`; `enabled=False` silences them.
    """
    logger = logging.getLogger(ACCESS_LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if enabled else logging.CRITICAL + 1)
    logger.propagate = False
    return logger


class ServerStartError(ChangesegError):
    """The server could not start listening (the address is in use, or not allowed)."""


def serve(app: Any, host: str, port: int, log_level: str = "info",
          shutdown_timeout_s: int | None = None) -> str | None:
    """Serve `app` on host:port until stopped; returns the name of the signal that stopped it, if any.

    Requests in flight when SIGTERM or SIGINT arrives are finished before this returns (for at
    most `shutdown_timeout_s` seconds; None waits for them however long they take).
    """
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=shutdown_timeout_s)
    server = uvicorn.Server(config)
    received: list[int] = []

    def note_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, note_signal) if in_main_thread else None
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot listen (address in use, no permission)
        raise ServerStartError(f"could not serve on {host}:{port} (exit code {exc.code}; "
                               "uvicorn's message is above)") from None
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return signal.Signals(received[0]).name if received else None
