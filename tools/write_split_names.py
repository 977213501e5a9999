"""Write one name list per source from a run's recorded split, for `changeseg evaluate --names`.

    .venv/bin/python tools/write_split_names.py runs/default
    # → runs/default/val/<format>-<folder>.txt (held-out pairs)
    #   runs/default/train/<format>-<folder>.txt (training pairs, where the run recorded them)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    """Read RUN/summary.json and write RUN/val/ and RUN/train/<format>-<folder>.txt per source."""
    run = Path(sys.argv[1])
    summary = json.loads((run / "summary.json").read_text())
    for source in summary["split"]["sources"]:
        fmt, _, path = source["spec"].partition(":")
        for part in ("val", "train"):
            names = source.get(f"{part}_names")
            if not names:  # none held out / trained on, or not recorded (synthetic, older runs)
                continue
            target = run / part / f"{fmt}-{Path(path).name if path else fmt}.txt"
            target.parent.mkdir(exist_ok=True)
            target.write_text("\n".join(names) + "\n")
            print(f"{target}: {len(names)} names")


if __name__ == "__main__":
    main()
