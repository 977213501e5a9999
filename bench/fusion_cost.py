"""The cost of cheaper MSF fusions: parameters, GMACs and latency, with random weights (no training).

The MSF fusion conv (3×3 over levels·F channels at stride 4, then BN + ReLU) is the largest
single cost of the `default` architecture. This measures the variants the model offers
(`msf_fuse`: conv3x3 — the paper's and every shipped model's —, conv1x1, dwsep) at F = 128,
96 and 64, on the `default` model's own architecture (its config.json, only `msf_fuse` and
`fpn_channels` changed), for:

- parameters, GMAC per pair (batch 1) and the fusion conv's share of them;
- latency per pair at `--size` (default 512²) on PyTorch bf16 (channels_last + autocast) and
  OpenVINO (bf16 where the CPU has it; the variant exported to ONNX, parity-checked), median
  of `--repeats` runs after one warm-up, the variants timed in interleaved rounds so they
  share the machine's load.

Accuracy is not measured here: each variant would need its own training run. Usage:

    python bench/fusion_cost.py                  # prints a Markdown table
    python bench/fusion_cost.py --size 256 --repeats 3 --no-openvino
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

FUSES = ("conv3x3", "conv1x1", "dwsep")
WIDTHS = (128, 96, 64)
SEED = 0


def fusion_macs(model: Any, size: int) -> float:
    """MACs of the MSF fusion conv(s) alone at `size`² (stride 4, levels·F input channels)."""
    from torch import nn

    side = -(-size // 32) * 32 // 4  # the network pads to a multiple of 32; fusion at stride 4
    total = 0.0
    for module in model.pyramid.fuse.modules():
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += side * side * module.out_channels * (module.in_channels // module.groups) * k
    return total


def variants(base: dict[str, Any], fuses: list[str], widths: list[int]) -> dict[str, dict[str, Any]]:
    """Model configs by label, e.g. "conv3x3 F=128"."""
    return {f"{fuse} F={width}": {**base, "msf_fuse": fuse, "fpn_channels": width}
            for fuse in fuses for width in widths}


def timed(runners: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median ms per callable, timed in interleaved rounds after one warm-up round."""
    for run in runners.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="square image side for MACs and latency")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant and path")
    parser.add_argument("--threads", type=int, default=0, help="threads (0: physical cores)")
    parser.add_argument("--fuses", default=",".join(FUSES))
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    parser.add_argument("--no-openvino", dest="openvino", action="store_false")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np
    import torch

    from changeseg.hardware import cpu_supports_bf16
    from changeseg.inference.export import ProbabilityGraph, export_onnx
    from changeseg.inference.onnx_runtime import physical_cores
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.io.checkpoints import CheckpointConfig, packaged_models, read_config
    from changeseg.models.model import ChangeSegModel, ModelConfig, count_macs, count_parameters

    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    base = read_config(packaged_models()["default"]).model
    fuses = [f for f in args.fuses.split(",") if f]
    configs = variants(base, fuses, [int(w) for w in args.widths.split(",") if w])
    size = args.size
    rng = np.random.default_rng(SEED)
    pair = [rng.random((1, 3, size, size), dtype=np.float32) for _ in range(2)]
    rows: dict[str, dict[str, Any]] = {}
    torch_runs: dict[str, Callable[[], Any]] = {}
    ov_runs: dict[str, Callable[[], Any]] = {}
    bf16 = cpu_supports_bf16()
    started = time.perf_counter()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="changeseg-fusion-") as scratch:
        for label, config in configs.items():
            torch.manual_seed(SEED)
            model = ChangeSegModel(ModelConfig.from_dict(config)).eval()
            macs = count_macs(model, (1, 3, size, size), (1, 3, size, size))
            rows[label] = {"params": count_parameters(model), "gmac": macs / 1e9,
                           "fuse_share": fusion_macs(model, size) / macs}
            graph = ProbabilityGraph(model, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()
            if bf16:
                graph = graph.to(memory_format=torch.channels_last)
            tensors = [torch.from_numpy(p).contiguous(memory_format=torch.channels_last) for p in pair]

            def run_torch(graph: Any = graph, tensors: list[Any] = tensors) -> Any:
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    return graph(*tensors)

            torch_runs[label] = run_torch
            if args.openvino:
                from changeseg.inference.openvino_runtime import compile_onnx

                folder = Path(scratch) / label.replace(" ", "_").replace("=", "")
                detector = ChangeDetector.from_model(model, CheckpointConfig(model=config), precision="fp32")
                export_onnx(detector, folder)
                session = compile_onnx(folder / "model.onnx", "bf16" if bf16 else "fp32", threads)
                feeds = {"reference": pair[0], "comparison": pair[1]}
                ov_runs[label] = lambda session=session, feeds=feeds: session.run(None, feeds)
            print(f"{label}: {rows[label]}", file=sys.stderr, flush=True)
        for label, ms in timed(torch_runs, args.repeats).items():
            rows[label]["torch_ms"] = ms
        if ov_runs:
            for label, ms in timed(ov_runs, args.repeats).items():
                rows[label]["openvino_ms"] = ms
    precision = "bf16" if bf16 else "fp32"
    reference = rows[next(iter(rows))]
    print(f"Generated by `python bench/fusion_cost.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}` "
          f"on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in {(time.perf_counter() - started) / 60:.1f} "
          f"min; {threads} thread(s); load average at the start {', '.join(f'{v:.1f}' for v in load)}, "
          f"at the end {', '.join(f'{v:.1f}' for v in os.getloadavg())}. Random weights; {size}² pairs.\n")
    header = ["variant", "parameters (M)", f"GMAC/pair {size}²", "fusion share of MACs",
              f"PyTorch {precision} (ms)", f"OpenVINO {precision} (ms)", "vs conv3x3 F=128 (OpenVINO)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for label, row in rows.items():
        ov = row.get("openvino_ms")
        ratio = f"{reference['openvino_ms'] / ov:.2f}×" if ov and reference.get("openvino_ms") else "—"
        print(f"| {label} | {row['params'] / 1e6:.2f} | {row['gmac']:.1f} | {100 * row['fuse_share']:.0f}% | "
              f"{row['torch_ms']:.0f} | {f'{ov:.0f}' if ov else '—'} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
