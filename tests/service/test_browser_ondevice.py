"""On-device mode in real headless Chromium: the model runs in the browser with onnxruntime-web.

Three pages, each checked against the Python path on the same pair:

- the static folder `changeseg export --web` writes for the packaged `default` model, served by
  Python's plain `http.server` (any static server will do; no cross-origin isolation, so one
  WebAssembly thread), on the bundled examples/coffee pair: the mask must agree with Python's
  onnxruntime on ≥ 99 % of pixels, and the in-browser latency is reported;
- the same kind of folder for the tiny test model, served cross-origin isolated (WebAssembly
  threads) with a small tile size, so the browser's tiling and blending are compared with
  `predict_proba_tiled`;
- the page of a real `changeseg serve`, switched to "on this device": the model comes from the
  server's export cache, the images never reach the server.

Needs Chromium + chromedriver + selenium (see test_browser.py) and the onnxruntime-web files that
`make` installs; under CI=true their absence fails the tests instead of skipping them.
"""

from __future__ import annotations

import base64
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from changeseg.cli.main import main as changeseg_main
from changeseg.inference.onnx_runtime import OnnxChangeDetector
from changeseg.io.checkpoints import read_config
from changeseg.io.images import encode_png
from changeseg.service.web_bundle import export_web, serve_static
from tests.conftest import PROJECT_ROOT
from tests.inference.onnx_helpers import changed_pair
from tests.service.conftest import start_server, stop_server
from tests.service.test_web_bundle import require_runtime

COFFEE = PROJECT_ROOT / "examples" / "coffee"
RUN_TIMEOUT_S = 600




def console(browser) -> str:
    """The browser console so far, one line per message."""
    return "\n".join(f"{e['level']}: {e['message']}" for e in browser.get_log("browser"))


def wait_for_result(browser, timeout: float = RUN_TIMEOUT_S) -> dict:
    """Wait until the page reports done (or fails); the result JSON the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, timeout).until(lambda d: status.get_attribute("data-state") in ("done", "error"))
    assert status.get_attribute("data-state") == "done", f"{status.text}\n{console(browser)}"
    return browser.execute_script("return window.changeseg.lastResult")


def run_pair(browser, reference: Path, comparison: Path) -> tuple[dict, np.ndarray]:
    """Give the page both files (detection starts by itself); its result JSON and mask (H×W bool)."""
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "reference-input").send_keys(str(reference))
    browser.find_element(By.ID, "comparison-input").send_keys(str(comparison))
    result = wait_for_result(browser)
    return result, page_mask(browser, result)


def page_mask(browser, result: dict) -> np.ndarray:
    """The page's last on-device mask."""
    packed = base64.b64decode(browser.execute_script("return window.changeseg.maskBase64()"))
    return np.frombuffer(packed, np.uint8).reshape(result["height"], result["width"]).astype(bool)


def download(browser, link_id: str) -> bytes:
    """The bytes behind one of the page's download links (a blob: URL)."""
    encoded = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(document.getElementById(arguments[0]).href).then((r) => r.arrayBuffer()).then((buffer) => {
          const bytes = new Uint8Array(buffer);
          let text = "";
          for (let i = 0; i < bytes.length; i += 0x8000) {
            text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
          }
          done(btoa(text));
        }).catch((error) => done("failed: " + error));""", link_id)
    assert not encoded.startswith("failed:"), encoded
    return base64.b64decode(encoded)


def decode_png_rgb(data: bytes) -> np.ndarray:
    """A PNG's pixels as H×W×3 RGB (the browser writes RGBA)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def report(request, line: str) -> None:
    """Put a measured number in the test output (terminal and junit properties)."""
    request.node.user_properties.append(("measurement", line))
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even when pytest captures the output
            reporter.write_line("")
            reporter.write_line(line)
    print(line)


