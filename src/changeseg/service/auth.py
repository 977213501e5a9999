"""API keys: where they come from, and the middleware that demands one on the API routes.

Keys come from a file (`--api-key-file`: one key per line; blank lines and `#` comments are
skipped) and/or the environment variable `CHANGESEG_API_KEYS` (keys separated by commas or
whitespace). With at least one key, every request to `/v1/...` needs the header
`Authorization: Bearer KEY`: without it the answer is 401, with a key that is not one of
them 403, checked before any of the request body is read. The web page, its assets, the API
docs, `/healthz` and `/metrics` stay open. Keys are compared in constant time
(`hmac.compare_digest`, against every key) and never logged.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from changeseg.errors import InputError
from changeseg.service.asgi import header, send_json

ENV_VAR = "CHANGESEG_API_KEYS"
PROTECTED_PREFIX = "/v1/"
MIN_KEY_LENGTH = 16
KEY_PATTERN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: a valid bearer token
KEY_HINT = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
CHALLENGE = [(b"www-authenticate", b'Bearer realm="changeseg"')]


def parse_keys(lines: Iterable[str], source: str) -> list[str]:
    """Validated keys from `lines` (blank lines and `#` comments skipped); InputError names the bad line.

    A key must be at least MIN_KEY_LENGTH printable ASCII characters without spaces or commas;
    the error never repeats the key itself.
    """
    keys: list[str] = []
    for number, raw in enumerate(lines, start=1):
        key = raw.strip()
        if not key or key.startswith("#"):
            continue
        where = f"{source}, key {number}"
        if not KEY_PATTERN.fullmatch(key) or "," in key:
            raise InputError(f"{where}: an API key may only hold printable ASCII characters without "
                             f"spaces or commas; {KEY_HINT}")
        if len(key) < MIN_KEY_LENGTH:
            raise InputError(f"{where}: an API key needs at least {MIN_KEY_LENGTH} characters, this one "
                             f"has {len(key)}; {KEY_HINT}")
        keys.append(key)
    return keys


def load_api_keys(key_file: str | os.PathLike | None = None,
                  environ: Mapping[str, str] | None = None) -> list[str]:
    """The API keys from `key_file` and from CHANGESEG_API_KEYS in `environ` (default os.environ).

    Returns an empty list when neither is given (the service is then open). A key file that
    cannot be read, or holds no key, is an InputError.
    """
    environ = os.environ if environ is None else environ
    keys: list[str] = []
    if key_file is not None:
        path = Path(key_file)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"API key file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read API key file {path}: {getattr(exc, 'strerror', None) or exc}") \
                from None
        from_file = parse_keys(text.splitlines(), str(path))
        if not from_file:
            raise InputError(f"API key file {path} holds no key (one key per line); {KEY_HINT}")
        keys += from_file
    env_text = environ.get(ENV_VAR, "")
    if env_text.strip():
        keys += parse_keys(re.split(r"[\s,]+", env_text.strip()), ENV_VAR)
    return list(dict.fromkeys(keys))


def key_matches(candidate: str, keys: Iterable[str]) -> bool:
    """Whether `candidate` equals one of `keys`, comparing with every key in constant time."""
    given = candidate.encode("utf-8", "surrogateescape")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode("utf-8"))
    return found


def bearer_token(value: bytes | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header value, or None when there is none."""
    if not value:
        return None
    scheme, _, token = value.decode("latin-1").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def requires_key(path: str) -> bool:
    """Whether a request to `path` needs an API key (the `/v1/` API routes)."""
    return path.startswith(PROTECTED_PREFIX) or path == PROTECTED_PREFIX.rstrip("/")


class ApiKeyMiddleware:
    """Pure ASGI middleware answering 401 / 403 on `/v1/...` without a valid bearer key.

    It looks only at the headers, so an unauthenticated upload is refused before its body is read.
    """

    def __init__(self, app: Any, keys: Iterable[str]) -> None:
        self.app = app
        self.keys = tuple(keys)
        if not self.keys:
            raise ValueError("ApiKeyMiddleware needs at least one key")

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http" or not requires_key(_route_path(scope)):
            await self.app(scope, receive, send)
            return
        token = bearer_token(header(scope, b"authorization"))
        if token is None:
            await send_json(send, 401, {"detail": "this server needs an API key: send the header "
                                                  "'Authorization: Bearer YOUR_KEY'"},
                            close=True, headers=CHALLENGE)
            return
        if not key_matches(token, self.keys):
            await send_json(send, 403, {"detail": "the API key was not accepted"}, close=True)
            return
        await self.app(scope, receive, send)


def _route_path(scope: dict) -> str:
    """The request path without the app's root path (as the router sees it)."""
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path


def add_bearer_to_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare bearer authentication on every `/v1/` operation of an OpenAPI schema (in place).

    Swagger UI at `/docs` then shows an Authorize button and sends the key with its requests.
    """
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http", "scheme": "bearer",
        "description": "An API key from the server's --api-key-file or CHANGESEG_API_KEYS."}
    for path, operations in schema.get("paths", {}).items():
        if requires_key(path):
            for operation in operations.values():
                operation["security"] = [{"apiKey": []}]
    return schema
