"""Regenerate the bundled example pairs.

* ``coffee/``: the synthetic pair generator cutting and pasting scikit-image's public-domain /
  CC0 photos.
* ``pcb/`` and ``aerial/``: drawn from scratch by ``examples/procedural.py`` (no photo or data
  set content at all).

Run: .venv/bin/python examples/make_examples.py  (deterministic: same files every time)
"""

from __future__ import annotations

from pathlib import Path

from procedural import format_boxes, make_aerial_pair, make_pcb_pair

from changeseg.data.synthetic import SyntheticPairGenerator
from changeseg.io.images import atomic_write, write_png

HERE = Path(__file__).resolve().parent
# name -> (generator size, seed, pair index); chosen to show all three change types
EXAMPLES = {"coffee": (384, 7, 3)}
PCB_SEED = 4  # examples/pcb/: procedural DeepPCB-like board
AERIAL_SEED = 5  # examples/aerial/: procedural village with new and demolished buildings


def write_synthetic(folder: Path, size: int, seed: int, index: int) -> None:
    """Write reference.png, comparison.png, truth.png and truth_typed.png of one synthetic pair."""
    # the nuisances added later (season shift, corner homography) stay off so the bundled pair
    # is the one every model card and test was measured on
    sample = SyntheticPairGenerator(size=size, seed=seed, p_season=0.0,
                                    max_corner_shift=0.0).sample(index)
    write_png(folder / "reference.png", sample["reference"])
    write_png(folder / "comparison.png", sample["comparison"])
    write_png(folder / "truth.png", sample["mask"] * 255)
    write_png(folder / "truth_typed.png", sample["typed_mask"])


def write_pcb(folder: Path, seed: int = PCB_SEED) -> None:
    """Write the procedural board: reference.png, comparison.png, truth.png and boxes.txt."""
    pair = make_pcb_pair(seed)
    write_png(folder / "reference.png", pair.reference)
    write_png(folder / "comparison.png", pair.comparison)
    write_png(folder / "truth.png", pair.truth)
    text = format_boxes(pair.boxes)
    atomic_write(folder / "boxes.txt", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_aerial(folder: Path, seed: int = AERIAL_SEED) -> None:
    """Write the procedural aerial scene: reference.png, comparison.png and truth.png."""
    pair = make_aerial_pair(seed)
    write_png(folder / "reference.png", pair.reference)
    write_png(folder / "comparison.png", pair.comparison)
    write_png(folder / "truth.png", pair.truth)


def main() -> None:
    """Rewrite every example folder next to this script."""
    for name, (size, seed, index) in EXAMPLES.items():
        write_synthetic(HERE / name, size, seed, index)
        print(f"wrote {HERE / name}")
    write_pcb(HERE / "pcb")
    print(f"wrote {HERE / 'pcb'}")
    write_aerial(HERE / "aerial")
    print(f"wrote {HERE / 'aerial'}")


if __name__ == "__main__":
    main()
