"""Headless Chromium for the page tests (Debian's `chromium` + `chromium-driver`, Selenium).

Without them the tests skip locally and FAIL under CI=true, so CI cannot silently stop testing
the page. CHANGESEG_CHROMIUM / CHANGESEG_CHROMEDRIVER select other binaries.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", "--no-first-run", "--window-size=1280,1500"]


def missing_browser(reason: str) -> None:
    """Fail under CI=true (the browser is part of the test set-up there), skip elsewhere."""
    message = (f"{reason}; install with `apt-get install -y chromium chromium-driver` "
               "and `pip install selenium`")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def find_binaries() -> tuple[str, str]:
    """Paths of the Chromium browser and its matching chromedriver."""
    browser = os.environ.get("CHANGESEG_CHROMIUM") or next(
        (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)
    driver = os.environ.get("CHANGESEG_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not os.access(browser, os.X_OK):
        missing_browser(f"Chromium not found ({browser or 'not on PATH'})")
    if not driver or not os.access(driver, os.X_OK):
        missing_browser(f"chromedriver not found ({driver or 'not on PATH'})")
    return browser, driver


@pytest.fixture
def browser(tmp_path, monkeypatch):
    """A headless Chromium session with a fresh profile; quit at the end of the test."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing_browser("selenium is not installed")
    chromium, chromedriver = find_binaries()
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager try to download anything
    options = Options()
    options.binary_location = chromium
    for argument in [*CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, shown on failure
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
