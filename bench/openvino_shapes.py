"""OpenVINO with the model compiled for each input shape (what `OpenVinoSession` does) against the
same model compiled once with dynamic shapes, side by side in interleaved rounds.

    OMP_WAIT_POLICY=PASSIVE python bench/openvino_shapes.py --model default --sizes 256,512,1024

The model is exported into the user cache first (as `--backend openvino` does). Prints the
command, machine, load, and per size the median latency of one pair (batch 1, the deployed
graph: normalisation, network, softmax) for each compilation, their ratio, and the largest
difference in probability between the two.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone

import numpy as np


def main() -> None:
    """Time static-shape and dynamic-shape compilations of one model in interleaved rounds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="packaged model name or checkpoint folder")
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    args = parser.parse_args()
    from changeseg.inference.loading import BackendSpec, load_backend
    from changeseg.inference.openvino_runtime import compile_onnx

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}; load {os.getloadavg()}")
    detector = load_backend(BackendSpec(args.model, "openvino", precision=args.precision))
    model_path = detector.session.model_path
    rng = np.random.default_rng(0)
    for size in (int(s) for s in args.sizes.split(",")):
        static = compile_onnx(model_path, args.precision)
        dynamic = compile_onnx(model_path, args.precision)
        dynamic.STATIC_SHAPES = 0  # every shape through the one dynamic-shape model
        feeds = {name: rng.random((1, 3, size, size), dtype=np.float32)
                 for name in ("reference", "comparison")}
        sessions = {"static": static, "dynamic": dynamic}
        outputs = {name: session.run(None, feeds)[0] for name, session in sessions.items()}  # compiles
        times: dict[str, list[float]] = {name: [] for name in sessions}
        rounds = args.rounds if size <= 512 else max(3, args.rounds // 3)
        for number in range(rounds):
            for name in (list(sessions) if number % 2 else list(sessions)[::-1]):
                started = time.perf_counter()
                sessions[name].run(None, feeds)
                times[name].append(time.perf_counter() - started)
        medians = {name: statistics.median(values) * 1e3 for name, values in times.items()}
        difference = float(np.abs(outputs["static"] - outputs["dynamic"]).max())
        print(f"{size}²: static {medians['static']:.1f} ms, dynamic {medians['dynamic']:.1f} ms, "
              f"dynamic / static {medians['dynamic'] / medians['static']:.2f}×, "
              f"max |Δ probability| {difference:.1e} ({rounds} rounds)")
    print(f"load at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
