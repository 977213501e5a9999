"""Metrics (`/metrics`), request ids and the JSON access log, in-process (TestClient)."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from changeseg import __version__
from changeseg.service.access import request_id_from
from changeseg.service.app import create_app
from tests.service.conftest import BlockingPredictor, DifferencePredictor
from tests.service.test_app import files_for, square_pair, wait_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ACCESS_FIELDS = {"time", "event", "request_id", "method", "path", "route", "status", "duration_ms",
                 "bytes_in",
                 "declared_bytes_in", "bytes_out", "client"}


def scrape(client: TestClient) -> dict[tuple[str, frozenset], float]:
    """Every sample of `/metrics`, keyed by (sample name, its labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def requests_total(samples: dict, route: str, method: str, status: str) -> float:
    """The `changeseg_requests_total` count of one route, method and status (0 when absent)."""
    labels = frozenset({"route": route, "method": method, "status": status}.items())
    return samples.get(("changeseg_requests_total", labels), 0.0)


def latency_count(samples: dict, route: str) -> float:
    """How many latencies the histogram recorded for `route`."""
    return samples.get(("changeseg_request_duration_seconds_count", frozenset({"route": route}.items())), 0.0)


@pytest.fixture
def client():
    """A TestClient for the app around the difference predictor (model load time known)."""
    app = create_app(DifferencePredictor(), max_upload_bytes=200_000, model_load_s=1.25)
    with TestClient(app) as test_client:
        yield test_client


def test_metrics_count_requests_by_route_and_status(client):
    reference, comparison = square_pair()
    before = scrape(client)
    assert requests_total(before, "/v1/detect", "POST", "200") == 0
    assert client.post("/v1/detect", files=files_for(reference, comparison)).status_code == 200
    assert client.post("/v1/detect", files=files_for(reference, comparison)).status_code == 200
    assert client.post("/v1/detect", files=files_for(reference, reference[:10])).status_code == 422
    assert client.post("/v1/detect/mask", files=files_for(reference, comparison)).status_code == 200
    assert client.get("/no/such/page").status_code == 404
    after = scrape(client)
    assert requests_total(after, "/v1/detect", "POST", "200") == 2
    assert requests_total(after, "/v1/detect", "POST", "422") == 1
    assert requests_total(after, "/v1/detect/{image}", "POST", "200") == 1  # the template, not the path
    assert requests_total(after, "unmatched", "GET", "404") == 1
    assert requests_total(after, "/metrics", "GET", "200") == 1  # the first scrape
    assert latency_count(after, "/v1/detect") == 3
    prediction_count = after[("changeseg_prediction_duration_seconds_count", frozenset())]
    assert prediction_count == 4  # both routes; the 422 (sizes differ) was found in a worker too


def test_metrics_report_model_and_capacity(client):
    samples = scrape(client)
    assert samples[("changeseg_model_load_seconds", frozenset())] == 1.25
    info = {"model": "difference", "backend": "DifferencePredictor", "version": __version__}
    assert samples[("changeseg_model_info", frozenset(info.items()))] == 1
    assert samples[("changeseg_prediction_workers", frozenset())] == 1
    assert samples[("changeseg_queue_capacity", frozenset())] == 8


def test_model_load_time_is_absent_when_unknown():
    with TestClient(create_app(DifferencePredictor())) as client:
        assert not any(name == "changeseg_model_load_seconds" for name, _ in scrape(client))


def test_metrics_show_queue_depth_and_requests_in_flight():
    predictor = BlockingPredictor()
    app = create_app(predictor, max_concurrency=1, queue_size=2, request_timeout_s=30)
    reference, comparison = square_pair()
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        try:
            running = pool.submit(client.post, "/v1/detect", files=files_for(reference, comparison))
            assert predictor.entered.acquire(timeout=10)
            queued = pool.submit(client.post, "/v1/detect", files=files_for(reference, comparison))
            wait_for(lambda: client.get("/healthz").json()["waiting"] == 1)
            samples = scrape(client)
            assert samples[("changeseg_predictions_running", frozenset())] == 1
            assert samples[("changeseg_queue_depth", frozenset())] == 1
            assert samples[("changeseg_requests_in_flight", frozenset())] == 3  # two POSTs and this scrape
        finally:
            predictor.release.set()
        assert running.result(timeout=30).status_code == queued.result(timeout=30).status_code == 200
        samples = scrape(client)
        assert samples[("changeseg_queue_depth", frozenset())] == 0
        assert samples[("changeseg_requests_in_flight", frozenset())] == 1


def test_two_apps_keep_separate_counts():
    with TestClient(create_app(DifferencePredictor())) as first, \
            TestClient(create_app(DifferencePredictor())) as second:
        first.get("/healthz")
        first.get("/healthz")
        assert requests_total(scrape(first), "/healthz", "GET", "200") == 2
        assert requests_total(scrape(second), "/healthz", "GET", "200") == 0


# ------------------------------------------------------------------ request ids


@pytest.mark.parametrize("given, kept", [("abc-123_x.y:z", True), ("a" * 128, True), ("a" * 129, False),
                                         ("has space", False), ("semi;colon", False), ("", False)])
def test_request_id_from(given, kept):
    chosen = request_id_from(given.encode())
    if kept:
        assert chosen == given
    else:
        assert chosen != given and len(chosen) == 32 and int(chosen, 16) >= 0


def test_every_answer_carries_a_request_id(client):
    reference, comparison = square_pair()
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]
    assert first != second and len(first) == 32
    echoed = client.post("/v1/detect", files=files_for(reference, comparison),
                         headers={"X-Request-ID": "client-chosen-42"})
    assert echoed.headers["x-request-id"] == "client-chosen-42"
    replaced = client.get("/healthz", headers={"X-Request-ID": "no spaces <allowed>"})
    assert replaced.headers["x-request-id"] != "no spaces <allowed>"
    too_large = client.post("/v1/detect", files={"reference": ("r.png", b"\0" * 250_000)},
                            headers={"X-Request-ID": "big-upload"})
    assert too_large.status_code == 413 and too_large.headers["x-request-id"] == "big-upload"
    assert len(too_large.headers.get_list("x-request-id")) == 1