@pytest.fixture(scope="module")
def default_site(tmp_path_factory) -> Path:
    """`changeseg export --model default --web SITE` (through the session's export cache, see conftest)."""
    require_runtime()
    site = tmp_path_factory.mktemp("default-web") / "site"
    assert changeseg_main(["export", "--model", "default", "--web", str(site)]) == 0
    return site


def test_static_folder_runs_the_default_model_like_python(default_site, browser, request):
    """The packaged model on the bundled pair, in the browser (wasm, one thread) and in Python's ORT."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    reference, comparison = COFFEE / "reference.png", COFFEE / "comparison.png"
    with serve_static(default_site) as url:
        browser.get(f"{url}/index.html?ep=wasm")
        line = browser.find_element(By.ID, "model-line")
        WebDriverWait(browser, 30).until(lambda d: "Model: default" in line.text)
        assert not browser.find_element(By.ID, "where").is_displayed()  # no server: on-device only
        assert not browser.find_element(By.ID, "server-links").is_displayed()
        first, mask = run_pair(browser, reference, comparison)
        mask_png = download(browser, "download-mask")
        overlay_png = download(browser, "download-overlay")
        regions_json = json.loads(download(browser, "download-json"))
        assert browser.execute_script("return window.changeseg.runs") == 1
        browser.find_element(By.ID, "detect").click()  # again, with the session already made
        WebDriverWait(browser, RUN_TIMEOUT_S).until(
            lambda d: d.execute_script("return window.changeseg.runs") == 2 or
            d.find_element(By.ID, "status").get_attribute("data-state") == "error")
        second = wait_for_result(browser)
        second_mask = page_mask(browser, second)
        # the model's fixed-camera calibration, applied in the browser (ondevice.js)
        assert browser.find_element(By.ID, "domain-option").is_displayed()
        Select(browser.find_element(By.ID, "domain")).select_by_value("fixed-camera")
        browser.find_element(By.ID, "detect").click()
        WebDriverWait(browser, RUN_TIMEOUT_S).until(
            lambda d: d.execute_script("return window.changeseg.runs") == 3 or
            d.find_element(By.ID, "status").get_attribute("data-state") == "error")
        third = wait_for_result(browser)
        domain_mask = page_mask(browser, third)

    assert first["on_device"]["provider"] == "wasm" and first["on_device"]["threads"] == 1
    assert browser.execute_script("return self.crossOriginIsolated") is False  # a plain static server

    detector = OnnxChangeDetector.from_pretrained(default_site / "model", threads=1)
    python = detector.predict(reference, comparison)
    assert 0.01 < python.changed_fraction < 0.5  # both classes present: the comparison means something
    agreement = float((mask == python.mask).mean())
    assert agreement >= 0.99, f"the browser's mask agrees with onnxruntime's on {agreement:.2%} of pixels"

    # the same summary, regions, downloads and overlay as the Python result
    summary = python.summary()
    assert first["threshold"] == summary["threshold"] == read_config(default_site / "model").threshold
    assert first["class_names"] == summary["class_names"] == ["unchanged", "appear", "disappear", "exchange"]
    assert set(summary) <= set(first) and first["regions"]
    assert {r["label"] for r in first["regions"]} <= {"appear", "disappear", "exchange"}
    assert first["region_count"] == summary["region_count"] == len(first["regions"])
    for got, expected in zip(first["regions"], summary["regions"]):
        assert got["label"] == expected["label"] and got["id"] == expected["id"]
        assert np.abs(np.subtract(got["box"], expected["box"])).max() <= 2
        assert abs(got["area"] - expected["area"]) <= 0.02 * expected["area"]
    assert regions_json["regions"] == first["regions"] and "images" not in regions_json
    assert (decode_png_rgb(mask_png)[..., 0] == mask * 255).all()
    overlay = decode_png_rgb(overlay_png).astype(int)
    overlay_difference = np.abs(overlay - python.overlay().astype(int)).max(axis=2)
    assert (overlay_difference <= 2).mean() >= 0.99

    repeats = []
    for _ in range(3):
        started = time.perf_counter()
        detector.predict(reference, comparison)
        repeats.append((time.perf_counter() - started) * 1e3)
    python_ms = statistics.median(repeats)
    timings, warm = first["timings_ms"], second["timings_ms"]
    assert (second_mask == mask).all()
    assert third["on_device"]["domain"] == "fixed-camera" and first["on_device"]["domain"] is None
    calibrated = detector.predict(reference, comparison, domain="fixed-camera")
    assert calibrated.mask.sum() > python.mask.sum()  # the calibration marks more on this pair
    domain_agreement = float((domain_mask == calibrated.mask).mean())
    assert domain_agreement >= 0.99, f"with the domain, masks agree on {domain_agreement:.2%} of pixels"
    assert third["region_count"] == calibrated.summary()["region_count"]
    chromium = browser.capabilities.get("browserVersion")
    report(request, f"in-browser latency (Chromium {chromium}, onnxruntime-web wasm, 1 thread), model "
                    f"default on examples/coffee 384×384: first run {timings['total']:.0f} ms (inference "
                    f"{timings['inference']:.0f} ms; model download + session {timings['model_load']:.0f} ms "
                    f"before it), second run {warm['total']:.0f} ms (inference {warm['inference']:.0f} ms); "
                    f"Python onnxruntime, 1 thread, same model and pair: {python_ms:.0f} ms; "
                    f"masks agree on {agreement:.2%} of pixels")


@pytest.fixture(scope="module")
def tiny_site(onnx_folder, tmp_path_factory) -> Path:
    """The static folder for the tiny test model (its shared ONNX export, no new export)."""
    require_runtime()
    return export_web(onnx_folder, tmp_path_factory.mktemp("tiny-web") / "site").folder


def test_tiles_are_blended_like_python_and_isolation_gives_threads(tiny_site, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    reference, comparison = changed_pair(np.random.default_rng(21), 260, 300)
    (tmp_path / "before.png").write_bytes(encode_png(reference))
    (tmp_path / "after.png").write_bytes(encode_png(comparison))
    with serve_static(tiny_site, isolated=True) as url:
        browser.get(f"{url}/index.html?ep=wasm&tile=128")
        WebDriverWait(browser, 30).until(lambda d: "Model:" in d.find_element(By.ID, "model-line").text)
        result, mask = run_pair(browser, tmp_path / "before.png", tmp_path / "after.png")
        cores = browser.execute_script("return navigator.hardwareConcurrency")
        assert browser.execute_script("return self.crossOriginIsolated") is True
    assert result["on_device"] == {"runtime": "onnxruntime-web", "provider": "wasm", "threads": min(4, cores),
                                   "tile_size": 128, "tile_overlap": 32, "domain": None}

    detector = OnnxChangeDetector.from_pretrained(tiny_site / "model", threads=1)
    tiled = detector.predict(tmp_path / "before.png", tmp_path / "after.png", tile_size=128)
    whole = detector.predict(tmp_path / "before.png", tmp_path / "after.png", tile_size=0)
    assert 0.05 < tiled.changed_fraction < 0.95
    agree_tiled = float((mask == tiled.mask).mean())
    agree_whole = float((mask == whole.mask).mean())
    assert agree_tiled >= 0.999 and agree_tiled > agree_whole, (agree_tiled, agree_whole)
    assert result["region_count"] == len(tiled.regions)


@pytest.fixture
def ondevice_server(tiny_checkpoint, tmp_path) -> Iterator:
    """`changeseg serve` with the tiny checkpoint and a fresh export cache."""
    require_runtime()
    server = start_server(["--model", str(tiny_checkpoint), "--backend", "torch", "--precision", "fp32",
                           "--no-warmup"],
                          tmp_path / "server.log", env={"CHANGESEG_CACHE": str(tmp_path / "cache")})
    try:
        yield server
    finally:
        stop_server(server)


def access_log(server) -> list[dict]:
    """The server's JSON access-log lines so far."""
    lines = []
    for line in server.log().splitlines():
        if line.startswith("{") and '"event": "request"' in line:
            lines.append(json.loads(line))
    return lines


