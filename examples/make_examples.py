"""Regenerate the bundled example pairs from scikit-image's public-domain / CC0 photos.

Run: .venv/bin/python examples/make_examples.py  (deterministic: same files every time)
"""

from __future__ import annotations

from pathlib import Path

from changeseg.data.synthetic import SyntheticPairGenerator
from changeseg.io.images import write_png

HERE = Path(__file__).resolve().parent
# name -> (generator size, seed, pair index); chosen to show all three change types
EXAMPLES = {"coffee": (384, 7, 3)}


def main() -> None:
    """Write reference.png, comparison.png, truth.png and truth_typed.png for each example."""
    for name, (size, seed, index) in EXAMPLES.items():
        sample = SyntheticPairGenerator(size=size, seed=seed).sample(index)
        folder = HERE / name
        write_png(folder / "reference.png", sample["reference"])
        write_png(folder / "comparison.png", sample["comparison"])
        write_png(folder / "truth.png", sample["mask"] * 255)
        write_png(folder / "truth_typed.png", sample["typed_mask"])
        print(f"wrote {folder}")
    write_pair_figure(HERE / "coffee", HERE.parent / "docs" / "images" / "demo-pair.png")


def write_pair_figure(folder: Path, target: Path, gap: int = 8) -> None:
    """Reference | comparison | true change (outlined on the comparison), for the README."""
    import cv2
    import numpy as np

    from changeseg.io.images import read_image, read_mask

    reference = read_image(folder / "reference.png")
    comparison = read_image(folder / "comparison.png")
    truth = read_mask(folder / "truth.png") > 0
    outlined = comparison.copy()
    contours, _ = cv2.findContours(truth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(outlined, contours, -1, (255, 255, 0), 2)
    spacer = np.full((reference.shape[0], gap, 3), 255, np.uint8)
    write_png(target, np.concatenate([reference, spacer, comparison, spacer, outlined], axis=1))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
