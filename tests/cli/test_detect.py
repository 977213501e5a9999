"""`changeseg detect` in-process: outputs on success, one line and no files on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from changeseg.cli import detect
from changeseg.cli.main import main as changeseg_main
from changeseg.io.images import read_image, write_png
from tests.conftest import require_real_data, splitting_copy, touching_discs


def test_writes_all_outputs_and_a_summary_line(images, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    code = detect.main([str(images[0]), str(images[1]), "-o", str(out), "--model", str(tiny_checkpoint),
                        "--save-probability", "--min-area", "3", "--precision", "fp32"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["mask.png", "overlay.png", "probability.png",
                                                     "regions.json"]
    summary = json.loads((out / "regions.json").read_text())
    assert summary["width"] == 56 and summary["height"] == 40
    assert f"in {summary['region_count']} region(s)" in captured.out
    assert all(r["area"] >= 3 for r in summary["regions"])
    assert captured.out.count("\n") == 1


def detect_with_views(images, out, checkpoint, capsys, *flags: str):
    """Run detect (fp32, probability.png) with test-time `flags`; return its summary line and the
    fp32 detector with the pair it prepared."""
    from changeseg.inference.predictor import ChangeDetector

    code = detect.main([str(images[0]), str(images[1]), "-o", str(out), "-m", str(checkpoint),
                        "--precision", "fp32", "--save-probability", *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    detector = ChangeDetector.from_pretrained(checkpoint, precision="fp32")
    reference = detector.prepare(read_image(images[0]), "reference")
    comparison = detector.prepare(read_image(images[1]), "comparison")
    return captured.out, detector, reference, comparison


def test_tta_averages_three_views(images, tmp_path, tiny_checkpoint, capsys):
    from changeseg.inference.tta import TestTimeAugmented

    line, detector, reference, comparison = detect_with_views(images, tmp_path / "tta", tiny_checkpoint,
                                                              capsys, "--tta")
    assert ", fp32, tta," in line
    views = [detector.predict_proba(reference, comparison),
             detector.predict_proba(reference[:, ::-1], comparison[:, ::-1])[:, :, ::-1],
             detector.predict_proba(comparison, reference)]
    expected = np.mean(views, axis=0)
    averaged = TestTimeAugmented(detector).predict_proba(reference, comparison)
    np.testing.assert_allclose(averaged, expected, atol=1e-5)
    result = detector.predict(images[0], images[1], tta=True, min_area=0)
    np.testing.assert_allclose(result.probability, 1 - expected[0], atol=1e-5)


def test_dihedral_views_average_eight_views(images, tmp_path, tiny_checkpoint, capsys):
    from changeseg.cli.detect import TTA_CHOICES
    from changeseg.inference.tta import TTA_SETS

    assert ("none", *TTA_SETS) == TTA_CHOICES  # the CLI's spelt-out choices are the library's sets
    out = tmp_path / "dihedral"
    line, detector, reference, comparison = detect_with_views(images, out, tiny_checkpoint, capsys,
                                                              "--tta-views", "dihedral")
    assert ", fp32, tta dihedral," in line
    views = []
    for turns in range(4):
        for flip in (False, True):
            r, c = (reference[:, ::-1], comparison[:, ::-1]) if flip else (reference, comparison)
            r, c = (np.ascontiguousarray(np.rot90(x, turns)) for x in (r, c))
            view = np.rot90(detector.predict_proba(r, c), -turns, axes=(1, 2))
            views.append(view[:, :, ::-1] if flip else view)
    expected = 1 - np.mean(views, axis=0)[0]
    plain = 1 - detector.predict_proba(reference, comparison)[0]
    assert np.abs(expected - plain).max() > 0.02  # the views move the map
    written = read_image(out / "probability.png")[..., 0].astype(np.float32) / 255
    np.testing.assert_allclose(written, expected, atol=1 / 255 + 1e-6)
    result = detector.predict(images[0], images[1], tta="dihedral", min_area=0)
    np.testing.assert_allclose(result.probability, expected, atol=1e-5)
    code = detect.main([str(images[0]), str(images[1]), "-o", str(tmp_path / "none"), "-m",
                        str(tiny_checkpoint), "--tta-views", "none"])
    assert code == 0 and "tta" not in capsys.readouterr().out


def test_scales_average_the_pair_resized(images, tmp_path, tiny_checkpoint, capsys):
    from changeseg.inference.multiscale import MultiScale

    out = tmp_path / "scales"
    line, detector, reference, comparison = detect_with_views(images, out, tiny_checkpoint, capsys,
                                                              "--scales", "1,2")
    assert ", fp32, scales 1,2," in line
    expected = 1 - MultiScale(detector, (1, 2)).predict_proba(reference, comparison)[0]
    plain = 1 - detector.predict_proba(reference, comparison)[0]
    assert np.abs(expected - plain).max() > 0.02  # the second scale moves the map
    written = read_image(out / "probability.png")[..., 0].astype(np.float32) / 255
    np.testing.assert_allclose(written, expected, atol=1 / 255 + 1e-6)
    result = detector.predict(images[0], images[1], scales=(1, 2), min_area=0)
    np.testing.assert_allclose(result.probability, expected, atol=1e-5)


def test_a_model_runs_at_its_own_scales_unless_told(images, tmp_path, tiny_checkpoint, capsys):
    import json
    import shutil

    from changeseg.inference.multiscale import MultiScale

    enlarged = tmp_path / "enlarged-model"  # the tiny model, recorded as trained on pairs enlarged 2×
    shutil.copytree(tiny_checkpoint, enlarged)
    config = json.loads((enlarged / "config.json").read_text())
    config.setdefault("metadata", {})["scales"] = [2]
    (enlarged / "config.json").write_text(json.dumps(config))
    line, detector, reference, comparison = detect_with_views(images, tmp_path / "own", enlarged, capsys)
    assert ", fp32, scales 2," in line  # the summary says what ran
    expected = 1 - MultiScale(detector, (2,)).predict_proba(reference, comparison)[0]
    plain = 1 - detector.predict_proba(reference, comparison)[0]
    assert np.abs(expected - plain).max() > 0.02
    written = read_image(tmp_path / "own" / "probability.png")[..., 0].astype(np.float32) / 255
    np.testing.assert_allclose(written, expected, atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(detector.predict(images[0], images[1], min_area=0).probability, expected,
                               atol=1e-5)
    # --scales 1 overrides the model's own: the pair as it is
    line, *_ = detect_with_views(images, tmp_path / "told", enlarged, capsys, "--scales", "1")
    assert "scales" not in line
    written = read_image(tmp_path / "told" / "probability.png")[..., 0].astype(np.float32) / 255
    np.testing.assert_allclose(written, plain, atol=1 / 255 + 1e-6)


def test_through_the_group_on_a_real_pair(tmp_path, tiny_checkpoint, capsys):
    root = require_real_data("tsunami")
    code = changeseg_main(["detect", str(root / "t0" / "00000001.jpg"), str(root / "t1" / "00000001.jpg"),
                           "-o", str(tmp_path / "o"), "-m", str(tiny_checkpoint)])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "o" / "mask.png").is_file()


def test_untrained_models_say_so(images, tmp_path, capsys):
    code = detect.main([str(images[0]), str(images[1]), "-o", str(tmp_path / "o"),
                        "--model", "c3po-mobilenetv2-fcn"])
    assert code == 0
    assert "UNTRAINED" in capsys.readouterr().err


def bad_cases(tmp_path, images, rng):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    truncated = tmp_path / "broken.png"
    truncated.write_bytes(images[0].read_bytes()[:40])
    small = write_png(tmp_path / "small.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    ref, cmp = str(images[0]), str(images[1])
    return {
        "missing file": ([str(tmp_path / "nope.png"), cmp], "file not found"),
        "unreadable file": ([ref, str(truncated)], "not a readable image"),
        "non-image": ([str(text), cmp], "not a readable image"),
        "mismatched sizes": ([ref, str(small)], "56×40 but comparison is 20×20"),
        "unknown model": ([ref, cmp, "--model", "no-such-model"], "unknown model"),
        "bad threshold": ([ref, cmp, "--threshold", "2"], "threshold"),
        "bad device": ([ref, cmp, "--device", "tpu"], "device"),
        "bad scales": ([ref, cmp, "--scales", "1,0"], "--scales: 0 is outside"),
        "two view sets": ([ref, cmp, "--tta", "--tta-views", "dihedral"], "give either it or --tta-views"),
        "unknown view set": ([ref, cmp, "--tta-views", "spin"], "'spin' is not one of"),
    }


@pytest.mark.parametrize("case", ["missing file", "unreadable file", "non-image", "mismatched sizes",
                                  "unknown model", "bad threshold", "bad device", "bad scales",
                                  "two view sets", "unknown view set"])
def test_bad_input_gives_one_line_nonzero_exit_and_no_output(case, images, tmp_path, rng, capsys):
    args, message = bad_cases(tmp_path, images, rng)[case]
    out = tmp_path / "out"
    code = detect.main([*args, "-o", str(out)])
    captured = capsys.readouterr()
    assert code != 0
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error:") and message in lines[0]
    assert "Traceback" not in captured.err
    assert not out.exists()


def test_every_verb_has_help(capsys):
    from changeseg.cli.main import VERBS

    for verb in VERBS:
        assert changeseg_main([verb, "--help"]) == 0
        assert "Usage: changeseg" in capsys.readouterr().out
    assert changeseg_main(["--help"]) == 0
    assert "detect" in capsys.readouterr().out


# --- batch mode -------------------------------------------------------------------------------

@pytest.fixture
def pair_list(tmp_path, rng):
    """A CSV of two good pairs (one real LEVIR pair) and one whose comparison is missing."""
    import shutil

    levir = require_real_data("levir_samples")
    name = sorted((levir / "A").glob("*.png"))[0].name
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    shutil.copy(levir / "A" / name, tmp_path / "A" / "levir.png")
    shutil.copy(levir / "B" / name, tmp_path / "B" / "levir.png")
    reference = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    comparison = reference.copy()
    comparison[5:25, 10:40] = 255 - comparison[5:25, 10:40]
    write_png(tmp_path / "A" / "synth.png", reference)
    write_png(tmp_path / "B" / "synth.png", comparison)
    listing = tmp_path / "pairs.csv"
    listing.write_text("reference,comparison,name\nA/levir.png,B/levir.png,levir\n"
                       "A/synth.png,B/synth.png,synth\nA/synth.png,B/missing.png,lost\n")
    return listing


def test_batch_pair_list_lists_failures_exits_nonzero_and_resumes(pair_list, tmp_path, tiny_checkpoint,
                                                                 capsys):
    out = tmp_path / "out"
    args = ["--pairs", str(pair_list), "-o", str(out), "-m", str(tiny_checkpoint), "--precision", "fp32"]
    code = detect.main(args)
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: pair lost:") and "file not found" in errors[0]
    assert "3 pair(s): 2 done, 0 skipped (already complete), 1 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["levir", "summary.csv", "synth"]
    assert {"mask.png", "overlay.png", "regions.json"} <= {p.name for p in (out / "levir").iterdir()}
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0] == "name,status,changed_fraction,regions,ms,error" and len(summary) == 4

    code = detect.main(args)  # second run: the finished pairs are skipped
    captured = capsys.readouterr()
    assert code == 1 and "0 done, 2 skipped" in captured.out

    pair_list.write_text("\n".join(pair_list.read_text().splitlines()[:3]) + "\n")  # drop the bad pair
    assert detect.main(args) == 0
    assert "2 pair(s): 0 done, 2 skipped" in capsys.readouterr().out
    assert detect.main([*args, "--overwrite", "--min-area", "3"]) == 0
    assert "2 done, 0 skipped" in capsys.readouterr().out


def test_batch_from_two_folders_through_the_group(pair_list, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    code = changeseg_main(["detect", "--ref-dir", str(tmp_path / "A"), "--cmp-dir", str(tmp_path / "B"),
                           "-o", str(out), "-m", str(tiny_checkpoint), "--tile-size", "128"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 pair(s): 2 done" in captured.out
    assert (out / "levir" / "regions.json").is_file() and (out / "synth" / "regions.json").is_file()


def test_batch_no_overlap_runs_pairs_one_after_another_with_the_same_results(pair_list, tmp_path,
                                                                             tiny_checkpoint, monkeypatch):
    import changeseg.inference.batch_pipeline as pipeline

    args = ["--ref-dir", str(tmp_path / "A"), "--cmp-dir", str(tmp_path / "B"), "-m", str(tiny_checkpoint),
            "--precision", "fp32"]
    assert detect.main([*args, "-o", str(tmp_path / "overlapped")]) == 0

    def no_threads(*_args, **_kwargs):
        raise AssertionError("--no-overlap must not start the overlapped pipeline")

    monkeypatch.setattr(pipeline, "run_batch_overlapped", no_threads)
    assert detect.main([*args, "-o", str(tmp_path / "sequential"), "--no-overlap"]) == 0
    for name in ("levir", "synth"):
        for output in ("mask.png", "overlay.png", "types.png"):
            overlapped = tmp_path / "overlapped" / name / output
            if overlapped.exists() or output != "types.png":
                assert (tmp_path / "sequential" / name / output).read_bytes() == overlapped.read_bytes()


@pytest.mark.parametrize("args, message", [
    (["a.png", "b.png", "--pairs", "p.csv"], "not both"),
    (["--ref-dir", "A"], "go together"),
    (["--pairs", "p.csv", "--ref-dir", "A", "--cmp-dir", "B"], "not both"),
    ([], "give REFERENCE and COMPARISON"),
    (["a.png", "b.png", "--ecc"], "need --align"),
    (["a.png", "b.png", "--tile-size", "64", "--tile-overlap", "40"], "at most half"),
    (["a.png", "b.png", "--bands", "0,1"], "1-based"),
    (["a.png", "b.png", "--no-overlap"], "local batch runs"),
])
def test_mode_and_option_errors_are_one_line(args, message, tmp_path, capsys):
    code = detect.main([*args, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and message in err and err.startswith("error:")
    assert not (tmp_path / "out").exists()


def test_onnx_backend_is_selectable_or_explains_itself(images, tmp_path, capsys):
    code = detect.main([str(images[0]), str(images[1]), "-o", str(tmp_path / "o"), "--backend", "onnx",
                        "-m", str(tmp_path / "no-such-model")])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and err.startswith("error:")


def test_onnx_backend_tiles_batches_and_never_imports_torch(onnx_folder, tiny_checkpoint, tmp_path, rng):
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT
    from tests.inference.onnx_helpers import changed_pair

    reference, comparison = changed_pair(rng, 96, 160)
    ref, cmp = write_png(tmp_path / "r.png", reference), write_png(tmp_path / "c.png", comparison)
    (tmp_path / "pairs.csv").write_text(f"{ref},{cmp},p1\n{ref},{tmp_path / 'nope.png'},p2\n")
    tiles = ["--tile-size", "64", "--tile-overlap", "16", "--tile-batch", "3"]
    script = (
        "import sys\n"
        "from changeseg.cli.detect import main\n"
        f"single = main([{str(ref)!r}, {str(cmp)!r}, '-o', {str(tmp_path / 'onnx')!r}, '--backend', 'onnx', "
        f"'-m', {str(onnx_folder)!r}, *{tiles!r}])\n"
        f"batch = main(['--pairs', {str(tmp_path / 'pairs.csv')!r}, '-o', {str(tmp_path / 'batch')!r}, "
        f"'--backend', 'onnx', '-m', {str(onnx_folder)!r}, *{tiles!r}])\n"
        "assert 'torch' not in sys.modules, 'the ONNX path imported torch'\n"
        "print('codes', single, batch)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "codes 0 1" in done.stdout and "error: pair p2:" in done.stderr
    assert detect.main([str(ref), str(cmp), "-o", str(tmp_path / "torch"), "-m", str(tiny_checkpoint),
                        "--precision", "fp32", *tiles]) == 0
    onnx_mask = read_image(tmp_path / "onnx" / "mask.png")
    torch_mask = read_image(tmp_path / "torch" / "mask.png")
    assert 0.05 < (torch_mask > 0).mean() < 0.95
    assert (onnx_mask == torch_mask).mean() > 0.99
    assert (tmp_path / "batch" / "p1" / "regions.json").is_file()


@pytest.fixture
def discs_pair(tmp_path, tiny_checkpoint, monkeypatch):
    """Two diagonally overlapping white discs on black (PNG paths), a copy of the tiny checkpoint
    whose config.json splits regions (depth 1, cover 0.95, as `pcb`), and a torch model that sees
    exactly the pixels that differ (its map is not the network's: the discs are fixed)."""
    from changeseg.inference.predictor import ChangeDetector

    def difference(self, reference, comparison):
        differs = np.abs(comparison.astype(np.float32) - reference).mean(axis=2) > 0.5
        change = differs.astype(np.float32) * 0.9
        return np.stack([1 - change, change])

    monkeypatch.setattr(ChangeDetector, "predict_proba", difference)
    discs = touching_discs()
    reference = np.zeros((48, 48, 3), np.uint8)
    comparison = np.where(discs[:, :, None], 255, reference).astype(np.uint8)
    model = splitting_copy(tiny_checkpoint, tmp_path / "splitting-model")
    return (write_png(tmp_path / "ref.png", reference), write_png(tmp_path / "cmp.png", comparison), model)


def test_split_flags_override_the_models_own(discs_pair, tmp_path, tiny_checkpoint, capsys):
    reference, comparison, model = discs_pair
    base = [str(reference), str(comparison), "--backend", "torch", "--precision", "fp32"]
    cases = [(["-m", str(model)], 2),  # the model's own: split
             (["-m", str(model), "--split-depth", "0"], 1),  # the flag turns it off
             (["-m", str(model), "--split-cover", "0.5"], 1),  # only the cover changed: no split fits
             (["-m", str(tiny_checkpoint)], 1),  # a model without the keys: no splitting
             (["-m", str(tiny_checkpoint), "--split-depth", "1", "--split-cover", "0.95"], 2)]
    for index, (args, regions) in enumerate(cases):
        out = tmp_path / f"out{index}"
        code = detect.main([*base, *args, "-o", str(out)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert json.loads((out / "regions.json").read_text())["region_count"] == regions, args
        assert f"in {regions} region(s)" in captured.out


@pytest.mark.parametrize(("flags", "message"), [
    (["--split-depth", "-1"], "split depth must be a finite number >= 0"),
    (["--split-depth", "inf"], "split depth must be a finite number >= 0"),
    (["--split-cover", "0"], "split max_cover must be > 0"),
])
def test_bad_split_values_are_one_error_line(discs_pair, tmp_path, flags, message, capsys):
    reference, comparison, model = discs_pair
    out = tmp_path / "bad"
    code = detect.main([str(reference), str(comparison), "-m", str(model), "-o", str(out), *flags])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code != 0 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_domain_calibration_marks_more_and_an_unknown_domain_is_one_line(images, tmp_path, tiny_with_domain,
                                                                           capsys):
    line, detector, reference, comparison = detect_with_views(images, tmp_path / "domain", tiny_with_domain,
                                                              capsys, "--domain", "fixed-camera",
                                                              "--backend", "torch")
    assert ", fp32, domain fixed-camera," in line
    plain = detector.predict(reference, comparison, min_area=0)
    calibrated = detector.predict(reference, comparison, min_area=0, domain="fixed-camera")
    assert (calibrated.probability >= plain.probability - 1e-6).all()
    assert calibrated.mask.sum() > plain.mask.sum()
    written = read_image(tmp_path / "domain" / "mask.png")[..., 0] > 0
    np.testing.assert_array_equal(written, calibrated.mask)
    out = tmp_path / "bad"
    code = detect.main([str(images[0]), str(images[1]), "-o", str(out), "-m", str(tiny_with_domain),
                        "--domain", "street"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--domain street" in err[0] and "fixed-camera" in err[0], err
    assert not out.exists()


def test_batch_applies_the_domain_to_every_pair(pair_list, tmp_path, tiny_with_domain, capsys):
    args = ["--ref-dir", str(tmp_path / "A"), "--cmp-dir", str(tmp_path / "B"), "-m", str(tiny_with_domain),
            "--precision", "fp32", "--backend", "torch"]
    changed = {}
    for name, extra in {"plain": [], "domain": ["--domain", "fixed-camera"]}.items():
        code = detect.main([*args, *extra, "-o", str(tmp_path / name)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        summaries = {pair: json.loads((tmp_path / name / pair / "regions.json").read_text())
                     for pair in ("levir", "synth")}
        changed[name] = {pair: summary["changed_pixels"] for pair, summary in summaries.items()}
    assert all(changed["domain"][pair] > changed["plain"][pair] for pair in ("levir", "synth")), changed