def test_serve_page_runs_the_pair_on_this_device(ondevice_server, browser, tsunami_pair, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    reference, comparison = tsunami_pair
    browser.get(f"{ondevice_server.url}/")
    device = browser.find_element(By.ID, "where-device")
    WebDriverWait(browser, 30).until(lambda d: "Model: tiny" in d.find_element(By.ID, "model-line").text)
    assert device.is_enabled()
    device.click()
    assert "not uploaded" in browser.find_element(By.ID, "where-note").text
    assert not browser.find_element(By.ID, "align-option").is_displayed()  # aligning needs the server
    result, mask = run_pair(browser, reference, comparison)
    assert browser.execute_script("return self.crossOriginIsolated") is True  # the server sends COOP/COEP
    assert result["on_device"]["provider"] == "wasm" and result["on_device"]["threads"] >= 1
    assert "time on this device" in browser.find_element(By.ID, "elapsed-label").text
    shown = int(browser.find_element(By.ID, "region-count").text)
    rows = browser.find_elements(By.CSS_SELECTOR, "#regions-table tbody tr")
    assert shown == result["region_count"] == len(rows)

    requests = [(r["method"], r["path"], r["status"]) for r in access_log(ondevice_server)]
    assert ("GET", "/v1/ondevice/manifest.json", 200) in requests
    assert ("GET", "/v1/ondevice/model.onnx", 200) in requests
    assert not [r for r in requests if r[0] == "POST"]  # the images never went to the server
    assert list((tmp_path / "cache" / "onnx").glob("tiny-*/model.onnx"))  # exported into the cache given

    answer = httpx.post(f"{ondevice_server.url}/v1/detect/mask", timeout=120,
                        files={"reference": (reference.name, reference.read_bytes(), "image/jpeg"),
                               "comparison": (comparison.name, comparison.read_bytes(), "image/jpeg")})
    assert answer.status_code == 200
    server_mask = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_UNCHANGED) > 0
    assert 0.001 < server_mask.mean() < 0.9
    agreement = float((server_mask == mask).mean())
    assert agreement >= 0.99, f"on-device and server masks agree on {agreement:.2%} of pixels"


