"""The FastAPI app in-process (TestClient): every endpoint, every limit, bad uploads."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from changeseg.io.images import encode_png
from changeseg.service.app import (
    PixelLimitError,
    UploadLimitMiddleware,
    create_app,
    decode_upload,
    parse_image_list,
)
from tests.service.conftest import BlockingPredictor, DifferencePredictor

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def square_pair(size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A grey reference and a comparison with one white square (rows 8-19, cols 10-29) added."""
    reference = np.full((size, size, 3), 60, np.uint8)
    comparison = reference.copy()
    comparison[8:20, 10:30] = 255
    return reference, comparison


def files_for(reference: np.ndarray, comparison: np.ndarray) -> dict:
    """Multipart file fields for two arrays encoded as PNG."""
    return {"reference": ("reference.png", encode_png(reference), "image/png"),
            "comparison": ("comparison.png", encode_png(comparison), "image/png")}


@pytest.fixture
def client():
    """A TestClient for the app around the torch-free difference predictor."""
    app = create_app(DifferencePredictor(), max_upload_bytes=200_000, max_pixels=100 * 100)
    with TestClient(app) as test_client:
        yield test_client


def png_array(data: bytes) -> np.ndarray:
    """Decode PNG bytes as stored (no colour conversion)."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


# ------------------------------------------------------------------ endpoints


def test_detect_returns_summary_regions_and_requested_images(client):
    reference, comparison = square_pair()
    response = client.post("/v1/detect", files=files_for(reference, comparison),
                           data={"return": "mask, overlay,probability,comparison"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (48, 48)
    assert body["model"] == "difference"  # the predictor's server-side path is not exposed
    assert body["region_count"] == len(body["regions"]) == 1
    assert body["regions"][0]["box"] == [10, 8, 30, 20]
    assert body["changed_pixels"] == 12 * 20
    assert body["changed_fraction"] == pytest.approx(240 / 48**2, abs=1e-6)
    assert {"queue", "decode", "encode", "server_total"} <= set(body["timings_ms"])
    mask = png_array(base64.b64decode(body["images"]["mask"]))
    assert mask.shape == (48, 48) and set(np.unique(mask)) == {0, 255}
    assert int((mask == 255).sum()) == body["changed_pixels"]
    assert png_array(base64.b64decode(body["images"]["overlay"])).shape == (48, 48, 3)
    assert png_array(base64.b64decode(body["images"]["probability"])).shape == (48, 48)
    served = cv2.cvtColor(png_array(base64.b64decode(body["images"]["comparison"])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(served, comparison)


def test_detect_without_return_has_no_images_and_honours_fields(client):
    reference, comparison = square_pair()
    response = client.post("/v1/detect", files=files_for(reference, comparison),
                           data={"threshold": "0.95", "min_area": "5"})
    assert response.status_code == 200
    body = response.json()
    assert "images" not in body
    assert body["threshold"] == 0.95
    assert body["region_count"] == 0  # the square's change probability is 0.76 < 0.95


def test_detect_resize_field_accepts_different_sizes(client):
    reference, comparison = square_pair()
    small = cv2.resize(comparison, (24, 24), interpolation=cv2.INTER_AREA)
    refused = client.post("/v1/detect", files=files_for(reference, small))
    assert refused.status_code == 422
    assert "48×48" in refused.json()["detail"] and "24×24" in refused.json()["detail"]
    accepted = client.post("/v1/detect", files=files_for(reference, small), data={"resize": "true"})
    assert accepted.status_code == 200
    assert (accepted.json()["width"], accepted.json()["height"]) == (48, 48)


@pytest.mark.parametrize("kind, shape", [("mask", (48, 48)), ("overlay", (48, 48, 3)),
                                         ("probability", (48, 48)), ("comparison", (48, 48, 3))])
def test_detect_image_endpoint_returns_raw_png(client, kind, shape):
    reference, comparison = square_pair()
    response = client.post(f"/v1/detect/{kind}", files=files_for(reference, comparison))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-region-count"] == "1"
    assert float(response.headers["x-changed-fraction"]) == pytest.approx(240 / 48**2, abs=1e-6)
    assert png_array(response.content).shape == shape


def test_detect_image_endpoint_rejects_unknown_image(client):
    reference, comparison = square_pair()
    response = client.post("/v1/detect/heatmap", files=files_for(reference, comparison))
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


def test_healthz_models_docs_and_page(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == "difference"
    assert health["running"] == 0 and health["waiting"] == 0
    models = client.get("/v1/models").json()
    assert models["models"][0]["name"] == "difference"
    assert models["limits"]["max_pixels"] == 100 * 100
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/v1/detect", "/v1/detect/{image}", "/healthz", "/v1/models"} <= set(schema["paths"])
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="reference-input"' in page.text
    for asset in ("static/app.js", "static/style.css"):
        assert client.get(f"/{asset}").status_code == 200


def test_docs_work_offline(client):
    pytest.importorskip("fastapi_offline")
    for page, asset in (("/docs", "/docs-assets/swagger-ui-bundle.js"),
                        ("/redoc", "/docs-assets/redoc.standalone.js")):
        html = client.get(page)
        assert html.status_code == 200
        assert asset in html.text
        assert "cdn.jsdelivr" not in html.text and "fonts.googleapis" not in html.text
        assert client.get(asset).status_code == 200


def test_real_checkpoint_predictor_end_to_end(tiny_checkpoint):
    from changeseg.inference.predictor import ChangeDetector

    detector = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
    reference = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    comparison = reference.copy()
    comparison[10:40, 12:44] = 255 - comparison[10:40, 12:44]
    expected = detector.predict(reference, comparison).summary()
    with TestClient(create_app(detector)) as client:
        response = client.post("/v1/detect", files=files_for(reference, comparison))
        models = client.get("/v1/models").json()["models"][0]
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "tiny" == models["name"]
    assert body["region_count"] == expected["region_count"]
    assert body["regions"] == expected["regions"]
    assert body["changed_pixels"] == expected["changed_pixels"] > 0
    assert models["precision"] == "fp32"


class RecordingPredictor(DifferencePredictor):
    """A predictor that supports `align` and records what it was given."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def predict(self, reference, comparison, threshold=None, min_area=None, resize=False, align=False):
        self.calls.append({"align": align, "min_area": min_area})
        return super().predict(reference, comparison, threshold, min_area, resize)


