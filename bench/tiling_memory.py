"""Peak memory and wall time of `changeseg detect` on a huge pair (default 10 000²): PNG, JPEG, GeoTIFF.

    python bench/tiling_memory.py [--size 10000] [--formats png,jpeg,geotiff] [--backends torch,auto] ...

A synthetic 3-band uint8 pair (smooth texture plus noise; the comparison has changed
rectangles) is generated, seeded, into a temporary folder — as PNG, as JPEG (quality 90) and
as a GeoTIFF (written row band by row band) — and the real CLI (`changeseg detect REF CMP -o
OUT --backend B --save-probability`) runs on each, for each backend, in a child process of its
own. Each child's peak RSS (its own `ru_maxrss`, from `os.wait4`) and wall time are reported
with the command, the machine, the date and the load average. Pairs this large take the
windowed paths automatically: image files are decoded once each and spooled to disk
(`changeseg.inference.windowed`), GeoTIFFs are read in windows (`changeseg.inference.geo`).
The model is the packaged `default` unless `--model` says otherwise (a preset is saved to a
folder first); `--threshold 0` marks every pixel changed, the worst case for the region and
polygon stages. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

FORMATS = ("png", "jpeg", "geotiff")
BAND_ROWS = 256


def machine() -> str:
    """CPU model, cores and memory of this machine, in one line."""
    from changeseg.hardware import cpu_model

    model = cpu_model()
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} usable cores{memory}, {platform.system()} {platform.release()}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or "n/a"."""
    try:
        return ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def texture_bands(size: int, seed: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(top, reference rows, comparison rows) of the synthetic pair, 3×rows×size uint8, top to bottom."""
    rng = np.random.default_rng(seed)
    changes = [(int(y), int(x), int(h), int(w)) for y, x, h, w in zip(
        rng.integers(0, size - 400, 40), rng.integers(0, size - 400, 40),
        rng.integers(50, 400, 40), rng.integers(50, 400, 40))]
    columns = np.arange(size, dtype=np.float32)
    for top in range(0, size, BAND_ROWS):
        rows = min(BAND_ROWS, size - top)
        y = np.arange(top, top + rows, dtype=np.float32)[:, None]
        base = np.stack([
            96 + 60 * np.sin(columns / 37.0) * np.cos(y / 53.0),
            110 + 50 * np.sin((columns + y) / 71.0),
            90 + 40 * np.cos(columns / 23.0 - y / 41.0),
        ])
        reference = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        comparison = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        for cy, cx, ch, cw in changes:
            lo, hi = max(cy, top), min(cy + ch, top + rows)
            if lo < hi:
                window = comparison[:, lo - top:hi - top, cx:cx + cw]
                window[...] = 255 - window
        yield top, reference, comparison


def generate_geotiff_pair(folder: Path, size: int, seed: int = 0) -> tuple[Path, Path]:
    """Write the size×size 3-band uint8 GeoTIFF pair band by band (memory: one row band)."""
    from affine import Affine
    from rasterio.crs import CRS

    from changeseg.io.geotiff import GeoReference, GeoTiffWriter

    georef = GeoReference(CRS.from_epsg(32631), Affine(0.5, 0.0, 448_000.0, 0.0, -0.5, 5_412_000.0),
                          size, size)
    paths = folder / "reference.tif", folder / "comparison.tif"
    with GeoTiffWriter(paths[0], georef, 3, np.uint8) as ref_out, \
            GeoTiffWriter(paths[1], georef, 3, np.uint8) as cmp_out:
        for top, reference, comparison in texture_bands(size, seed):
            ref_out.write_rows(top, reference)
            cmp_out.write_rows(top, comparison)
    return paths


def generate_image_pair(folder: Path, size: int, fmt: str, seed: int = 0) -> tuple[Path, Path]:
    """Write the pair as PNG or JPEG (quality 90); holds both images while encoding (2·3·size² bytes)."""
    import cv2

    images = np.empty((2, size, size, 3), np.uint8)
    for top, reference, comparison in texture_bands(size, seed):
        images[0, top:top + reference.shape[1]] = reference.transpose(1, 2, 0)
        images[1, top:top + comparison.shape[1]] = comparison.transpose(1, 2, 0)
    suffix, params = (".png", []) if fmt == "png" else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90])
    paths = folder / f"reference{suffix}", folder / f"comparison{suffix}"
    for path, image in zip(paths, images):
        if not cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]), params):
            raise SystemExit(f"could not write {path}")
    return paths


def run_child(command: list[str]) -> tuple[int, str, float, int]:
    """Run a command; (exit code, its output, wall seconds, its own peak RSS in KiB)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        log.seek(0)
        output = log.read().decode(errors="replace")
    return child.returncode, output, wall, usage.ru_maxrss  # Linux: KiB


def main() -> None:
    """Run the benchmark and print its report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000, help="width and height in pixels")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {FORMATS}")
    parser.add_argument("--tile-size", type=int, default=None,
                        help="detect's --tile-size (default: detect's own, 512 on the windowed paths)")
    parser.add_argument("--tile-overlap", type=int, default=None)
    parser.add_argument("--tile-batch", type=int, default=1)
    parser.add_argument("--model", default="default", help="packaged model, preset or checkpoint folder")
    parser.add_argument("--backends", default="torch",
                        help="comma-separated `detect --backend` values to measure, each on every format "
                             "(torch imports PyTorch: the largest footprint)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threshold", type=float, default=None,
                        help="change threshold (0 = every pixel changed: the worst case for regions)")
    parser.add_argument("--budget-gib", type=float, default=2.0, help="say whether each peak is under this")
    parser.add_argument("--workdir", default=None, help="where to put the pairs (default: a temp dir)")
    args = parser.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats or any(f not in FORMATS for f in formats):
        parser.error(f"--formats takes a comma-separated subset of {', '.join(FORMATS)}")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {machine()}")
    print(f"date:    {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    print(f"load:    {load_average()} (1, 5, 15 min) at the start")
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="changeseg-bench-") as tmp:
        folder = Path(tmp)
        model = args.model
        from changeseg.io.checkpoints import packaged_models

        if not Path(model).is_dir() and model not in packaged_models():  # a preset: save it once
            from changeseg.inference.predictor import ChangeDetector

            model = str(ChangeDetector.from_pretrained(args.model, precision="fp32")
                        .save_pretrained(folder / "model"))
        warm_up(folder, model, backends, args)
        for fmt in formats:
            started = time.perf_counter()
            pair_dir = folder / fmt
            pair_dir.mkdir()
            if fmt == "geotiff":
                reference, comparison = generate_geotiff_pair(pair_dir, args.size)
            else:
                reference, comparison = generate_image_pair(pair_dir, args.size, fmt)
            on_disk = (reference.stat().st_size + comparison.stat().st_size) / 2**20
            print(f"\n[{fmt}] pair: {args.size}×{args.size}×3 uint8, generated in "
                  f"{time.perf_counter() - started:.1f} s ({on_disk:.0f} MiB on disk)")
            for backend in backends:
                measure(f"{fmt}, {backend}", backend, reference, comparison, pair_dir / f"out-{backend}",
                        model, args)


def warm_up(folder: Path, model: str, backends: list[str], args: argparse.Namespace) -> None:
    """Run each backend once on a small pair, so one-off work (an ONNX export into the user cache,
    which imports PyTorch) happens before, not during, the measurements; print what it said."""
    small = folder / "warm-up"
    small.mkdir()
    reference, comparison = generate_image_pair(small, 600, "png")
    for backend in backends:
        command = [sys.executable, "-m", "changeseg.cli.main", "detect", str(reference), str(comparison),
                   "-o", str(small / f"out-{backend}"), "-m", model, "--backend", backend,
                   "--precision", args.precision, "--device", args.device]
        code, output, wall, peak_kib = run_child(command)
        lines = output.strip().splitlines()
        print(f"[warm-up, {backend}] {wall:.1f} s, peak RSS {peak_kib / 2**20:.2f} GiB: "
              + (" | ".join(lines) if lines else "(no output)"))
        if code != 0:
            raise SystemExit(f"warm-up detect failed with exit code {code}")


def measure(label: str, backend: str, reference: Path, comparison: Path, out: Path, model: str,
            args: argparse.Namespace) -> None:
    """Run `changeseg detect` on one pair in a child process and print its peak RSS and wall time."""
    command = [sys.executable, "-m", "changeseg.cli.main", "detect", str(reference), str(comparison),
               "-o", str(out), "-m", model, "--backend", backend, "--save-probability",
               "--tile-batch", str(args.tile_batch), "--precision", args.precision, "--device", args.device]
    if args.tile_size is not None:
        command += ["--tile-size", str(args.tile_size)]
    if args.tile_overlap is not None:
        command += ["--tile-overlap", str(args.tile_overlap)]
    if args.threshold is not None:
        command += ["--threshold", str(args.threshold)]
    print(f"[{label}] detect: {shlex.join(command)}")
    code, output, wall, peak_kib = run_child(command)
    if code != 0:
        print(output)
        raise SystemExit(f"detect failed with exit code {code}")
    summary = json.loads((out / "regions.json").read_text())
    listing = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in sorted(out.iterdir()))
    peak = peak_kib / 2**20
    print(f"[{label}] output: {' | '.join(output.strip().splitlines())}")
    print(f"[{label}] files:  {listing}")
    print(f"[{label}] result: wall {wall:.1f} s ({args.size ** 2 / 1e6 / wall:.2f} MP/s), "
          f"peak RSS {peak:.2f} GiB ({peak_kib * 1024 / 1e9:.2f} GB), {summary['region_count']} regions, "
          f"changed {summary['changed_fraction']:.2%}, windowed {summary.get('windowed')}; "
          f"{'under' if peak < args.budget_gib else 'OVER'} {args.budget_gib:g} GiB; load {load_average()}")


if __name__ == "__main__":
    main()