def test_bad_pairs_get_one_clear_message_on_the_device(tiny_site, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    reference, comparison = changed_pair(np.random.default_rng(5), 80, 120)
    (tmp_path / "before.png").write_bytes(encode_png(reference))
    (tmp_path / "after.png").write_bytes(encode_png(comparison[:60]))
    (tmp_path / "notes.png").write_text("not really a picture")
    with serve_static(tiny_site) as url:
        browser.get(f"{url}/index.html?ep=wasm")
        status = browser.find_element(By.ID, "status")
        browser.find_element(By.ID, "reference-input").send_keys(str(tmp_path / "before.png"))
        browser.find_element(By.ID, "comparison-input").send_keys(str(tmp_path / "after.png"))
        WebDriverWait(browser, RUN_TIMEOUT_S).until(lambda d: status.get_attribute("data-state") == "error")
        assert status.text == ("On this device: reference is 120×80 but comparison is 120×60 (width×height); "
                               "tick \"Resize comparison to reference\"")
        browser.find_element(By.ID, "resize").click()
        browser.find_element(By.ID, "detect").click()
        WebDriverWait(browser, RUN_TIMEOUT_S).until(lambda d: status.get_attribute("data-state") == "done")
        assert browser.execute_script("return window.changeseg.lastResult.width") == 120
        browser.find_element(By.ID, "comparison-input").send_keys(str(tmp_path / "notes.png"))
        WebDriverWait(browser, RUN_TIMEOUT_S).until(lambda d: status.get_attribute("data-state") == "error")
        assert status.text.startswith("On this device: comparison: this browser cannot decode notes.png")
