"""A real `changeseg serve` process on loopback, answering real HTTP requests with a real pair."""

from __future__ import annotations

import base64

import cv2
import httpx
import numpy as np

from changeseg.inference.predictor import ChangeDetector
from changeseg.io.images import read_image


def upload(path, name: str) -> tuple[str, bytes, str]:
    """A multipart file tuple for a file on disk (the server only ever sees its bytes)."""
    return (path.name, path.read_bytes(), "image/jpeg")


def decode_png(text: str) -> np.ndarray:
    """Decode a base64 PNG from the JSON answer."""
    return cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_UNCHANGED)


def test_served_detection_matches_the_python_api(live_server, tsunami_pair, tiny_checkpoint):
    reference, comparison = tsunami_pair
    response = httpx.post(f"{live_server.url}/v1/detect", timeout=120,
                          files={"reference": upload(reference, "reference"),
                                 "comparison": upload(comparison, "comparison")},
                          data={"return": "mask,overlay"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (1024, 224)
    assert body["model"] == "tiny"
    assert body["region_count"] == len(body["regions"])
    assert 0.0 <= body["changed_fraction"] <= 1.0
    assert body["timings_ms"]["inference"] > 0

    mask = decode_png(body["images"]["mask"])
    overlay = decode_png(body["images"]["overlay"])
    assert mask.shape == (224, 1024) and overlay.shape == (224, 1024, 3)
    assert int((mask > 0).sum()) == body["changed_pixels"]

    # The same pair through the Python API gives the same answer (same checkpoint, fp32).
    detector = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
    expected = detector.predict(read_image(reference), read_image(comparison)).summary()
    assert body["region_count"] == expected["region_count"]
    assert body["changed_pixels"] == expected["changed_pixels"]


def test_served_errors_are_json(live_server, tsunami_pair):
    reference, _ = tsunami_pair
    missing = httpx.post(f"{live_server.url}/v1/detect", timeout=30,
                         files={"reference": upload(reference, "reference")})
    assert missing.status_code == 422
    assert missing.json() == {"detail": "missing form field 'comparison'"}
    not_image = httpx.post(f"{live_server.url}/v1/detect", timeout=30,
                           files={"reference": upload(reference, "reference"),
                                  "comparison": ("notes.txt", b"hello", "text/plain")})
    assert not_image.status_code == 422
    assert "comparison: not a readable image" in not_image.json()["detail"]


def test_served_upload_limit(live_server):
    # The server was started with --max-upload-mb 4; a declared 5 MiB body is refused unread.
    response = httpx.post(f"{live_server.url}/v1/detect", timeout=30,
                          files={"reference": ("big.png", b"\0" * (5 * 2**20), "image/png")})
    assert response.status_code == 413
    assert "upload too large" in response.json()["detail"]


def test_served_health_models_and_page(live_server):
    health = httpx.get(f"{live_server.url}/healthz", timeout=10).json()
    assert health["status"] == "ok" and health["model"] == "tiny"
    models = httpx.get(f"{live_server.url}/v1/models", timeout=10).json()
    assert models["models"][0]["backend"] == "torch"
    assert models["limits"]["max_upload_bytes"] == 4 * 2**20
    assert models["limits"]["queue_size"] == 4
    page = httpx.get(f"{live_server.url}/", timeout=10)
    assert page.status_code == 200 and "changeseg" in page.text
    assert httpx.get(f"{live_server.url}/docs", timeout=10).status_code == 200
