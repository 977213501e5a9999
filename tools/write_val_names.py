"""Write one name list per source from a run's validation split, for `changeseg evaluate --names`.

    .venv/bin/python tools/write_val_names.py runs/default      # → runs/default/val/<format>-<folder>.txt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    """Read RUN/summary.json and write RUN/val/<format>-<folder>.txt for every source."""
    run = Path(sys.argv[1])
    summary = json.loads((run / "summary.json").read_text())
    out = run / "val"
    out.mkdir(exist_ok=True)
    for source in summary["split"]["sources"]:
        names = source.get("val_names")
        if not names:
            continue
        spec = source["spec"]
        fmt, _, path = spec.partition(":")
        target = out / f"{fmt}-{Path(path).name if path else fmt}.txt"
        target.write_text("\n".join(names) + "\n")
        print(f"{target}: {len(names)} names")


if __name__ == "__main__":
    main()
