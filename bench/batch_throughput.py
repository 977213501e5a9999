"""Batch throughput: the model's own pairs/s against a whole batch run's, on LEVIR-size pairs (1024²).

    python bench/batch_throughput.py [--pairs 100] [--size 1024] [--backend auto] [--model default]

`--pairs` seeded pairs of `--size`² are written as PNGs into a temporary folder: mosaics of the
256² LEVIR-CD crops in `$CHANGESEG_DATA/levir_samples` (A/ and B/, the same crops on both
dates), or synthetic textures with changed rectangles when those are not there. The backend
is loaded once, as `changeseg detect` loads it, and then, in one process, three modes run on
the same pairs:

- *model only*: the pairs decoded and prepared in advance, each sent through the model alone
  (`predict_proba_auto`: normalisation, network, softmax) — the model's own throughput;
- *batch, overlapped*: `run_batch` as `changeseg detect --pairs` runs it (reading the next pair
  and writing the last one in threads while the model runs);
- *batch, sequential*: the same with `overlap=False`, one pair after another.

The pairs are split into `--rounds` rounds and every round times all three modes on its own
pairs, in a rotating order, so a change in the machine's background load over the run hits
all modes alike. Wall time and the process's CPU time are summed per mode.

Then `--tile-batch` is measured where it can apply: a `--tile-size` tiled pair of twice the
size predicted with 1, 2 and 4 tiles per forward pass, and `--size`² pairs sent 1, 2 and 4 at a
time through `predict_proba_batch` (when the backend has it). The command, machine, date and
load average come with the numbers. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiling_memory import load_average, machine  # noqa: E402  (bench/ is not a package)


def mosaic_pairs(folder: Path, count: int, size: int, seed: int = 0) -> list[tuple[Path, Path]]:
    """Write `count` size×size pairs; LEVIR crops tiled at random when available, else synthetic."""
    from changeseg.io.images import read_image, write_png

    rng = np.random.default_rng(seed)
    root = Path(os.environ.get("CHANGESEG_DATA", "")) / "levir_samples"
    names = sorted(p.name for p in (root / "A").glob("*.png")) if (root / "A").is_dir() else []
    crops = [(read_image(root / "A" / n)[:, :, :3], read_image(root / "B" / n)[:, :, :3]) for n in names
             if (root / "B" / n).is_file()]
    paths = []
    for index in range(count):
        if crops:
            reference = np.zeros((size, size, 3), np.uint8)
            comparison = np.zeros_like(reference)
            step = crops[0][0].shape[0]
            for y in range(0, size, step):
                for x in range(0, size, step):
                    a, b = crops[int(rng.integers(len(crops)))]
                    h, w = min(step, size - y), min(step, size - x)
                    reference[y:y + h, x:x + w] = a[:h, :w]
                    comparison[y:y + h, x:x + w] = b[:h, :w]
        else:
            reference = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            comparison = reference.copy()
            for _ in range(8):
                y, x = (int(v) for v in rng.integers(0, size - size // 8, 2))
                comparison[y:y + size // 8, x:x + size // 8] = rng.integers(0, 256, 3)
        paths.append((write_png(folder / f"ref-{index:03d}.png", reference),
                      write_png(folder / f"cmp-{index:03d}.png", comparison)))
    return paths


def timed(work: Callable[[], Any]) -> float:
    """Seconds `work()` takes."""
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def model_only(backend: Any, prepared: list[tuple[np.ndarray, np.ndarray]], tiling: Any) -> float:
    """Seconds for the model alone on every prepared pair, one after another."""
    from changeseg.inference.tiling import predict_proba_auto

    return timed(lambda: [predict_proba_auto(backend, r, c, tiling) for r, c in prepared])


def best_of(repeats: int, work: Callable[[], Any]) -> float:
    """The fastest of `repeats` timings of `work()`, in seconds."""
    return min(timed(work) for _ in range(repeats))


def tile_batch_report(backend: Any, size: int, tile_size: int, repeats: int) -> list[str]:
    """Seconds per pair with 1, 2 and 4 tiles (or pairs) per forward pass, best of `repeats`."""
    from functools import partial

    from changeseg.inference.tiling import predict_proba_tiled

    rng = np.random.default_rng(1)
    lines = []
    big = rng.integers(0, 256, (2, 2 * size, 2 * size, 3), dtype=np.uint8)
    big_prepared = [backend.prepare(image, name) for image, name in zip(big, ("reference", "comparison"))]
    for batch in (1, 2, 4):
        tiled = partial(predict_proba_tiled, backend, *big_prepared, tile_size=tile_size,
                        overlap=min(128, tile_size // 4), batch_size=batch)
        lines.append(f"tiled {2 * size}² pair, {tile_size}-pixel tiles, --tile-batch {batch}: "
                     f"{best_of(repeats, tiled):.2f} s per pair")
    batched = getattr(backend, "predict_proba_batch", None)
    if batched is not None:
        pairs = rng.integers(0, 256, (2, 4, size, size, 3), dtype=np.uint8)
        references = np.stack([backend.prepare(p, "reference") for p in pairs[0]])
        comparisons = np.stack([backend.prepare(p, "comparison") for p in pairs[1]])

        def run(batch: int) -> None:
            for i in range(0, 4, batch):
                batched(references[i:i + batch], comparisons[i:i + batch])

        for batch in (1, 2, 4):
            lines.append(f"{size}² pairs, {batch} per forward pass: "
                         f"{best_of(repeats, partial(run, batch)) / 4:.2f} s per pair")
    return lines


def round_runs(backend: Any, paths: list[tuple[Path, Path]], folder: Path, options: Any
               ) -> dict[str, Callable[[], Any]]:
    """The three modes for one round's pairs, ready to time."""
    from functools import partial

    from changeseg.inference.batch import PairJob, run_batch

    jobs = [PairJob(a.stem, a, b) for a, b in paths]
    prepared = [(backend.prepare(a, "reference"), backend.prepare(b, "comparison")) for a, b in paths]
    batch = partial(run_batch, backend, jobs, options=options, resume=False)
    return {"model only": partial(model_only, backend, prepared, options.tiling),
            "batch, overlapped": partial(batch, out_dir=folder / "overlapped"),
            "batch, sequential": partial(batch, out_dir=folder / "sequential", overlap=False)}


