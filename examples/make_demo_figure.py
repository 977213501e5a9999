"""Draw the README/model-card figures: each bundled pair and what its packaged model finds in it.

Run: .venv/bin/python examples/make_demo_figure.py [MODEL...]   (default: all three figures)

docs/images/demo.png (coffee, `default`), pcb-example.png (pcb, `pcb`) and aerial-example.png
(aerial, `aerial`): reference | comparison | overlay of the detected changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from changeseg import ChangeDetector
from changeseg.io.images import read_image, read_mask, to_uint8_rgb, write_png

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent / "docs" / "images"
# figure file -> (example folder, packaged model)
FIGURES = {"demo.png": ("coffee", "default"), "pcb-example.png": ("pcb", "pcb"),
           "aerial-example.png": ("aerial", "aerial")}


def draw(example: str, model: str, target: Path) -> str:
    """Write one figure; returns a line with the regions found and the IoU with truth.png."""
    reference = read_image(HERE / example / "reference.png")
    comparison = read_image(HERE / example / "comparison.png")
    result = ChangeDetector.from_pretrained(model).predict(reference, comparison)
    panels = [to_uint8_rgb(reference), to_uint8_rgb(comparison), result.overlay()]
    spacer = np.full((reference.shape[0], 8, 3), 255, np.uint8)
    write_png(target, np.concatenate([panels[0], spacer, panels[1], spacer, panels[2]], axis=1))
    truth = read_mask(HERE / example / "truth.png") > 0
    iou = (truth & result.mask).sum() / max((truth | result.mask).sum(), 1)
    kinds = ", ".join(sorted({r.label for r in result.regions}))
    return (f"wrote {target}: {model} on {example}: {len(result.regions)} region(s) ({kinds}), "
            f"{result.changed_fraction:.2%} changed, IoU with truth.png {iou:.1%}")


def main() -> None:
    """Draw the figures of the models named on the command line (all by default)."""
    wanted = set(sys.argv[1:]) or {model for _, model in FIGURES.values()}
    for name, (example, model) in FIGURES.items():
        if model in wanted:
            print(draw(example, model, IMAGES / name))


if __name__ == "__main__":
    main()
