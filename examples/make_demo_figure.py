"""Draw docs/images/demo.png: the demo pair and what the packaged `default` model finds in it.

Run: .venv/bin/python examples/make_demo_figure.py   (the same job as `make demo`, as one picture)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from changeseg import ChangeDetector
from changeseg.io.images import read_image, read_mask, write_png

HERE = Path(__file__).resolve().parent
TARGET = HERE.parent / "docs" / "images" / "demo.png"


def main() -> None:
    """Reference | comparison | overlay of the detected changes, side by side."""
    reference = read_image(HERE / "coffee" / "reference.png")
    comparison = read_image(HERE / "coffee" / "comparison.png")
    result = ChangeDetector.from_pretrained("default").predict(reference, comparison)
    spacer = np.full((reference.shape[0], 8, 3), 255, np.uint8)
    write_png(TARGET, np.concatenate([reference, spacer, comparison, spacer, result.overlay()], axis=1))
    truth = read_mask(HERE / "coffee" / "truth.png") > 0
    iou = (truth & result.mask).sum() / max((truth | result.mask).sum(), 1)
    print(f"wrote {TARGET}: {len(result.regions)} region(s), {result.changed_fraction:.2%} changed, "
          f"IoU with truth.png {iou:.1%}")


if __name__ == "__main__":
    main()
