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


if __name__ == "__main__":
    main()
