"""Per-request bookkeeping: a request id, one JSON access-log line, and the request metrics.

`RequestObserver` is the outermost middleware of the app, so it sees every answer, the 401s,
413s and 503s included. Each request gets an id — the client's own `X-Request-ID` when it is
sane (1-128 characters of letters, digits and `._:-`), else a fresh random one — which is
returned as the `X-Request-ID` response header and written in the log line. The log line
(logger `changeseg.access`, level INFO) is one JSON object with the time, id, method, path,
route, status, duration, byte counts and client address; it never holds the uploaded bytes,
file names, form fields or headers.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from starlette.routing import BaseRoute, Match

from changeseg.service.asgi import content_length, header
from changeseg.service.metrics import ServiceMetrics

access_log = logging.getLogger("changeseg.access")

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"

_current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("changeseg_request_id",
                                                                                default=None)


def current_request_id() -> str | None:
    """The id of the request being handled in this context (None outside a request)."""
    return _current_request_id.get()


def request_id_from(value: bytes | None) -> str:
    """The client's `X-Request-ID` when it is sane, otherwise a new random id (32 hex digits)."""
    if value is not None:
        text = value.decode("latin-1").strip()
        if REQUEST_ID_PATTERN.fullmatch(text):
            return text
    return uuid.uuid4().hex


def route_template(routes: Sequence[BaseRoute], scope: dict) -> str:
    """The path template of the route serving `scope` (`/v1/detect/{image}`), or `unmatched`."""
    route = scope.get("route")
    if route is None:
        for candidate in routes:
            match, _ = candidate.matches(scope)
            if match is not Match.NONE:
                route = candidate
                break
    return getattr(route, "path", None) or UNMATCHED


class RequestObserver:
    """Pure ASGI middleware: request id header, metrics and one JSON log line per HTTP request."""

    def __init__(self, app: Any, metrics: ServiceMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(header(scope, REQUEST_ID_HEADER))
        token = _current_request_id.set(request_id)
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering
        bytes_in = 0
        bytes_out = 0

        async def counting_receive() -> dict:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def tagging_send(message: dict) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, request_id.encode())]}
            elif message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, counting_receive, tagging_send)
        finally:
            self.metrics.in_flight.dec()
            _current_request_id.reset(token)
            elapsed = time.perf_counter() - started
            route = route_template(self.routes, scope)
            method = scope.get("method", "")
            self.metrics.observe_request(route, method if method in METHODS else "other", status, elapsed)
            access_log.info(json.dumps(self._entry(scope, request_id, route, status, elapsed,
                                                   bytes_in, bytes_out)))

    @staticmethod
    def _entry(scope: dict, request_id: str, route: str, status: int, elapsed: float,
               bytes_in: int, bytes_out: int) -> dict[str, Any]:
        client = scope.get("client")
        return {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "event": "request",
            "request_id": request_id,
            "method": scope.get("method", ""),
            "path": scope.get("path", "")[:256],
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1e3, 2),
            "bytes_in": bytes_in,
            "declared_bytes_in": content_length(scope),
            "bytes_out": bytes_out,
            "client": client[0] if client else None,
        }
