"""The web page driven in real headless Chromium (Debian's `chromium` + `chromium-driver`, Selenium).

Needs `apt-get install chromium chromium-driver` and `pip install selenium`. Without them the
test skips locally and FAILS under CI=true, so CI cannot silently stop testing the page.
Set CHANGESEG_CHROMIUM / CHANGESEG_CHROMEDRIVER to use other binaries, and
CHANGESEG_SCREENSHOT_DIR to keep the page screenshot somewhere other than pytest's tmp_path.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx


def screenshot_path(tmp_path: Path) -> Path:
    """Where the page screenshot goes (CHANGESEG_SCREENSHOT_DIR or the test's tmp_path)."""
    folder = Path(os.environ.get("CHANGESEG_SCREENSHOT_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "changeseg-web-page.png"


def test_page_uploads_a_pair_and_shows_the_result(live_server, browser, tsunami_pair, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    reference, comparison = tsunami_pair
    browser.get(f"{live_server.url}/")
    WebDriverWait(browser, 30).until(lambda d: "Model: tiny" in d.find_element(By.ID, "model-line").text)
    assert browser.find_element(By.ID, "result").get_attribute("hidden") is not None
    assert browser.find_element(By.ID, "align").is_displayed()  # the torch backend can align pairs

    browser.find_element(By.ID, "reference-input").send_keys(str(reference))
    browser.find_element(By.ID, "comparison-input").send_keys(str(comparison))
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 240).until(lambda d: status.get_attribute("data-state") in ("done", "error"))
    assert status.get_attribute("data-state") == "done", status.text

    # The overlay image arrived and was decoded at the pair's full size.
    overlay_size = browser.execute_script(
        "const img = document.getElementById('view-overlay');"
        "return [img.complete, img.naturalWidth, img.naturalHeight, img.dataset.loaded];")
    assert overlay_size == [True, 1024, 224, "true"]
    assert browser.find_element(By.ID, "view-overlay").is_displayed()

    # The region count shown, the table rows and the JSON the page received all agree...
    shown = int(browser.find_element(By.ID, "region-count").text)
    page_json = browser.execute_script(
        "const r = window.changeseg.lastResult; return {count: r.region_count, n: r.regions.length};")
    rows = browser.find_elements(By.CSS_SELECTOR, "#regions-table tbody tr")
    boxes = browser.find_elements(By.CSS_SELECTOR, "#boxes rect")
    assert shown == page_json["count"] == page_json["n"] == len(rows) == len(boxes)
    # ...and match an independent request for the same pair.
    direct = httpx.post(f"{live_server.url}/v1/detect", timeout=120,
                        data={"min_area": "0", "resize": "false"},
                        files={"reference": (reference.name, reference.read_bytes(), "image/jpeg"),
                               "comparison": (comparison.name, comparison.read_bytes(), "image/jpeg")}).json()
    assert shown == direct["region_count"]
    assert shown > 0  # the tiny model marks regions on this pair, so the table is really exercised

    # The opacity slider and the before/after swipe drive the view.
    browser.execute_script(
        "for (const [id, v] of [['opacity', 30], ['swipe', 50]]) {"
        "  const el = document.getElementById(id); el.value = v;"
        "  el.dispatchEvent(new Event('input', {bubbles: true})); }")
    assert browser.find_element(By.ID, "view-overlay").value_of_css_property("opacity") == "0.3"
    assert "50%" in browser.execute_script("return document.getElementById('after-layer').style.clipPath")
    assert browser.find_element(By.ID, "divider").is_displayed()

    # The mask can be downloaded: a blob link named after the comparison image.
    link = browser.find_element(By.ID, "download-mask")
    assert link.get_attribute("href").startswith("blob:")
    assert link.get_attribute("download") == f"{comparison.stem}-mask.png"

    browser.execute_script("document.getElementById('swipe').value = 35;"
                           "document.getElementById('swipe').dispatchEvent(new Event('input'));"
                           "document.getElementById('opacity').value = 80;"
                           "document.getElementById('opacity').dispatchEvent(new Event('input'));")
    shot = screenshot_path(tmp_path)
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_page_shows_the_server_error_for_a_bad_pair(live_server, browser, tsunami_pair, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    reference, _ = tsunami_pair
    not_image = tmp_path / "notes.png"
    not_image.write_text("not really a picture")
    browser.get(f"{live_server.url}/")
    browser.find_element(By.ID, "reference-input").send_keys(str(reference))
    browser.find_element(By.ID, "comparison-input").send_keys(str(not_image))
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 120).until(lambda d: status.get_attribute("data-state") in ("done", "error"))
    assert status.get_attribute("data-state") == "error"
    assert "422" in status.text and "comparison: not a readable image" in status.text
    assert browser.find_element(By.ID, "result").get_attribute("hidden") is not None


def test_api_docs_render_offline(live_server, browser):
    """Swagger UI at /docs renders the API from local files (the machine has no internet)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{live_server.url}/docs")
    WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 4)
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/v1/detect", "/healthz", "/v1/models"} <= {p.replace("\u200b", "") for p in paths}


def test_page_asks_for_the_api_key_when_the_server_needs_one(auth_server, browser, tmp_path):
    import cv2
    import numpy as np
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.service.conftest import API_KEYS

    reference = np.full((40, 40, 3), 50, np.uint8)
    comparison = reference.copy()
    comparison[5:15, 5:25] = 250
    cv2.imwrite(str(tmp_path / "before.png"), reference)
    cv2.imwrite(str(tmp_path / "after.png"), comparison)

    browser.get(f"{auth_server.url}/")
    auth = browser.find_element(By.ID, "auth")
    WebDriverWait(browser, 30).until(lambda d: auth.is_displayed())
    assert "needs an API key" in browser.find_element(By.ID, "auth-message").text
    assert "API key" in browser.find_element(By.ID, "model-line").text

    browser.find_element(By.ID, "api-key").send_keys("a-wrong-key-of-enough-length")
    browser.find_element(By.ID, "use-key").click()
    message = browser.find_element(By.ID, "auth-message")
    WebDriverWait(browser, 30).until(lambda d: auth.is_displayed() and "not accepted" in message.text)

    browser.find_element(By.ID, "api-key").send_keys(API_KEYS[1])
    browser.find_element(By.ID, "use-key").click()
    WebDriverWait(browser, 30).until(
        lambda d: "Model: gated-difference" in d.find_element(By.ID, "model-line").text)
    assert not auth.is_displayed()

    browser.find_element(By.ID, "reference-input").send_keys(str(tmp_path / "before.png"))
    browser.find_element(By.ID, "comparison-input").send_keys(str(tmp_path / "after.png"))
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 60).until(lambda d: status.get_attribute("data-state") in ("done", "error"))
    assert status.get_attribute("data-state") == "done", status.text
    assert browser.find_element(By.ID, "region-count").text == "1"


def test_page_offers_the_models_domains_and_sends_the_chosen_one(domain_server, live_server, browser,
                                                                 tsunami_pair):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    reference, comparison = tsunami_pair
    browser.get(f"{live_server.url}/")  # a model without domains: no choice shown
    WebDriverWait(browser, 30).until(lambda d: "Model: tiny" in d.find_element(By.ID, "model-line").text)
    assert not browser.find_element(By.ID, "domain-option").is_displayed()

    browser.get(f"{domain_server.url}/")
    WebDriverWait(browser, 30).until(
        lambda d: "Model: tiny-domain" in d.find_element(By.ID, "model-line").text)
    assert browser.find_element(By.ID, "domain-option").is_displayed()
    choice = Select(browser.find_element(By.ID, "domain"))
    assert [o.text for o in choice.options] == ["any camera", "a fixed camera"]
    choice.select_by_value("fixed-camera")
    browser.find_element(By.ID, "reference-input").send_keys(str(reference))
    browser.find_element(By.ID, "comparison-input").send_keys(str(comparison))
    status = browser.find_element(By.ID, "status")
    WebDriverWait(browser, 240).until(lambda d: status.get_attribute("data-state") in ("done", "error"))
    assert status.get_attribute("data-state") == "done", status.text
    shown = browser.execute_script("return window.changeseg.lastResult.changed_pixels;")

    def direct(**fields: str) -> int:
        answer = httpx.post(f"{domain_server.url}/v1/detect", timeout=120, data=fields,
                            files={"reference": (reference.name, reference.read_bytes(), "image/jpeg"),
                                   "comparison": (comparison.name, comparison.read_bytes(), "image/jpeg")})
        return answer.json()["changed_pixels"]

    # the page's answer is the calibrated one, which marks more than the plain one
    assert shown == direct(domain="fixed-camera") > direct()
