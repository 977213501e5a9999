"""onnxruntime's intra-op thread spinning, on and off, side by side in one process.

After a run, onnxruntime's worker threads spin (busy-wait) for a while before they sleep, so the
next run starts without a wake-up delay. On a shared or busy CPU that spinning burns cycles other
work could use. This bench times the packaged model's network on two onnxruntime sessions of the
same exported graph, one with `session.intra_op.allow_spinning` = "1" (onnxruntime's default)
and one with "0", in interleaved rounds, and reports per call the median wall time and the
process CPU time (what the call cost the machine, spinning included), for back-to-back calls
and for calls with a pause between them (a service answering requests, a batch run writing files).

    OMP_WAIT_POLICY=PASSIVE python bench/onnx_spinning.py --model default --size 512 --rounds 15
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


def timed_call(session, feeds: dict[str, np.ndarray], pause_s: float) -> tuple[float, float]:
    """Wall and process-CPU seconds of one session.run, counting the CPU spent during `pause_s`
    afterwards (where spinning threads keep burning it)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    session.run(None, feeds)
    wall = time.perf_counter() - wall0
    if pause_s:
        time.sleep(pause_s)
    return wall, time.process_time() - cpu0


def main() -> None:
    """Time the two sessions in interleaved rounds and print medians per setting."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--pause", type=float, default=0.1,
                        help="seconds of idle time after each call in the 'with pauses' mode")
    args = parser.parse_args()

    import onnxruntime as ort

    from changeseg.hardware import cpu_model
    from changeseg.inference.export_cache import cached_onnx
    from changeseg.inference.onnx_runtime import resolve_onnx_path, session_options

    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {cpu_model() or platform.machine()}, {os.cpu_count()} CPUs; onnxruntime "
          f"{ort.__version__}; {datetime.now(timezone.utc).isoformat(timespec='seconds')}; "
          f"load {os.getloadavg()}")
    model_path, _ = resolve_onnx_path(cached_onnx(args.model))
    sessions = {}
    for spin in ("1", "0"):
        options = session_options(spinning=spin == "1")
        sessions[spin] = ort.InferenceSession(str(model_path), sess_options=options,
                                              providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal((1, 3, args.size, args.size)).astype(np.float32)
             for name in ("reference", "comparison")}
    for session in sessions.values():
        session.run(None, feeds)  # warm-up
    results: dict[tuple[str, float], list[tuple[float, float]]] = {}
    for index in range(args.rounds):
        order = list(sessions) if index % 2 == 0 else list(reversed(sessions))
        for pause in (0.0, args.pause):
            for spin in order:
                for _ in range(3):
                    results.setdefault((spin, pause), []).append(timed_call(sessions[spin], feeds, pause))
    print(f"{args.model} at {args.size}², {args.rounds} rounds × 3 calls per setting "
          f"(median wall ms / median process CPU ms per call):")
    for pause in (0.0, args.pause):
        mode = "back to back" if pause == 0 else f"{pause * 1000:.0f} ms pause after each call"
        cells = []
        for spin in sessions:
            walls, cpus = zip(*results[(spin, pause)])
            state = "on" if spin == "1" else "off"
            cells.append(f"spinning {state}: {statistics.median(walls) * 1000:.1f} ms wall, "
                         f"{statistics.median(cpus) * 1000:.1f} ms CPU")
        print(f"  {mode}: " + "; ".join(cells))
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