# ------------------------------------------------------------------ access log


def access_lines(caplog) -> list[dict]:
    """The JSON objects logged on `changeseg.access`, each checked to be one line."""
    lines = [record.getMessage() for record in caplog.records if record.name == "changeseg.access"]
    assert all("\n" not in line for line in lines)
    return [json.loads(line) for line in lines]


def test_one_json_line_per_request_without_the_upload(client, caplog):
    reference, comparison = square_pair()
    files = files_for(reference, comparison)
    files["reference"] = ("secret-name-of-the-file.png", files["reference"][1], "image/png")
    with caplog.at_level(logging.INFO, logger="changeseg.access"):
        client.post("/v1/detect", files=files, data={"threshold": "0.4321"},
                    headers={"X-Request-ID": "req-1"})
        client.get("/healthz", headers={"X-Request-ID": "req-2"})
    entries = access_lines(caplog)
    assert [entry["request_id"] for entry in entries] == ["req-1", "req-2"]
    detect, health = entries
    assert set(detect) == ACCESS_FIELDS  # nothing more: no file names, form fields, headers or bytes
    assert (detect["method"], detect["path"], detect["route"], detect["status"]) == \
        ("POST", "/v1/detect", "/v1/detect", 200)
    assert detect["bytes_in"] == detect["declared_bytes_in"] > 100 and detect["bytes_out"] > 100
    assert detect["duration_ms"] >= 0 and detect["time"].endswith("+00:00")
    raw = caplog.text
    assert "secret-name-of-the-file" not in raw and "0.4321" not in raw and "PNG" not in raw
    assert (health["route"], health["status"], health["bytes_in"]) == ("/healthz", 200, 0)


def test_a_failed_prediction_is_logged_with_its_request_id(caplog):
    class Broken(DifferencePredictor):
        def predict(self, *args, **kwargs):
            raise RuntimeError("boom")

    reference, comparison = square_pair()
    with TestClient(create_app(Broken())) as client, caplog.at_level(logging.INFO):
        response = client.post("/v1/detect", files=files_for(reference, comparison),
                               headers={"X-Request-ID": "broken-1"})
    assert response.status_code == 500 and response.headers["x-request-id"] == "broken-1"
    errors = [r for r in caplog.records if r.name == "changeseg.service" and r.levelno == logging.ERROR]
    assert len(errors) == 1 and "broken-1" in errors[0].getMessage() and errors[0].exc_info
    assert access_lines(caplog)[-1]["status"] == 500
