"""API keys: loading and validating them, and the app demanding them on /v1/ (TestClient)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from changeseg.errors import InputError
from changeseg.service.app import create_app
from changeseg.service.auth import (
    ENV_VAR,
    bearer_token,
    key_matches,
    load_api_keys,
    parse_keys,
    requires_key,
)
from tests.service.conftest import DifferencePredictor
from tests.service.test_app import files_for, square_pair

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KEY = "k" * 20 + "-first"
OTHER = "o" * 20 + "-second"


def test_parse_keys_skips_blank_lines_and_comments():
    assert parse_keys(["# keys", "", f"  {KEY}  \r", "   ", OTHER], "keys.txt") == [KEY, OTHER]


@pytest.mark.parametrize("line, message", [("short-key", "at least 16 characters, this one has 9"),
                                           ("with space" * 3, "printable ASCII"),
                                           ("comma," * 5, "without spaces or commas"),
                                           ("clé-" + "x" * 20, "printable ASCII")])
def test_parse_keys_refuses_bad_keys_without_echoing_them(line, message):
    with pytest.raises(InputError, match=message) as error:
        parse_keys(["# first line", line], "keys.txt")
    assert "keys.txt, key 2" in str(error.value)
    assert line not in str(error.value)


def test_load_api_keys_from_file_and_environment(tmp_path):
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"{KEY}\n{OTHER}\n")
    assert load_api_keys(key_file, environ={}) == [KEY, OTHER]
    env_key = "e" * 30
    assert load_api_keys(key_file, environ={ENV_VAR: f" {env_key}, {KEY} "}) == [KEY, OTHER, env_key]
    assert load_api_keys(None, environ={ENV_VAR: f"{env_key} {OTHER}"}) == [env_key, OTHER]
    assert load_api_keys(None, environ={ENV_VAR: "  "}) == []
    assert load_api_keys(None, environ={}) == []


def test_load_api_keys_errors_are_one_clear_line(tmp_path):
    with pytest.raises(InputError, match="API key file not found: .*missing.txt"):
        load_api_keys(tmp_path / "missing.txt", environ={})
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(InputError, match="holds no key"):
        load_api_keys(empty, environ={})
    with pytest.raises(InputError, match=f"{ENV_VAR}, key 1: an API key needs at least 16"):
        load_api_keys(None, environ={ENV_VAR: "tiny"})


def test_key_matches_only_whole_keys():
    keys = (KEY, OTHER)
    assert key_matches(KEY, keys) and key_matches(OTHER, keys)
    for wrong in (KEY[:-1], KEY + "x", KEY.upper(), "", "é" * 5):
        assert not key_matches(wrong, keys)


@pytest.mark.parametrize("value, token", [(b"Bearer abc", "abc"), (b"bearer   abc ", "abc"),
                                          (b"Basic abc", None), (b"Bearer", None), (b"Bearer   ", None),
                                          (b"", None), (None, None)])
def test_bearer_token(value, token):
    assert bearer_token(value) == token


@pytest.mark.parametrize("path, protected", [("/v1/detect", True), ("/v1/detect/mask", True),
                                             ("/v1/models", True), ("/v1", True), ("/v1x", False),
                                             ("/healthz", False), ("/metrics", False), ("/", False),
                                             ("/static/app.js", False)])
def test_requires_key(path, protected):
    assert requires_key(path) is protected


@pytest.fixture
def client():
    """A TestClient for an app that requires one of two keys."""
    app = create_app(DifferencePredictor(), api_keys=[KEY, OTHER], max_upload_bytes=200_000)
    with TestClient(app) as test_client:
        yield test_client


def test_detect_needs_a_valid_key(client):
    reference, comparison = square_pair()
    missing = client.post("/v1/detect", files=files_for(reference, comparison))
    assert missing.status_code == 401
    assert "needs an API key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    basic = client.post("/v1/detect", files=files_for(reference, comparison),
                        headers={"Authorization": f"Basic {KEY}"})
    assert basic.status_code == 401
    wrong = client.post("/v1/detect", files=files_for(reference, comparison),
                        headers={"Authorization": f"Bearer {KEY}x"})
    assert wrong.status_code == 403
    assert wrong.json() == {"detail": "the API key was not accepted"}
    for key in (KEY, OTHER):
        ok = client.post("/v1/detect", files=files_for(reference, comparison),
                         headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and ok.json()["region_count"] == 1


def test_every_v1_route_needs_the_key_and_the_rest_stays_open(client):
    assert client.get("/v1/models").status_code == 401
    assert client.post("/v1/detect/mask").status_code == 401
    assert client.get("/v1/nothing-here").status_code == 401  # unknown API routes reveal nothing either
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {OTHER}"}).status_code == 200
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["auth"] == "bearer"
    for path in ("/", "/static/app.js", "/metrics", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_the_key_is_checked_before_the_upload_limit(client):
    response = client.post("/v1/detect", files={"reference": ("big.png", b"\0" * 300_000)})
    assert response.status_code == 401  # not 413: an anonymous client learns nothing about limits


def test_an_unauthenticated_body_is_never_read():
    app = create_app(DifferencePredictor(), api_keys=[KEY])
    pulled = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 10_000, "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/detect", "raw_path": b"/v1/detect", "root_path": "",
             "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
             "headers": [(b"content-type", b"multipart/form-data; boundary=x"),
                         (b"authorization", b"Bearer not-the-key-at-all")]}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 403
    assert (b"connection", b"close") in sent[0]["headers"]
    assert pulled == 0


def test_openapi_declares_bearer_auth_on_the_api_routes(client):
    schema = client.get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert schema["paths"]["/v1/detect"]["post"]["security"] == [{"apiKey": []}]
    assert schema["paths"]["/v1/models"]["get"]["security"] == [{"apiKey": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_without_keys_the_api_is_open():
    reference, comparison = square_pair()
    with TestClient(create_app(DifferencePredictor())) as client:
        assert client.get("/healthz").json()["auth"] == "none"
        assert client.post("/v1/detect", files=files_for(reference, comparison)).status_code == 200
        assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})
