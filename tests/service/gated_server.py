"""`changeseg serve` (the real command, under uvicorn) with a gated test double instead of a model.

    python -m tests.service.gated_server GATE_FILE [changeseg serve options]

Every prediction waits until GATE_FILE exists (at most 60 s) and then answers like
`DifferencePredictor`, so a test can hold a request in flight for as long as it needs (to send
SIGTERM during it, say) and release it by creating the file. Loading takes no time and imports
no torch, so the server is up in about a second.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from changeseg.cli import serve
from changeseg.inference.result import ChangeResult
from tests.service.conftest import DifferencePredictor

GATE_WAIT_S = 60.0


class GatedPredictor(DifferencePredictor):
    """A `DifferencePredictor` that waits for `gate` to exist before each prediction."""

    name = "gated-difference"

    def __init__(self, gate: Path) -> None:
        self.gate = gate

    def predict(self, reference: np.ndarray, comparison: np.ndarray, threshold: float | None = None,
                min_area: int | None = None, resize: bool = False) -> ChangeResult:
        """Wait for the gate file (at most GATE_WAIT_S), then predict."""
        deadline = time.monotonic() + GATE_WAIT_S
        while not self.gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return super().predict(reference, comparison, threshold, min_area, resize)


def main(argv: list[str]) -> int:
    """Run `changeseg serve argv[1:]` serving a GatedPredictor on gate file argv[0]."""
    predictor = GatedPredictor(Path(argv[0]))
    serve.load_predictor = lambda *args, **kwargs: predictor
    return serve.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