def main() -> None:
    """Run the benchmark and print its report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024, help="pair side in pixels (LEVIR-CD: 1024)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--backend", default="auto", help="as `changeseg detect --backend`")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--tile-size", type=int, default=1024, help="for the --tile-batch measurement")
    parser.add_argument("--repeats", type=int, default=2, help="--tile-batch measurement: best of this many")
    parser.add_argument("--rounds", type=int, default=5, help="rounds the pairs are split into (see above)")
    parser.add_argument("--skip-sequential", action="store_true", help="do not time the sequential batch run")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    from changeseg.inference.loading import BackendSpec, load_backend
    from changeseg.inference.pipeline import DetectOptions
    from changeseg.inference.tiling import TilingOptions

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {machine()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"date:    {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
    print(f"load:    {load_average()} (1, 5, 15 min) at the start")
    backend = load_backend(BackendSpec(args.model, args.backend, "cpu", args.precision))
    print(f"backend: {getattr(backend, 'backend_name', args.backend)}, precision "
          f"{getattr(backend, 'precision', '?')}, model {args.model}")
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="changeseg-batch-") as tmp:
        folder = Path(tmp)
        paths = mosaic_pairs(folder, args.pairs, args.size)
        print(f"pairs:   {args.pairs} × {args.size}² PNG "
              f"({sum(a.stat().st_size + b.stat().st_size for a, b in paths) / 2**20:.0f} MiB), in "
              f"{args.rounds} rounds; each round times every mode on its share of the pairs, in a "
              "rotating order, so a change in the machine's load hits all modes alike")
        options = DetectOptions()
        warm = [(backend.prepare(a, "reference"), backend.prepare(b, "comparison")) for a, b in paths[:2]]
        model_only(backend, warm, options.tiling)  # warm-up
        modes = ["model only", "batch, overlapped"] + ([] if args.skip_sequential else ["batch, sequential"])
        wall = dict.fromkeys(modes, 0.0)
        cpu = dict.fromkeys(modes, 0.0)
        for number, block in enumerate(np.array_split(np.arange(args.pairs), args.rounds)):
            runs = round_runs(backend, [paths[i] for i in block], folder, options)
            for mode in modes[number % len(modes):] + modes[:number % len(modes)]:
                started = time.process_time()
                wall[mode] += timed(runs[mode])
                cpu[mode] += time.process_time() - started
        n = args.pairs
        model_rate = n / wall["model only"]
        for mode in modes:
            rate = n / wall[mode]
            print(f"{mode + ':':20s} {rate:.3f} pairs/s ({1e3 / rate:.0f} ms per pair) = "
                  f"{rate / model_rate:.1%} of the model's own throughput; CPU {cpu[mode] / n * 1e3:.0f} ms "
                  f"per pair ({cpu[mode] / wall[mode]:.2f} cores busy)")
        print(f"load:    {load_average()} (1, 5, 15 min) after the batch runs")
        tile_size = TilingOptions(args.tile_size).tile_size
        for line in tile_batch_report(backend, args.size, tile_size, args.repeats):
            print(f"tile batch: {line}")
    print(f"load:    {load_average()} (1, 5, 15 min) at the end")


if __name__ == "__main__":
    main()
