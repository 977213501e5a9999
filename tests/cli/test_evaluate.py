"""`changeseg evaluate` in-process on real data, and its one-line errors."""

from __future__ import annotations

import csv
import json

from changeseg.cli import evaluate
from tests.conftest import require_real_data


def test_writes_a_report_on_real_pairs(tmp_path, tiny_checkpoint, capsys):
    root = require_real_data("levir_samples")
    out = tmp_path / "report"
    code = evaluate.main(["-m", str(tiny_checkpoint), "-d", f"folder:{root}", "--split", "test",
                          "--limit", "3", "-o", str(out), "--worst", "2", "--precision", "fp32"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 3
    assert {"c3po", "global", "sweep"} <= set(metrics["protocols"])
    assert metrics["metadata"]["split"] == "test"
    with open(out / "per_image.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 3
    assert len(list((out / "worst").iterdir())) == 2
    assert "`c3po`" in captured.out


def test_bad_inputs_give_one_line(tmp_path, tiny_checkpoint, capsys):
    root = require_real_data("levir_samples")
    cases = [
        (["-d", "nosuchformat:/x"], "unknown"),
        (["-d", f"folder:{tmp_path}"], "error:"),
        (["-d", f"folder:{root}", "--names", "model-val"], "records no validation names"),
        (["-d", f"folder:{root}", "--data-option", "nonsense"], "KEY=VALUE"),
    ]
    for args, message in cases:
        code = evaluate.main(["-m", str(tiny_checkpoint), "-o", str(tmp_path / "o"), *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and message in err[0], (args, err)
    assert not (tmp_path / "o").exists()
