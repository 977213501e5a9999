"""Batch detection on Ray with 1 and 2 worker nodes on this machine against the local batch run.

One run measures three configurations on the same pair list (LEVIR-CD samples from
$CHANGESEG_DATA, repeated to `--pairs` pairs, each under its own name), each in a child process
of its own so none inherits another's threads, caches or Ray connection:

- ``local``: `changeseg.inference.batch.run_batch` as `changeseg detect --pairs` runs it (reading
  and writing overlapped with the model), one process, torch using every core, and the same
  with one thread (what one Ray worker gets);
- ``ray 1 node``: a Ray head node (`LocalCluster`, 1 CPU) and `run_batch_ray` against it:
  1 worker, 1 thread;
- ``ray 2 nodes``: a head and a second node joined to it (separate ``ray start`` processes,
  1 CPU each): 2 workers, 1 thread each.

For each: the wall time from the start of the run (connecting, loading the model(s)) to the
last pair; the time to the first finished pair (start-up); the steady rate (pairs/s) from the
moment every worker has finished its first, warm-up, pair to the last pair; the mean time a
worker spends inside one of those pairs (summary.csv's `ms`); and the overhead per pair — what
a pair costs a worker beyond that time (steady seconds per pair × workers − the mean in-pair
time): scheduling, moving rows through Ray Data and writing the summary (Ray runs only; a Ray
worker processes its pairs one after the other, while the local run overlaps reading and
writing with the model, so its in-pair times overlap and do not add up; approximate: on a
shared machine the noise in both terms can be as large); and the share of mask pixels equal to
the local all-cores run's, over all pairs. It prints one table with the command, the machine,
the load average (this machine is shared) and the date.

    python bench/ray_scaling.py                     # 44 pairs, packaged default model, torch fp32
    python bench/ray_scaling.py --pairs 88 --backend auto --precision auto
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("local-1", "local", "ray-1", "ray-2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=44, help="pairs in the list (LEVIR samples repeated)")
    parser.add_argument("--model", default="default", help="packaged model name or checkpoint folder")
    parser.add_argument("--backend", default="torch", choices=["auto", "torch", "onnx", "openvino"])
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with A/ and B/ (default: $CHANGESEG_DATA/levir_samples)")
    parser.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--list", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def machine_line() -> str:
    """CPU model, usable cores, memory, OS and Python version."""
    from changeseg.hardware import cpu_model

    cpu = cpu_model()
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 2**20:.0f} GiB RAM"
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} usable cores{memory}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def write_pair_list(data: Path, count: int, folder: Path) -> Path:
    """A CSV of `count` pairs cycling through data/A and data/B (absolute paths, unique names)."""
    names = sorted(p.name for p in (data / "A").glob("*.png") if (data / "B" / p.name).is_file())
    if not names:
        raise SystemExit(f"error: no pairs in {data}/A and {data}/B (set CHANGESEG_DATA or --data)")
    rows = ["reference,comparison,name"]
    for index in range(count):
        name = names[index % len(names)]
        rows.append(f"{data / 'A' / name},{data / 'B' / name},p{index:04d}_{Path(name).stem}")
    path = folder / "pairs.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def mask_agreement(folder: Path, reference: Path) -> float:
    """The share of mask pixels, over every pair folder, equal in `folder` and `reference`."""
    from changeseg.io.images import read_image

    equal = total = 0
    for mask in sorted(reference.glob("*/mask.png")):
        ours = read_image(folder / mask.parent.name / "mask.png")
        theirs = read_image(mask)
        equal += int((ours == theirs).sum())
        total += theirs.size
    return equal / max(1, total)


def child(args: argparse.Namespace) -> None:
    """Run one configuration and print its timings as one JSON line."""
    from changeseg.inference.batch import pairs_from_csv, run_batch
    from changeseg.inference.loading import BackendSpec, describe_backend, load_backend
    from changeseg.inference.pipeline import DetectOptions

    jobs = pairs_from_csv(args.list)
    spec = BackendSpec(args.model, args.backend, "cpu", args.precision)
    arrivals: list[tuple[str, float]] = []  # (pair, when it settled), in arrival order

    def record(outcome: Any, *_: Any) -> None:
        arrivals.append((outcome.name, time.perf_counter()))

    started = time.perf_counter()
    if args.child.startswith("local"):
        import torch

        if args.child == "local-1":
            torch.set_num_threads(1)
        detector = load_backend(spec)
        threads = torch.get_num_threads()
        report = run_batch(detector, jobs, args.out, DetectOptions(), model=args.model,
                           on_pair=record)
        workers, label = 1, describe_backend(detector)
    else:
        from changeseg.distributed.batch import run_batch_ray
        from changeseg.distributed.cluster import WorkerOptions, ray_session

        with ray_session(args.address):
            report = run_batch_ray(jobs, args.out, spec, DetectOptions(), WorkerOptions(cpus=1),
                                   model=args.model, on_pair=record)
        workers, threads = report.workers, 1
        label = describe_backend(load_backend(BackendSpec(args.model, args.backend, "cpu", args.precision)))
    ended = time.perf_counter()
    with open(Path(args.out) / "summary.csv", newline="", encoding="utf-8") as handle:
        in_pair = {r["name"]: float(r["ms"]) for r in csv.DictReader(handle) if r["status"] == "done"}
    # the steady window: from the moment every worker has finished its first (warm-up) pair
    warm = arrivals[workers - 1:]
    steady_ms = [in_pair[name] for name, _ in warm[1:]]
    print(json.dumps({"config": args.child, "workers": workers, "threads": threads, "pairs": len(jobs),
                      "done": len(in_pair), "failed": len(report.failed), "wall_s": ended - started,
                      "first_s": arrivals[0][1] - started,
                      "steady_s": (warm[-1][1] - warm[0][1]) / max(1, len(warm) - 1),
                      "in_pair_ms": sum(steady_ms) / max(1, len(steady_ms)), "backend": label}))


def run_child(args: argparse.Namespace, config: str, pair_list: Path, out: Path, env: dict | None = None,
              address: str | None = None) -> dict:
    """Run `child` for one configuration in a fresh Python process; returns its JSON line."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", config, "--list", str(pair_list),
               "--out", str(out), "--model", args.model, "--backend", args.backend,
               "--precision", args.precision]
    if address:
        command += ["--address", address]
    result = subprocess.run(command, capture_output=True, text=True, env=env or dict(os.environ),
                            timeout=3600)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"error: the {config} run failed (exit {result.returncode}):\n"
                         f"{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    """Run the three configurations and print the table."""
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    from changeseg.distributed.testing import LocalCluster

    data_root = Path(os.environ.get("CHANGESEG_DATA", ROOT.parent / "shared" / "data"))
    data = args.data or data_root / "levir_samples"
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    results = []
    try:
        pair_list = write_pair_list(data.resolve(), args.pairs, work)
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        for config, threads in (("local-1", 1), ("local", cores)):
            results.append(run_child(args, config, pair_list, work / config,
                                     {**env, "OMP_NUM_THREADS": str(threads)}))
        for nodes in (1, 2):
            with LocalCluster(nodes=nodes, cpus_per_node=1) as cluster:
                results.append(run_child(args, f"ray-{nodes}", pair_list, work / f"ray-{nodes}",
                                         {**env, **cluster.env}, cluster.address))
        for result in results:
            result["agreement"] = mask_agreement(work / result["config"], work / "local")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    import ray
    import torch

    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}")
    print(f"machine: {machine_line()}")
    print(f"load average: {', '.join(f'{v:.1f}' for v in load_before)} before, "
          f"{', '.join(f'{v:.1f}' for v in load_after)} after (a shared machine)")
    print(f"date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; ray {ray.__version__}, "
          f"torch {torch.__version__}")
    print(f"pairs: {args.pairs} LEVIR-CD 256×256 samples from {data} (repeated); model {args.model}, "
          f"{results[0]['backend']}; every pair done: "
          f"{all(r['done'] == r['pairs'] for r in results)}\n")
    header = ("| run | workers × threads | wall s | start-up s (to 1st pair) | steady pairs/s | "
              "end-to-end pairs/s | in-pair ms | overhead ms/pair | masks = local |")
    print(header)
    print("|" + "---|" * 9)
    names = {"local-1": "local batch, 1 thread", "local": "local batch, all cores", "ray-1": "Ray, 1 node",
             "ray-2": "Ray, 2 nodes"}
    for r in results:
        steady_s = r["steady_s"]
        overhead = "—" if r["config"].startswith("local") else \
            f"{steady_s * 1e3 * r['workers'] - r['in_pair_ms']:.0f}"
        print(f"| {names[r['config']]} | {r['workers']} × {r['threads']} | {r['wall_s']:.1f} | "
              f"{r['first_s']:.1f} | {1 / steady_s:.2f} | {r['pairs'] / r['wall_s']:.2f} | "
              f"{r['in_pair_ms']:.0f} | {overhead} | {r['agreement']:.4%} |")


if __name__ == "__main__":
    main()
