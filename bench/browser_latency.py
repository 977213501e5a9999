"""In-browser latency of the on-device page against Python's onnxruntime, on the same model and pair.

Writes the static page for a model (`changeseg export --web`, through the export cache), serves
it from Python's http.server on 127.0.0.1 — once plainly (one WebAssembly thread: no
cross-origin isolation) and once with the COOP/COEP headers (WebAssembly threads) — runs the
pair `--runs` times in headless Chromium (onnxruntime-web, wasm backend) and reports the median
per-pair time the page measures (decoding excluded after the first run, inference, regions,
overlay and PNGs included), the first run's model download + session start, and
Python's onnxruntime on the same `model.onnx` with 1 thread and with all physical cores,
timed in the same rounds. Prints the command, machine and date, and one Markdown table.

    python bench/browser_latency.py                       # default model, examples/coffee, 5 runs
    python bench/browser_latency.py --model pcb --pair examples/pcb/reference.png examples/pcb/comparison.png

Needs Chromium + chromedriver + selenium (as the browser tests) and the onnxruntime-web files
installed by `make`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from changeseg.inference.onnx_runtime import OnnxChangeDetector, physical_cores  # noqa: E402
from changeseg.service.web_bundle import ORT_WEB_VERSION, export_web, serve_static  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1280,1500"]


def browser_runs(url: str, reference: Path, comparison: Path, runs: int, profile: Path) -> list[dict]:
    """The page's result timings for `runs` detections of one pair in a fresh headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ["SE_OFFLINE"] = "true"
    options = Options()
    options.binary_location = os.environ.get("CHANGESEG_CHROMIUM", "/usr/bin/chromium")
    for argument in [*CHROMIUM_ARGS, f"--user-data-dir={profile}"]:
        options.add_argument(argument)
    service = Service(executable_path=os.environ.get("CHANGESEG_CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    results = []
    try:
        driver.get(f"{url}/index.html?ep=wasm")
        WebDriverWait(driver, 60).until(lambda d: "Model:" in d.find_element(By.ID, "model-line").text)
        driver.find_element(By.ID, "reference-input").send_keys(str(reference))
        driver.find_element(By.ID, "comparison-input").send_keys(str(comparison))
        for run in range(1, runs + 1):
            if run > 1:
                driver.find_element(By.ID, "detect").click()
            WebDriverWait(driver, 900).until(
                lambda d, run=run: d.execute_script("return window.changeseg.runs") == run or
                d.find_element(By.ID, "status").get_attribute("data-state") == "error")
            status = driver.find_element(By.ID, "status")
            if status.get_attribute("data-state") == "error":
                raise SystemExit(f"the page failed: {status.text}")
            result = driver.execute_script("return window.changeseg.lastResult")
            results.append({**result["timings_ms"], "threads": result["on_device"]["threads"]})
        results[0]["chromium"] = driver.capabilities.get("browserVersion")
    finally:
        driver.quit()
    return results


def python_ms(detector: OnnxChangeDetector, reference: Path, comparison: Path, runs: int) -> float:
    """Median wall time of `detector.predict` on the pair (after one warm-up)."""
    detector.predict(reference, comparison)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        detector.predict(reference, comparison)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="packaged model name or checkpoint folder")
    parser.add_argument("--pair", nargs=2, type=Path, default=[ROOT / "examples/coffee/reference.png",
                                                              ROOT / "examples/coffee/comparison.png"])
    parser.add_argument("--runs", type=int, default=5, help="detections per browser configuration")
    args = parser.parse_args(argv)
    reference, comparison = (p.resolve() for p in args.pair)
    with tempfile.TemporaryDirectory(prefix="changeseg-browser-bench-") as scratch:
        site = export_web(args.model, Path(scratch) / "site").folder
        rows = []
        for isolated in (False, True):
            with serve_static(site, isolated) as url:
                runs = browser_runs(url, reference, comparison, args.runs,
                                    Path(scratch) / f"profile-{isolated}")
            warm = runs[1:] or runs
            rows.append((isolated, runs[0], statistics.median(r["total"] for r in warm),
                         statistics.median(r["inference"] for r in warm), runs[0]["threads"]))
        python = {threads: python_ms(OnnxChangeDetector.from_pretrained(site / "model", threads=threads),
                                     reference, comparison, args.runs)
                  for threads in sorted({1, physical_cores()})}
    from PIL import Image

    width, height = Image.open(reference).size
    load = os.getloadavg()
    print(f"command: python {shlex.join(['bench/browser_latency.py', *(argv or sys.argv[1:])])}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} logical CPUs ({physical_cores()} physical "
          f"cores usable), load average {load[0]:.1f}; Chromium {rows[0][1]['chromium']} headless; "
          f"onnxruntime-web {ORT_WEB_VERSION}; date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"model {args.model}, pair {reference.parent.name} ({width}×{height}), median of "
          f"{max(1, args.runs - 1)} warm run(s)\n")
    print("| where | threads | per pair, warm (ms) | of which inference (ms) | first run (ms) "
          "| model download + session (ms) |")
    print("|---|---|---|---|---|---|")
    for isolated, first, total, inference, threads in rows:
        label = "Chromium, onnxruntime-web wasm, " + ("COOP/COEP headers" if isolated else
                                                      "plain static server")
        print(f"| {label} | {threads} | {total:.0f} | {inference:.0f} | {first['total']:.0f} | "
              f"{first['model_load']:.0f} |")
    for threads, ms in python.items():
        print(f"| Python onnxruntime (`OnnxChangeDetector.predict`) | {threads} | {ms:.0f} | – | – | – |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
