"""Would depthwise-separable MTF and MSF-smoothing convs make `default` faster? GMACs and OpenVINO latency.

After the MSF fusion (bench/fusion_cost.py), the largest full 3×3 convs of the `default`
architecture are the MTF branch convs (C→C at every level; 320 channels at stride 32) and the
MSF smoothing convs (F→F, 128² at 512²). This builds the `default` architecture (its packaged
config.json, random weights, nothing trained), replaces those convs by a depthwise 3×3 + a
pointwise 1×1 in several combinations, exports each variant to ONNX and times it on OpenVINO
(bf16 where the CPU has it, static shape), the variants interleaved round by round so they share
the machine's load. Accuracy is not measured: a variant that is not faster needs no training run.

    OMP_WAIT_POLICY=PASSIVE python bench/separable_convs.py --size 512 --rounds 15
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SEED = 0
# label -> (MTF levels made separable, smoothing convs made separable)
VARIANTS: dict[str, tuple[tuple[int, ...], bool]] = {
    "as packaged": ((), False),
    "MTF level 4 separable": ((3,), False),
    "MTF all levels separable": ((0, 1, 2, 3), False),
    "MSF smoothing separable": ((), True),
    "MTF level 4 + smoothing separable": ((3,), True),
    "MTF all levels + smoothing separable": ((0, 1, 2, 3), True),
}


def separable(conv: Any) -> Any:
    """A depthwise 3×3 + pointwise 1×1 pair with `conv`'s channels (random weights)."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(conv.in_channels, conv.in_channels, 3, padding=1, groups=conv.in_channels),
                         nn.Conv2d(conv.in_channels, conv.out_channels, 1))


def build_variant(config: dict[str, Any], mtf_levels: tuple[int, ...], smoothing: bool) -> Any:
    """The `default` architecture with the named convs replaced by separable ones."""
    import torch

    from changeseg.models.model import ChangeSegModel, ModelConfig

    torch.manual_seed(SEED)
    model = ChangeSegModel(ModelConfig.from_dict(config)).eval()
    for level in mtf_levels:
        convs = model.merge[level].convs
        for letter in list(convs.keys()):
            convs[letter] = separable(convs[letter])
    if smoothing:
        for index, conv in enumerate(model.pyramid.smooth):
            model.pyramid.smooth[index] = separable(conv)
    return model


def main(argv: list[str] | None = None) -> int:
    """Build, export and time every variant; print a Markdown table. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="square image side")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np
    import torch
    from fusion_cost import timed  # bench/ is this script's own folder on sys.path

    from changeseg.hardware import cpu_supports_bf16
    from changeseg.inference.export import export_onnx
    from changeseg.inference.onnx_runtime import physical_cores
    from changeseg.inference.openvino_runtime import compile_onnx
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.io.checkpoints import CheckpointConfig, packaged_models, read_config
    from changeseg.models.model import count_macs

    threads = physical_cores()
    torch.set_num_threads(threads)
    precision = "bf16" if cpu_supports_bf16() else "fp32"
    config = read_config(packaged_models()["default"]).model
    shape = (1, 3, args.size, args.size)
    rng = np.random.default_rng(SEED)
    feeds = {name: rng.random(shape, dtype=np.float32) for name in ("reference", "comparison")}
    load, started = os.getloadavg(), time.perf_counter()
    gmacs: dict[str, float] = {}
    runners: dict[str, Callable[[], Any]] = {}
    with tempfile.TemporaryDirectory(prefix="changeseg-separable-") as scratch:
        for number, (label, (levels, smoothing)) in enumerate(VARIANTS.items()):
            model = build_variant(config, levels, smoothing)
            gmacs[label] = count_macs(model, shape, shape) / 1e9
            folder = Path(scratch) / f"variant{number}"
            detector = ChangeDetector.from_model(model, CheckpointConfig(model=config), precision="fp32")
            export_onnx(detector, folder)
            session = compile_onnx(folder / "model.onnx", precision, threads)
            runners[label] = lambda session=session: session.run(None, feeds)
            print(f"{label}: {gmacs[label]:.2f} GMAC", file=sys.stderr, flush=True)
        medians = timed(runners, args.rounds)
    command = " ".join(["python bench/separable_convs.py", *sys.argv[1:]])
    minutes = (time.perf_counter() - started) / 60
    now = datetime.now(timezone.utc)
    print(f"Generated by `{command}` on {now:%Y-%m-%d %H:%M} UTC in {minutes:.1f} min; "
          f"{threads} thread(s); load average at the start {', '.join(f'{v:.1f}' for v in load)}, at the end "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}. Random weights; {args.size}² pairs; "
          f"OpenVINO {precision}.\n")
    print(f"| variant | GMAC/pair {args.size}² | OpenVINO {precision} (ms) | vs as packaged |")
    print("|---|---|---|---|")
    reference = medians["as packaged"]
    for label, ms in medians.items():
        print(f"| {label} | {gmacs[label]:.2f} | {ms:.1f} | {reference / ms:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
