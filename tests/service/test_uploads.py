"""Upload decoding in the service: format allow-list, header pixel limit, EXIF orientation."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from changeseg.io.images import encode_png
from changeseg.service.app import PixelLimitError, create_app, decode_upload
from tests.io.test_header import png_claiming, radiance_hdr_bomb
from tests.service.conftest import DifferencePredictor


@pytest.fixture
def client():
    """The app around the torch-free difference predictor, with a 4096² pixel limit."""
    with TestClient(create_app(DifferencePredictor(), max_upload_bytes=20_000_000,
                               max_pixels=4096 * 4096)) as test_client:
        yield test_client


def test_a_radiance_hdr_bomb_is_refused_before_decoding(client, tmp_path):
    bomb = radiance_hdr_bomb(tmp_path / "bomb.hdr").read_bytes()  # 9 MB claiming 12000×12000
    good = encode_png(np.zeros((16, 16, 3), np.uint8))
    started = time.perf_counter()
    response = client.post("/v1/detect", files={"reference": ("a.png", good, "image/png"),
                                                "comparison": ("b.hdr", bomb, "image/vnd.radiance")})
    assert time.perf_counter() - started < 3.0  # decoding it took 12 s and 3.3 GB
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("comparison: not a readable image (a Radiance HDR image, not an allowed format)")
    assert "PNG, JPEG, TIFF, WebP or BMP" in detail


def test_declared_size_over_the_limit_is_413_from_the_header(client):
    good = encode_png(np.zeros((16, 16, 3), np.uint8))
    response = client.post("/v1/detect", files={"reference": ("a.png", good, "image/png"),
                                                "comparison": ("b.png", png_claiming(30000, 30000),
                                                               "image/png")})
    assert response.status_code == 413
    assert response.json()["detail"] == ("comparison: image is 30000×30000 = 900000000 pixels; "
                                         f"the limit is {4096 * 4096} pixels")
    with pytest.raises(PixelLimitError):
        decode_upload(png_claiming(100, 100), "reference", 99)


def test_uploaded_phone_photos_are_turned_upright(client, rng):
    upright = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated a quarter turn anticlockwise; shown turned clockwise
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(buffer, format="PNG", exif=exif)
    assert np.array_equal(decode_upload(buffer.getvalue(), "comparison", 10_000), upright)
    response = client.post("/v1/detect", files={"reference": ("a.png", encode_png(upright), "image/png"),
                                                "comparison": ("b.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 200, response.text
    summary = response.json()
    assert (summary["width"], summary["height"]) == (50, 30) and summary["changed_fraction"] == 0.0
