"""Peak memory and wall time of the windowed, tiled GeoTIFF path on a huge pair (default 10 000²).

    python bench/tiling_memory.py [--size 10000] [--tile-size 1024] [--model default] ...

A synthetic 3-band uint8 GeoTIFF pair (smooth texture plus noise; the comparison has changed
rectangles) is generated row band by row band into a temporary folder, then the real CLI
(`changeseg detect REF CMP --windowed`) runs on it in a child process. The child's peak RSS
(`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`) and wall time are reported together with
the command, the machine and the date. The model defaults to the default preset's
architecture (weights as `from_pretrained("default")` builds them: accuracy is irrelevant here,
only the cost; `--threshold 0` marks every pixel changed, the worst case for the region and
polygon stages). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    """CPU model, cores and memory of this machine, in one line."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} usable cores{memory}, {platform.system()} {platform.release()}"


def generate_pair(folder: Path, size: int, seed: int = 0) -> tuple[Path, Path]:
    """Write a size×size 3-band uint8 GeoTIFF pair band by band (memory: one row band)."""
    from affine import Affine
    from rasterio.crs import CRS

    from changeseg.io.geotiff import GeoReference, GeoTiffWriter

    georef = GeoReference(CRS.from_epsg(32631), Affine(0.5, 0.0, 448_000.0, 0.0, -0.5, 5_412_000.0),
                          size, size)
    rng = np.random.default_rng(seed)
    changes = [(int(y), int(x), int(h), int(w)) for y, x, h, w in zip(
        rng.integers(0, size - 400, 40), rng.integers(0, size - 400, 40),
        rng.integers(50, 400, 40), rng.integers(50, 400, 40))]
    columns = np.arange(size, dtype=np.float32)
    paths = folder / "reference.tif", folder / "comparison.tif"
    with GeoTiffWriter(paths[0], georef, 3, np.uint8) as ref_out, \
            GeoTiffWriter(paths[1], georef, 3, np.uint8) as cmp_out:
        for top in range(0, size, 256):
            rows = min(256, size - top)
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
                    comparison[:, lo - top:hi - top, cx:cx + cw] = 255 - comparison[:, lo - top:hi - top,
                                                                                  cx:cx + cw]
            ref_out.write_rows(top, reference)
            cmp_out.write_rows(top, comparison)
    return paths


def main() -> None:
    """Run the benchmark and print its report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10_000, help="width and height in pixels")
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--tile-overlap", type=int, default=None)
    parser.add_argument("--tile-batch", type=int, default=1)
    parser.add_argument("--model", default="default", help="preset, packaged model or checkpoint folder")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threshold", type=float, default=None,
                        help="change threshold (0 = every pixel changed: the worst case for regions)")
    parser.add_argument("--workdir", default=None, help="where to put the pair (default: a temp dir)")
    args = parser.parse_args()

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {machine()}")
    print(f"date:    {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="changeseg-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        reference, comparison = generate_pair(folder, args.size)
        generated = time.perf_counter() - started
        print(f"pair:    {args.size}×{args.size}×3 uint8 GeoTIFF, generated in {generated:.1f} s "
              f"({(reference.stat().st_size + comparison.stat().st_size) / 2**20:.0f} MiB on disk, deflate)")
        model = args.model
        if not Path(model).is_dir():  # a preset: save it once so the child loads a plain folder
            from changeseg.inference.predictor import ChangeDetector

            model = str(ChangeDetector.from_pretrained(args.model, precision="fp32")
                        .save_pretrained(folder / "model"))
        out = folder / "out"
        command = [sys.executable, "-m", "changeseg.cli.main", "detect", str(reference), str(comparison),
                   "-o", str(out), "-m", model, "--windowed", "--tile-size", str(args.tile_size),
                   "--tile-batch", str(args.tile_batch), "--precision", args.precision,
                   "--device", args.device]
        if args.tile_overlap is not None:
            command += ["--tile-overlap", str(args.tile_overlap)]
        if args.threshold is not None:
            command += ["--threshold", str(args.threshold)]
        print(f"detect:  {shlex.join(command)}")
        started = time.perf_counter()
        finished = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
        if finished.returncode != 0:
            print(finished.stdout + finished.stderr)
            raise SystemExit(f"detect failed with exit code {finished.returncode}")
        summary = json.loads((out / "regions.json").read_text())
        sizes = {p.name: p.stat().st_size for p in out.iterdir()}
        print(f"output:  {finished.stdout.strip()}")
        print("files:   " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sorted(sizes.items())))
        megapixels = args.size * args.size / 1e6
        print(f"result:  wall {wall:.1f} s ({megapixels / wall:.2f} MP/s), peak RSS of the detect process "
              f"{peak_kib / 2**20:.2f} GiB, {summary['region_count']} regions, "
              f"changed {summary['changed_fraction']:.2%}, windowed {summary['windowed']}")
        print(f"budget:  peak RSS {'under' if peak_kib < 2 * 2**20 else 'OVER'} 2 GiB")


if __name__ == "__main__":
    main()
