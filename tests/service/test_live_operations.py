"""A real `changeseg serve` on 127.0.0.1 in production dress: API keys, /metrics, request ids, SIGTERM.

The servers here run the real command under uvicorn with a gated test double instead of a
model (tests/service/gated_server.py), so they start in about a second and a test decides when
a prediction finishes.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import numpy as np
import pytest

from changeseg.io.images import encode_png
from tests.service.conftest import API_KEYS, ENV_API_KEY, gated_entry, start_server, stop_server


def pair_files() -> dict:
    """A 32×32 pair with one changed square, as multipart file fields."""
    reference = np.full((32, 32, 3), 50, np.uint8)
    comparison = reference.copy()
    comparison[4:12, 6:20] = 250
    return {"reference": ("reference.png", encode_png(reference), "image/png"),
            "comparison": ("comparison.png", encode_png(comparison), "image/png")}


def bearer(key: str) -> dict[str, str]:
    """The Authorization header for `key`."""
    return {"Authorization": f"Bearer {key}"}


def detect_count(url: str, status: int) -> float:
    """`changeseg_requests_total` for POST /v1/detect with `status`, read from the live /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    wanted = f'changeseg_requests_total{{method="POST",route="/v1/detect",status="{status}"}}'
    for line in text.splitlines():
        if line.startswith(wanted):
            return float(line.split()[-1])
    return 0.0


def access_entries(log: str) -> list[dict]:
    """The JSON access lines in a server log."""
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_live_auth_401_403_200(auth_server):
    url = auth_server.url
    missing = httpx.post(f"{url}/v1/detect", files=pair_files(), timeout=30)
    assert missing.status_code == 401 and "needs an API key" in missing.json()["detail"]
    wrong = httpx.post(f"{url}/v1/detect", files=pair_files(), headers=bearer(API_KEYS[0][:-1] + "x"),
                       timeout=30)
    assert wrong.status_code == 403 and wrong.json() == {"detail": "the API key was not accepted"}
    for key in (*API_KEYS, ENV_API_KEY):  # both keys of the file and the one in CHANGESEG_API_KEYS
        ok = httpx.post(f"{url}/v1/detect", files=pair_files(), headers=bearer(key), timeout=30)
        assert ok.status_code == 200, ok.text
        assert ok.json()["region_count"] == 1
    assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401
    assert httpx.get(f"{url}/v1/models", headers=bearer(ENV_API_KEY), timeout=10).status_code == 200
    health = httpx.get(f"{url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["auth"] == "bearer"
    assert httpx.get(f"{url}/", timeout=10).status_code == 200
    assert "API key required (3 key(s))" in auth_server.log()


def test_live_metrics_count_a_request(auth_server):
    url = auth_server.url
    before_ok, before_denied = detect_count(url, 200), detect_count(url, 401)
    assert httpx.post(f"{url}/v1/detect", files=pair_files(), headers=bearer(API_KEYS[1]),
                      timeout=30).status_code == 200
    assert httpx.post(f"{url}/v1/detect", files=pair_files(), timeout=30).status_code == 401
    assert detect_count(url, 200) == before_ok + 1
    assert detect_count(url, 401) == before_denied + 1
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in ("changeseg_request_duration_seconds_bucket", "changeseg_queue_depth",
                   "changeseg_requests_in_flight", "changeseg_model_load_seconds"):
        assert f"\n{family}" in text, family


def test_live_request_id_and_access_log(auth_server):
    url = auth_server.url
    response = httpx.post(f"{url}/v1/detect", files=pair_files(), headers={**bearer(API_KEYS[0]),
                                                                            "X-Request-ID": "live-test-7"},
                          timeout=30)
    assert response.status_code == 200 and response.headers["x-request-id"] == "live-test-7"
    fresh = httpx.get(f"{url}/healthz", timeout=10).headers["x-request-id"]
    assert len(fresh) == 32
    deadline = time.monotonic() + 10
    while not any(e["request_id"] == fresh for e in access_entries(auth_server.log())):
        assert time.monotonic() < deadline, auth_server.log()
        time.sleep(0.05)
    entry = next(e for e in access_entries(auth_server.log()) if e["request_id"] == "live-test-7")
    assert (entry["method"], entry["route"], entry["status"], entry["client"]) == \
        ("POST", "/v1/detect", 200, "127.0.0.1")
    log = auth_server.log()
    assert "IHDR" not in log and "comparison.png" not in log  # never the uploaded bytes or names
    assert not any(key in log for key in (*API_KEYS, ENV_API_KEY))  # nor the keys


def test_sigterm_during_a_request_finishes_it_and_exits_0(tmp_path):
    gate = tmp_path / "gate"  # absent: the prediction waits until the test creates it
    server = start_server(["--no-warmup"], tmp_path / "server.log", entry=gated_entry(gate))
    answer: dict = {}

    def post() -> None:
        try:
            answer["response"] = httpx.post(f"{server.url}/v1/detect", files=pair_files(), timeout=60,
                                            headers={"X-Request-ID": "in-flight"})
        except httpx.HTTPError as exc:  # recorded, so the assertion below shows it
            answer["error"] = exc

    client = threading.Thread(target=post)
    try:
        client.start()
        deadline = time.monotonic() + 20
        while httpx.get(f"{server.url}/healthz", timeout=5).json()["running"] != 1:
            assert time.monotonic() < deadline, "the request never reached the predictor"
            time.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        # The server stops accepting connections at once but stays up for the request in flight.
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{server.url}/healthz", timeout=2)
            except httpx.TransportError:
                break
            assert time.monotonic() < deadline, "the server kept accepting connections after SIGTERM"
            time.sleep(0.05)
        time.sleep(0.5)
        assert server.process.poll() is None, f"exited before its request finished:\n{server.log()}"
        assert "response" not in answer and "error" not in answer
        gate.touch()
        client.join(30)
        assert "error" not in answer, answer.get("error")
        response = answer["response"]
        assert response.status_code == 200 and response.json()["region_count"] == 1
        assert response.headers["x-request-id"] == "in-flight"
        assert server.process.wait(30) == 0, server.log()
    finally:
        gate.touch()
        stop_server(server)
    log = server.log()
    assert "changeseg serve: stopped by SIGTERM" in log
    assert any(e["request_id"] == "in-flight" and e["status"] == 200 for e in access_entries(log))


def test_bad_key_file_stops_the_server_before_it_listens(tmp_path):
    short = tmp_path / "keys.txt"
    short.write_text("tooshort\n")
    with pytest.raises(pytest.fail.Exception, match="exited with 1"):
        start_server(["--api-key-file", str(short), "--no-warmup"], tmp_path / "server.log",
                     entry=gated_entry(tmp_path / "gate"))
    log = (tmp_path / "server.log").read_text()
    assert log.startswith("error: ") and log.count("\n") == 1 and "tooshort" not in log
