"""The service's resource limits and the middleware enforcing the request-body limit.

`ServiceLimits` holds every limit `create_app` applies (body size, pixels, concurrency, queue,
time) and checks their ranges; `UploadLimitMiddleware` refuses request bodies over the size
limit with 413 while they stream in, so no upload is buffered beyond it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from changeseg.errors import InputError
from changeseg.service.asgi import content_length, send_json

DEFAULT_MAX_UPLOAD_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class ServiceLimits:
    """The service's resource limits (see `create_app`)."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_concurrency: int = 1
    queue_size: int = 8
    request_timeout_s: float = 60.0

    def check(self) -> None:
        """Raise InputError if any limit is out of range."""
        if self.max_upload_bytes < 1:
            raise InputError(f"max_upload_bytes must be positive, got {self.max_upload_bytes}")
        if self.max_pixels < 1:
            raise InputError(f"max_pixels must be positive, got {self.max_pixels}")
        if self.max_concurrency < 1:
            raise InputError(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.queue_size < 0:
            raise InputError(f"queue_size must be 0 or more, got {self.queue_size}")
        if not self.request_timeout_s > 0:
            raise InputError(f"request_timeout_s must be positive, got {self.request_timeout_s}")

    def as_dict(self) -> dict[str, Any]:
        """The limits as reported by `/v1/models`."""
        return {"max_upload_bytes": self.max_upload_bytes, "max_pixels": self.max_pixels,
                "max_concurrency": self.max_concurrency, "queue_size": self.queue_size,
                "request_timeout_s": self.request_timeout_s}


class _BodyTooLarge(Exception):
    """Raised from `receive` once a request body passes the upload limit."""


class UploadLimitMiddleware:
    """Pure ASGI middleware refusing request bodies over `max_bytes` with 413.

    A declared Content-Length over the limit is refused before any of the body is read; a
    chunked or under-declared body is counted as it streams in and cut off (413) as soon as
    it passes the limit, so an upload is never buffered beyond `max_bytes`.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return (f"upload too large: the request body may be at most {self.max_bytes} bytes "
                f"({self.max_bytes / 2**20:.1f} MiB) for both images together")

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await send_json(send, 413, {"detail": self._detail()}, close=True)
            return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> dict:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if exceeded:  # whatever the app makes of the cut-off body, the answer is our 413
                return
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await send_json(send, 413, {"detail": self._detail()}, close=True)
