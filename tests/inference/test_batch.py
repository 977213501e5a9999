"""Batch detection: pair lists and folders, resuming, continuing past bad pairs, summary.csv."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from changeseg.errors import InputError
from changeseg.inference.batch import (
    SUMMARY_FIELDS,
    PairJob,
    pairs_from_csv,
    pairs_from_dirs,
    run_batch,
    safe_name,
)
from changeseg.inference.pipeline import DetectOptions
from changeseg.io.images import read_image, to_model_channels, write_png
from tests.conftest import require_real_data


class CountingBackend:
    """A fast stand-in model: change = mean absolute difference; counts the pairs it sees."""

    class_names = ["unchanged", "changed"]
    name = "counting"
    trained = True

    def __init__(self) -> None:
        self.pairs = 0

    def prepare(self, image, name):
        return to_model_channels(read_image(image, name), 3)

    def predict_proba(self, reference, comparison):
        self.pairs += 1
        diff = np.abs(reference.astype(np.float32) - comparison.astype(np.float32)).mean(axis=2) / 255.0
        return np.stack([1.0 - diff, diff])


@pytest.fixture
def pair_folders(tmp_path, rng):
    """Folders A/ and B/ with three good pairs (one real LEVIR pair), an orphan and a broken file."""
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    for index in range(2):
        reference = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        comparison = reference.copy()
        comparison[10:30, 5 + 20 * index:40] = 0
        write_png(a / f"synthetic{index}.png", reference)
        write_png(b / f"synthetic{index}.png", comparison)
    levir = require_real_data("levir_samples")
    name = sorted((levir / "A").glob("*.png"))[0].name
    shutil.copy(levir / "A" / name, a / "levir.png")
    shutil.copy(levir / "B" / name, b / "levir.png")
    write_png(a / "orphan.png", np.zeros((8, 8), np.uint8))
    write_png(a / "broken.png", np.zeros((8, 8), np.uint8))
    (b / "broken.png").write_bytes(b"\x89PNG not really")
    (a / "notes.txt").write_text("ignored: not an image")
    return a, b


def read_summary(out):
    with (out / "summary.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and list(rows[0]) == list(SUMMARY_FIELDS)
    return {row["name"]: row for row in rows}


def test_folders_are_paired_by_file_name(pair_folders):
    jobs = {job.name: job for job in pairs_from_dirs(*pair_folders)}
    assert sorted(jobs) == ["broken", "levir", "orphan", "synthetic0", "synthetic1"]
    assert jobs["orphan"].problem.startswith("no comparison named orphan.png")
    assert jobs["levir"].reference.name == "levir.png" and not jobs["levir"].problem
    with pytest.raises(InputError, match="folder not found"):
        pairs_from_dirs(pair_folders[0], pair_folders[0] / "nope")


def test_pair_lists_resolve_paths_and_names(tmp_path):
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "pairs.csv"
    listing.write_text("reference,comparison,name\n# a comment\n\nx/a.png,y/a.png,first pair\n"
                       "/abs/b.png,/abs/c.png,\n", encoding="utf-8")
    jobs = pairs_from_csv(listing)
    assert [j.name for j in jobs] == ["first_pair", "b"]
    assert jobs[0].reference == tmp_path / "lists" / "x" / "a.png"
    assert str(jobs[1].comparison) == "/abs/c.png"
    headerless = tmp_path / "plain.csv"
    headerless.write_text("d1/img.png,d2/img.png\nd3/img.png,d4/img.png\n")
    assert [j.name for j in pairs_from_csv(headerless)] == ["d1-img", "d3-img"]  # stems clash: parent added
    duplicate = tmp_path / "dup.csv"
    duplicate.write_text("a.png,b.png,same\nc.png,d.png,same\n")
    with pytest.raises(InputError, match="unique; repeated: same"):
        pairs_from_csv(duplicate)
    bad = tmp_path / "bad.csv"
    bad.write_text("a.png,b.png\nonly-one-column\n")
    with pytest.raises(InputError, match="line 2: expected reference,comparison"):
        pairs_from_csv(bad)
    with pytest.raises(InputError, match="not found"):
        pairs_from_csv(tmp_path / "missing.csv")
    assert safe_name("../../etc/passwd") == "etc_passwd" and safe_name("///") == "pair"


def test_batch_continues_past_bad_pairs_and_resumes(pair_folders, tmp_path):
    backend = CountingBackend()
    jobs = pairs_from_dirs(*pair_folders)
    out = tmp_path / "out"
    seen = []
    report = run_batch(backend, jobs, out, DetectOptions(min_area=2), model="m1",
                       on_pair=lambda outcome, index, total: seen.append((outcome.name, index, total)))
    assert [o.status for o in report.outcomes] == ["failed", "done", "failed", "done", "done"]
    assert not report.ok and {o.name for o in report.failed} == {"broken", "orphan"}
    assert "not a readable image" in report.failed[0].error and "\n" not in report.failed[0].error
    assert seen[-1] == ("synthetic1", 4, 5) and backend.pairs == 3
    rows = read_summary(out)
    assert rows["levir"]["status"] == "done" and float(rows["levir"]["ms"]) > 0
    assert rows["orphan"]["error"].startswith("no comparison named")
    for name in ("levir", "synthetic0", "synthetic1"):
        summary = json.loads((out / name / "regions.json").read_text())
        assert int(rows[name]["regions"]) == summary["region_count"]
        assert float(rows[name]["changed_fraction"]) == pytest.approx(summary["changed_fraction"], abs=1e-6)
        assert summary["batch"]["model"] == "m1"
        assert {"mask.png", "overlay.png"} <= {p.name for p in (out / name).iterdir()}
    assert rows["synthetic0"]["regions"] != "0"

    again = run_batch(backend, jobs, out, DetectOptions(min_area=2), model="m1")  # resume: nothing to redo
    assert [o.status for o in again.outcomes] == ["failed", "skipped", "failed", "skipped", "skipped"]
    assert backend.pairs == 3
    assert read_summary(out)["levir"]["regions"] == rows["levir"]["regions"]

    (out / "synthetic1" / "regions.json").unlink()  # as if interrupted before finishing
    run_batch(backend, jobs, out, DetectOptions(min_area=2), model="m1")
    assert backend.pairs == 4
    run_batch(backend, jobs, out, DetectOptions(min_area=5), model="m1")  # other settings: redo all
    assert backend.pairs == 7
    run_batch(backend, jobs, out, DetectOptions(min_area=5), model="m2")  # another model: redo all
    assert backend.pairs == 10
    run_batch(backend, jobs, out, DetectOptions(min_area=5), model="m2", resume=False)
    assert backend.pairs == 13


def test_corrupt_regions_json_means_incomplete(pair_folders, tmp_path):
    backend = CountingBackend()
    jobs = [job for job in pairs_from_dirs(*pair_folders) if job.name == "levir"]
    out = tmp_path / "out"
    run_batch(backend, jobs, out)
    (out / "levir" / "regions.json").write_text('{"truncated": ')
    report = run_batch(backend, jobs, out)
    assert report.outcomes[0].status == "done" and backend.pairs == 2
    assert json.loads((out / "levir" / "regions.json").read_text())["region_count"] >= 0


def test_empty_job_list_still_writes_a_summary(tmp_path):
    report = run_batch(CountingBackend(), [], tmp_path / "out")
    assert report.ok and (tmp_path / "out" / "summary.csv").read_text().startswith("name,status")


def test_unexpected_errors_are_recorded_not_raised(tmp_path, rng):
    class Exploding(CountingBackend):
        def predict_proba(self, reference, comparison):
            raise ZeroDivisionError("boom")

    image = write_png(tmp_path / "a.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    report = run_batch(Exploding(), [PairJob("x", image, image)], tmp_path / "out")
    assert report.failed[0].error == "internal error: ZeroDivisionError: boom"