@pytest.mark.parametrize("field, expected", [(None, False), ("false", False), ("true", True),
                                             ("sift", "sift"), ("ORB", "orb")])
def test_align_field_reaches_a_predictor_that_supports_it(field, expected):
    predictor = RecordingPredictor()
    reference, comparison = square_pair()
    with TestClient(create_app(predictor)) as client:
        assert client.get("/v1/models").json()["models"][0]["supports_align"] is True
        data = {} if field is None else {"align": field}
        assert client.post("/v1/detect", files=files_for(reference, comparison), data=data).status_code == 200
    assert predictor.calls == [{"align": expected, "min_area": None}]


def test_min_area_field_defaults_to_the_models_own():
    predictor = RecordingPredictor()
    reference, comparison = square_pair()
    with TestClient(create_app(predictor)) as client:
        for data in ({}, {"min_area": "7"}):
            assert client.post("/v1/detect", files=files_for(reference, comparison),
                               data=data).status_code == 200
    # None lets the model apply its own minimum area (ChangeDetector.predict)
    assert [call["min_area"] for call in predictor.calls] == [None, 7]


def test_align_is_refused_when_the_backend_cannot_align(client):
    reference, comparison = square_pair()
    response = client.post("/v1/detect", files=files_for(reference, comparison), data={"align": "true"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("align: this server's model backend cannot align")
    bogus = client.post("/v1/detect", files=files_for(reference, comparison), data={"align": "maybe"})
    assert bogus.status_code == 422 and bogus.json()["detail"].startswith("align: expected")


def test_align_on_a_real_shifted_pair(tiny_checkpoint):
    from changeseg.inference.predictor import ChangeDetector
    from tests.conftest import require_real_data

    reference = cv2.imread(str(require_real_data("tsunami", "t0", "00000001.jpg")))
    shift = np.float32([[1, 0, 14], [0, 1, 6]])  # the comparison is the same scene moved 14 px right, 6 down
    comparison = cv2.warpAffine(reference, shift, (reference.shape[1], reference.shape[0]))
    detector = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
    with TestClient(create_app(detector)) as client:
        response = client.post("/v1/detect", files=files_for(reference, comparison), data={"align": "true"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["alignment"]["inliers"] >= 20
    assert body["alignment"]["residual_px"] < 2.0
    assert 0.0 < body["unknown_fraction"] < 0.2  # the strips the shift uncovered


# ------------------------------------------------------------------ bad uploads


def test_missing_field_is_422_with_a_clear_message(client):
    reference, _ = square_pair()
    response = client.post("/v1/detect", files={"reference": ("r.png", encode_png(reference))})
    assert response.status_code == 422
    assert response.json() == {"detail": "missing form field 'comparison'"}


@pytest.mark.parametrize("content, message", [(b"this is not an image", "comparison: not a readable image"),
                                              (b"", "comparison: the uploaded file is empty")])
def test_non_image_upload_is_422(client, content, message):
    reference, _ = square_pair()
    response = client.post("/v1/detect", files={"reference": ("r.png", encode_png(reference)),
                                                "comparison": ("c.png", content)})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(message)


@pytest.mark.parametrize("data, field", [
    ({"threshold": "1.5"}, "threshold"), ({"min_area": "-1"}, "min_area"),
    ({"threshold": "abc"}, "threshold"), ({"return": "mask,x"}, "return"),
])
def test_bad_form_fields_are_422(client, data, field):
    reference, comparison = square_pair()
    response = client.post("/v1/detect", files=files_for(reference, comparison), data=data)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"{field}:")


def test_client_cannot_pass_a_path(client):
    reference, _ = square_pair()
    response = client.post("/v1/detect", files={"reference": ("r.png", encode_png(reference))},
                           data={"comparison": "/etc/hostname"})
    assert response.status_code == 422


# ------------------------------------------------------------------ limits


def test_upload_over_declared_limit_is_413(client):
    reference, comparison = square_pair()
    response = client.post("/v1/detect", files={"reference": ("r.png", encode_png(reference)),
                                                "comparison": ("c.png", b"\0" * 250_000)})
    assert response.status_code == 413
    assert "upload too large" in response.json()["detail"]


MULTIPART_START = (b'--changeseg\r\nContent-Disposition: form-data; name="reference"; filename="r.png"\r\n'
                   b"Content-Type: image/png\r\n\r\n")


def test_chunked_upload_over_limit_is_413(client):
    def body():
        yield MULTIPART_START
        for _ in range(40):
            yield b"x" * 10_000

    response = client.post("/v1/detect", content=body(),
                           headers={"content-type": "multipart/form-data; boundary=changeseg"})
    assert response.status_code == 413


def test_upload_limit_stops_reading_the_body():
    """The middleware answers 413 as soon as the limit is passed, without draining the stream."""
    app = create_app(DifferencePredictor(), max_upload_bytes=50_000)
    pulled = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        chunk = MULTIPART_START if pulled == 1 else b"y" * 10_000
        return {"type": "http.request", "body": chunk, "more_body": pulled < 1000}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/detect", "raw_path": b"/v1/detect", "root_path": "",
             "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
             "headers": [(b"content-type", b"multipart/form-data; boundary=changeseg")]}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert pulled == 6  # the part header + 5 × 10 kB pass 50 kB: no further chunk was read


def test_upload_limit_middleware_passes_small_bodies_through():
    received: list[bytes] = []

    async def inner(scope, receive, send):
        message = await receive()
        received.append(message["body"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        return {"type": "http.request", "body": b"small", "more_body": False}

    statuses = []

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    asyncio.run(UploadLimitMiddleware(inner, 100)({"type": "http", "headers": []}, receive, send))
    assert received == [b"small"] and statuses == [204]


def test_pixel_limit_is_413_before_decoding(client):
    big = np.zeros((101, 100, 3), np.uint8)  # 10 100 pixels > 10 000
    response = client.post("/v1/detect", files=files_for(big, big))
    assert response.status_code == 413
    expected = "reference: image is 100×101 = 10100 pixels; the limit is 10000 pixels"
    assert response.json()["detail"] == expected


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny 1×1 PNG whose header is rewritten to claim `width`×`height` (CRC fixed up)."""
    data = bytearray(encode_png(np.zeros((1, 1), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR CRC over type + fields
    return bytes(data)


def test_decode_upload_checks_the_header_size_before_decoding():
    with pytest.raises(PixelLimitError, match="image is 12000×1000 = 12000000 pixels"):
        decode_upload(png_claiming_size(12000, 1000), "reference", 10_000)
    with pytest.raises(PixelLimitError, match="30000×30000 = 900000000 pixels"):  # beyond PIL's own guard
        decode_upload(png_claiming_size(30000, 30000), "reference", 10_000)
    assert decode_upload(encode_png(np.zeros((8, 8), np.uint8)), "reference", 64).shape == (8, 8, 1)


def test_decode_upload_keeps_rgb_order():
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0] = 200  # red
    assert decode_upload(encode_png(image), "reference", 100)[0, 0].tolist() == [200, 0, 0]


def test_parse_image_list():
    assert parse_image_list(" mask, overlay ,mask") == ["mask", "overlay"]
    assert parse_image_list("") == [] and parse_image_list(None) == []


def wait_for(predicate, timeout: float = 10.0) -> None:
    """Poll `predicate` until it is true or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.02)


def test_full_queue_is_503_and_queued_requests_complete():
    predictor = BlockingPredictor()
    app = create_app(predictor, max_concurrency=1, queue_size=1, request_timeout_s=30)
    reference, comparison = square_pair()
    files = files_for(reference, comparison)
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        try:
            running = pool.submit(client.post, "/v1/detect", files=files)
            assert predictor.entered.acquire(timeout=10)  # the one worker is busy
            queued = pool.submit(client.post, "/v1/detect", files=files)
            wait_for(lambda: client.get("/healthz").json()["waiting"] == 1)
            refused = client.post("/v1/detect", files=files)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert "server busy" in refused.json()["detail"]
            assert client.get("/healthz").json()["rejected"] == 1
        finally:
            predictor.release.set()
        assert running.result(timeout=30).status_code == 200
        assert queued.result(timeout=30).status_code == 200
        wait_for(lambda: client.get("/healthz").json()["running"] == 0)


def test_timeout_is_504_and_the_slot_stays_taken_until_the_work_ends():
    predictor = BlockingPredictor()
    app = create_app(predictor, max_concurrency=1, queue_size=0, request_timeout_s=0.3)
    reference, comparison = square_pair()
    with TestClient(app) as client:
        try:
            started = time.monotonic()
            response = client.post("/v1/detect", files=files_for(reference, comparison))
            assert response.status_code == 504
            assert "did not finish within 0.3 s" in response.json()["detail"]
            assert time.monotonic() - started < 10
            # The thread is still busy with the abandoned prediction: the service is full.
            assert client.get("/healthz").json()["running"] == 1
            assert client.post("/v1/detect", files=files_for(reference, comparison)).status_code == 503
        finally:
            predictor.release.set()
        wait_for(lambda: client.get("/healthz").json()["running"] == 0)
        predictor.release.set()
        assert client.post("/v1/detect", files=files_for(reference, comparison)).status_code == 200


def test_predictor_crash_is_500_without_a_traceback():
    class Broken(DifferencePredictor):
        def predict(self, *args, **kwargs):
            raise RuntimeError("boom")

    reference, comparison = square_pair()
    with TestClient(create_app(Broken())) as client:
        response = client.post("/v1/detect", files=files_for(reference, comparison))
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error while predicting (see the server log)"}


@pytest.mark.parametrize("option", [{"max_concurrency": 0}, {"queue_size": -1}, {"request_timeout_s": 0},
                                    {"max_upload_bytes": 0}, {"max_pixels": 0}])
def test_bad_limits_are_refused(option):
    from changeseg.errors import InputError

    with pytest.raises(InputError):
        create_app(DifferencePredictor(), **option)


def test_domain_field_applies_the_models_calibration_and_refuses_others(tiny_with_domain):
    from changeseg.inference.predictor import ChangeDetector

    detector = ChangeDetector.from_pretrained(tiny_with_domain, precision="fp32")
    reference = np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    comparison = reference.copy()
    comparison[10:40, 12:44] = 255 - comparison[10:40, 12:44]
    expected = detector.predict(reference, comparison, domain="fixed-camera").summary()
    with TestClient(create_app(detector)) as client:
        assert client.get("/v1/models").json()["models"][0]["domains"] == ["fixed-camera"]
        plain = client.post("/v1/detect", files=files_for(reference, comparison)).json()
        calibrated = client.post("/v1/detect", files=files_for(reference, comparison),
                                 data={"domain": "fixed-camera"}).json()
        unknown = client.post("/v1/detect", files=files_for(reference, comparison), data={"domain": "street"})
    assert calibrated["changed_pixels"] == expected["changed_pixels"] > plain["changed_pixels"]
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == ("domain: the model has no calibration for 'street' "
                                        "(its domains: fixed-camera)")


def test_domain_field_is_refused_by_a_model_without_domains(client):
    reference, comparison = square_pair()
    response = client.post("/v1/detect", files=files_for(reference, comparison),
                           data={"domain": "fixed-camera"})
    assert response.status_code == 422 and "its domains: none" in response.json()["detail"]
