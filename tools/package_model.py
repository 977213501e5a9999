"""Package a trained run's best model inside changeseg (src/changeseg/weights/NAME).

    .venv/bin/python tools/package_model.py runs/default/best default --threshold 0.8

The weights are stored as float16 (half the size); the script checks that the stored model's
masks agree with the float32 original on a seeded pair before it writes anything. The
threshold should come from the model's *validation* split (e.g. the best-F1 threshold that
`changeseg evaluate --names model-val` reports), never from a test split.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from changeseg.inference.predictor import ChangeDetector

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "changeseg" / "weights"


def seeded_pair(seed: int = 0, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic pair with real changes, for the float16 check."""
    from changeseg.data.synthetic import SyntheticPairGenerator

    sample = SyntheticPairGenerator(size=size, seed=seed).sample(1)
    return sample["reference"], sample["comparison"]


def main() -> None:
    """Parse arguments, set the threshold, store as float16 and verify against float32."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_model", help="a trained model folder, e.g. runs/default/best")
    parser.add_argument("name", help="name to ship it under, e.g. default")
    parser.add_argument("--threshold", type=float, default=None,
                        help="decision threshold chosen on the validation split")
    parser.add_argument("--min-area", type=int, default=None,
                        help="default minimum region area (pixels) chosen on the validation split")
    parser.add_argument("--box-grow", type=float, default=None,
                        help="scale factor of each region's box about its centre, for a model trained "
                             "on shrunk boxes (1 / (1 - 2 × the deeppcb reader's shrink))")
    parser.add_argument("--input-scaling", default=None,
                        help="how the model scales non-8-bit input (changeseg.io.scaling spec, e.g. "
                             "percentile:0,99.9 for models trained on OSCD's PNG renderings)")
    args = parser.parse_args()

    detector = ChangeDetector.from_pretrained(args.run_model, precision="fp32")
    if args.threshold is not None:
        detector.config.threshold = args.threshold
    if args.min_area is not None:
        detector.config.metadata["min_area"] = args.min_area
    if args.box_grow is not None:
        detector.config.metadata["box_grow"] = args.box_grow
    if args.input_scaling is not None:
        from changeseg.io.scaling import parse_scaling

        detector.config.metadata["input_scaling"] = parse_scaling(args.input_scaling).spec()
    detector.config.metadata["packaged_from"] = str(args.run_model)
    with tempfile.TemporaryDirectory() as tmp:
        staged = detector.save_pretrained(Path(tmp) / args.name, storage_dtype="float16")
        half = ChangeDetector.from_pretrained(staged, precision="fp32")
        pair = seeded_pair()
        full_mask = detector.predict(*pair).mask
        half_mask = half.predict(*pair).mask
        agreement = float((full_mask == half_mask).mean())
        if agreement < 0.999:
            raise SystemExit(f"float16 storage changes the mask on {1 - agreement:.3%} of pixels")
        target = WEIGHTS / args.name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(staged, target)
    size_mb = sum(p.stat().st_size for p in target.iterdir()) / 1e6
    print(f"packaged {args.run_model} as {args.name!r} in {target} ({size_mb:.1f} MB, float16; "
          f"mask agreement with float32 {agreement:.4%}, threshold {detector.config.threshold}, "
          f"min_area {detector.config.metadata.get('min_area', 0)}); its int8 recipe, if any, went with "
          f"the old weights: python tools/quantize_model.py {args.name} --package")


if __name__ == "__main__":
    main()
