"""Small helpers shared by the service's pure ASGI middlewares (headers in, JSON out)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def header(scope: dict, name: bytes) -> bytes | None:
    """The first value of request header `name` (lower-case bytes), or None."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


def content_length(scope: dict) -> int | None:
    """The request's declared Content-Length, or None when absent or not a number."""
    value = header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


async def send_json(send: Callable, status: int, payload: dict[str, Any], close: bool = False,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with `payload` as JSON; `close` adds `Connection: close` (the body was not read)."""
    body = json.dumps(payload).encode()
    all_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   *(headers or [])]
    if close:
        all_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})
