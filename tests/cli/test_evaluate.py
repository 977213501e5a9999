"""`changeseg evaluate` in-process on real data, and its one-line errors."""

from __future__ import annotations

import csv
import json

from changeseg.cli import evaluate
from tests.conftest import require_real_data, splitting_copy


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


def test_scales_and_tiles_score_what_detect_would_write(tmp_path, tiny_checkpoint, capsys):
    root = require_real_data("surveillance", "sbi2015")
    common = ["-m", str(tiny_checkpoint), "-d", f"sbi2015:{root}", "--data-option", "scenes=[CaVignal]",
              "--data-option", "pairs_per_scene=2", "--worst", "0", "--precision", "fp32"]
    scores = {}
    for name, extra in {"plain": [], "views": ["--scales", "1,2", "--tile-size", "128",
                                               "--tile-overlap", "32", "--tta-views", "dihedral"]}.items():
        code = evaluate.main([*common, *extra, "-o", str(tmp_path / name)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        scores[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    metadata = scores["views"]["metadata"]
    assert metadata["scales"] == [1.0, 2.0] and metadata["tile_size"] == 128
    assert metadata["tta"] == "dihedral" and scores["plain"]["metadata"]["tta"] is None
    assert metadata["tile_overlap"] == 32
    assert scores["plain"]["metadata"]["scales"] == [1.0] and scores["plain"]["metadata"]["tile_size"] == 0
    assert scores["plain"]["images"] == scores["views"]["images"] == 2
    sweeps = [scores[name]["protocols"]["sweep"] for name in ("plain", "views")]
    assert sweeps[0] != sweeps[1]  # other probabilities, so other scores at some threshold
    code = evaluate.main([*common, "--scales", "x", "-o", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--scales: 'x' is not a number" in err[0]
    assert not (tmp_path / "bad").exists()


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


def test_typed_model_is_scored_as_change_on_binary_labels_and_per_type_on_typed(tmp_path, capsys):
    import torch

    from changeseg.data.synthetic import write_synthetic_set
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.io.checkpoints import CheckpointConfig
    from changeseg.models import build_model

    torch.manual_seed(0)
    model = build_model(fpn_channels=16, num_classes=4).eval()
    typed = ["unchanged", "appear", "disappear", "exchange"]
    folder = tmp_path / "typed-model"
    ChangeDetector.from_model(model, CheckpointConfig(model=model.config.to_dict(), class_names=typed),
                              precision="fp32").save_pretrained(folder)
    pairs = write_synthetic_set(tmp_path / "synth", 2, size=64, seed=0)
    reports = {}
    for kind, options in {"binary": [], "typed": ["--data-option", "label_dir=label_typed",
                                                  "--data-option", f"class_names={typed}"]}.items():
        out = tmp_path / kind
        code = evaluate.main(["-m", str(folder), "-d", f"folder:{pairs}", *options, "-o", str(out),
                              "--worst", "0", "--precision", "fp32"])
        assert code == 0, capsys.readouterr().err
        reports[kind] = json.loads((out / "metrics.json").read_text())
    assert reports["binary"]["num_classes"] == 2
    assert reports["binary"]["metadata"]["scored_as"] == "binary change"
    assert reports["typed"]["num_classes"] == 4
    assert set(reports["typed"]["protocols"]["global"]["per_class_iou"]) == set(typed)
    # the change scores agree: typed scoring only adds the per-type break-down
    assert reports["typed"]["f1_at_threshold"] == reports["binary"]["f1_at_threshold"]


def test_model_val_takes_the_held_out_pairs_of_this_data_set(tmp_path, capsys):
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.io.checkpoints import packaged_models

    root = require_real_data("levir_samples")
    metadata = ChangeDetector.from_pretrained("default").config.metadata
    (levir,) = [s for s in metadata["training"]["data"]["sources"] if "levir_samples" in s["spec"]]
    out = tmp_path / "levir"
    code = evaluate.main(["-m", "default", "-d", f"folder:{root}", "--names", "model-val",
                          "-o", str(out), "--worst", "0", "--protocols", "global"])
    assert code == 0, capsys.readouterr().err
    with open(out / "per_image.csv") as handle:
        assert [row["name"] for row in csv.DictReader(handle)] == levir["val_names"]
    capsys.readouterr()
    capsys.readouterr()
    # another model's held-out pairs: the same names through model-val:FOLDER
    other = tmp_path / "other"
    assert evaluate.main(["-m", "default", "-d", f"folder:{root}", "--names",
                          f"model-val:{packaged_models()['default']}",
                          "-o", str(other), "--worst", "0", "--protocols", "global"]) == 0
    assert json.loads((other / "metrics.json").read_text())["images"] == len(levir["val_names"])
    assert evaluate.main(["-m", "default", "-d", f"folder:{root}", "--names", "model-val:nosuch",
                          "-o", str(tmp_path / "y")]) == 1
    assert "no model folder or packaged model 'nosuch'" in capsys.readouterr().err
    tsunami = require_real_data("tsunami")  # kept out of the default model's training
    assert evaluate.main(["-m", "default", "-d", f"pcd:{tsunami}", "--names", "model-val",
                          "-o", str(tmp_path / "x")]) == 1
    assert "was not trained on pcd:" in capsys.readouterr().err


def test_pairs_the_model_trained_on_are_named_on_the_terminal_and_in_the_report(tmp_path, capsys):
    from changeseg.data.datasets import open_dataset
    from changeseg.inference.predictor import ChangeDetector

    root = require_real_data("levir_samples")
    metadata = ChangeDetector.from_pretrained("default").config.metadata
    (levir,) = [s for s in metadata["training"]["data"]["sources"] if "levir_samples" in s["spec"]]
    first = open_dataset(f"folder:{root}").names[:3]
    if "train_names" in levir:  # recorded by the run that trained it
        trained = [n for n in first if n in levir["train_names"]]
    else:  # derived: every pair of the source that is not a validation pair
        trained = [n for n in first if n not in levir["val_names"]]
    assert trained  # the first pairs include training pairs of `default`
    out = tmp_path / "seen"
    assert evaluate.main(["-m", "default", "-d", f"folder:{root}", "--limit", "3", "-o", str(out),
                          "--worst", "0", "--protocols", "global"]) == 0
    err = capsys.readouterr().err
    assert f"warning: the model TRAINED ON {len(trained)} of the 3 evaluated pairs" in err
    report = json.loads((out / "metrics.json").read_text())
    assert report["training_overlap"]["trained_on"] == trained
    assert report["training_overlap"]["derived"] == ([] if "train_names" in levir else [levir["spec"]])
    assert "## Training overlap" in (out / "metrics.md").read_text()
    # its held-out pairs: no warning
    assert evaluate.main(["-m", "default", "-d", f"folder:{root}", "--names", "model-val",
                          "-o", str(tmp_path / "held-out"), "--worst", "0", "--protocols", "global"]) == 0
    assert "TRAINED ON" not in capsys.readouterr().err


def test_boxes_take_the_models_split_and_grow_settings_unless_given(tmp_path, tiny_checkpoint, capsys):
    from changeseg.data.synthetic import write_synthetic_set

    pairs = write_synthetic_set(tmp_path / "synth", 2, size=64, seed=0)
    model = splitting_copy(tiny_checkpoint, tmp_path / "splitting-model")
    base = ["-d", f"folder:{pairs}", "--protocols", "boxes", "--worst", "0", "--precision", "fp32"]
    config = json.loads((model / "config.json").read_text())
    config["metadata"]["box_grow"] = 1.25  # a model trained on shrunk boxes grows them back
    (model / "config.json").write_text(json.dumps(config))
    cases = [(model, [], (1.0, 0.95, 1.25)),
             (model, ["--box-option", "split_depth=0", "--box-option", "grow=1"], (0.0, 0.95, 1.0)),
             (tiny_checkpoint, [], (0.0, 1.0, 1.0))]
    for index, (folder, options, expected) in enumerate(cases):
        out = tmp_path / f"report{index}"
        code = evaluate.main(["-m", str(folder), *base, *options, "-o", str(out)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        boxes = json.loads((out / "metrics.json").read_text())["protocols"]["boxes"]
        assert (boxes["split_depth"], boxes["split_cover"], boxes["grow"]) == expected, options
    code = evaluate.main(["-m", str(model), *base, "--box-option", "split_cover=0",
                          "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "split max_cover must be > 0" in err[0], err


def test_domain_calibration_is_applied_and_recorded(tmp_path, tiny_with_domain, capsys):
    root = require_real_data("surveillance", "sbi2015")
    common = ["-m", str(tiny_with_domain), "-d", f"sbi2015:{root}",
              "--data-option", "scenes=[HallAndMonitor]", "--data-option", "pairs_per_scene=2",
              "--worst", "0", "--precision", "fp32"]
    reports = {}
    for name, extra in {"plain": [], "domain": ["--domain", "fixed-camera"]}.items():
        code = evaluate.main([*common, *extra, "-o", str(tmp_path / name)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        reports[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert reports["plain"]["metadata"]["domain"] is None
    assert reports["domain"]["metadata"]["domain"] == "fixed-camera"
    # a bias of -1 on "no change" marks more at the same threshold
    counts = [reports[name]["protocols"]["global"] for name in ("plain", "domain")]
    assert counts[1]["recall"] > counts[0]["recall"]
    code = evaluate.main([*common, "--domain", "street", "-o", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--domain street" in err[0] and "fixed-camera" in err[0]
    assert not (tmp_path / "bad").exists()
