"""The overlapped batch run: the same folders and summary as one pair at a time, bad pairs in any
stage do not stop it, and reading really runs beside the model."""

from __future__ import annotations

import csv
import json
import threading

import numpy as np
import pytest

from changeseg.inference import batch_pipeline
from changeseg.inference.batch import PairJob, run_batch
from changeseg.inference.batch_pipeline import run_batch_overlapped
from changeseg.inference.pipeline import DetectOptions
from changeseg.inference.predictor import ChangeDetector
from changeseg.inference.tiling import TilingOptions
from changeseg.io.images import read_image, write_png


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    return ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")


def _pair(folder, name, rng, size):
    reference = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    comparison = reference.copy()
    h, w = size
    comparison[h // 5:h // 2, w // 4:w // 2] = 255 - comparison[h // 5:h // 2, w // 4:w // 2]
    return (write_png(folder / f"{name}-a.png", reference), write_png(folder / f"{name}-b.png", comparison))


@pytest.fixture
def jobs(tmp_path, rng):
    """Seven pairs: good ones of several sizes (one tiled), a truncated file, mismatched sizes."""
    folder = tmp_path / "in"
    folder.mkdir()
    sizes = {"p0": (64, 80), "p1": (96, 72), "tiled": (150, 170), "p3": (48, 48), "p4": (72, 100)}
    made = {name: _pair(folder, name, rng, size) for name, size in sizes.items()}
    broken = folder / "broken-b.png"
    broken.write_bytes(made["p1"][1].read_bytes()[:200])  # a truncated PNG: fails when decoded
    small = write_png(folder / "small.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    return [PairJob("p0", *made["p0"]), PairJob("p1", *made["p1"]), PairJob("broken", made["p0"][0], broken),
            PairJob("tiled", *made["tiled"]), PairJob("sizes", made["p3"][0], small),
            PairJob("p3", *made["p3"]), PairJob("p4", *made["p4"])]


def _summary(out):
    with (out / "summary.csv").open(newline="") as handle:
        return [{k: v for k, v in row.items() if k != "ms"} for row in csv.DictReader(handle)]


def _folder(folder):
    """Everything a pair folder holds, timings aside: decoded PNGs and regions.json."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".png":
            files[path.name] = read_image(path).tolist()
        elif path.name == "regions.json":
            summary = json.loads(path.read_text())
            summary.pop("timings_ms")
            files[path.name] = summary
        else:
            files[path.name] = path.read_bytes()
    return files


def test_overlapped_run_writes_what_the_sequential_run_writes(detector, jobs, tmp_path):
    options = DetectOptions(tiling=TilingOptions(128, 32, 2), save_probability=True, min_area=3)
    sequential = run_batch(detector, jobs, tmp_path / "seq", options, model="tiny", overlap=False)
    order = []
    overlapped = run_batch(detector, jobs, tmp_path / "ovl", options, model="tiny",
                           on_pair=lambda outcome, index, total: order.append((outcome.name, index, total)))
    statuses = [(o.name, o.status) for o in overlapped.outcomes]
    assert statuses == [(o.name, o.status) for o in sequential.outcomes] == [
        ("p0", "done"), ("p1", "done"), ("broken", "failed"), ("tiled", "done"), ("sizes", "failed"),
        ("p3", "done"), ("p4", "done")]
    assert order == [(job.name, index, len(jobs)) for index, job in enumerate(jobs)]  # in pair order
    assert [o.error for o in overlapped.outcomes] == [o.error for o in sequential.outcomes]
    assert "reference is 48×48 but comparison is 20×20" in overlapped.outcomes[4].error
    assert all(o.ms and o.ms > 0 for o in overlapped.outcomes if o.status == "done")
    assert _summary(tmp_path / "ovl") == _summary(tmp_path / "seq")
    for job in jobs:
        if (tmp_path / "seq" / job.name / "regions.json").exists():
            assert _folder(tmp_path / "ovl" / job.name) == _folder(tmp_path / "seq" / job.name), job.name
    tiled = json.loads((tmp_path / "ovl" / "tiled" / "regions.json").read_text())
    assert tiled["region_count"] > 0 and tiled["batch"]["model"] == "tiny"

    again = run_batch(detector, jobs, tmp_path / "ovl", options, model="tiny")  # resumes: nothing redone
    assert [o.status for o in again.outcomes] == ["skipped", "skipped", "failed", "skipped", "failed",
                                                  "skipped", "skipped"]


class Flaky:
    """A fast stand-in model that fails on one pair (recognised by its size)."""

    class_names = ["unchanged", "changed"]
    name = "flaky"

    def __init__(self, failing_shape):
        self.failing_shape = failing_shape
        self.seen = []

    def prepare(self, image, name):
        return read_image(image, name)[:, :, :3]

    def predict_proba(self, reference, comparison):
        self.seen.append(reference.shape[:2])
        if reference.shape[:2] == self.failing_shape:
            raise ZeroDivisionError("boom")
        diff = np.abs(reference.astype(np.float32) - comparison.astype(np.float32)).mean(axis=2) / 255.0
        return np.stack([1.0 - diff, diff])


def test_a_pair_failing_in_any_stage_does_not_stop_the_rest(jobs, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "p3").write_text("a file where the pair's folder should be")  # p3 fails when written
    backend = Flaky(failing_shape=(96, 72))  # p1 fails in the model
    report = run_batch_overlapped(backend, jobs, out, DetectOptions())
    assert [(o.name, o.status) for o in report.outcomes] == [
        ("p0", "done"), ("p1", "failed"), ("broken", "failed"), ("tiled", "done"), ("sizes", "failed"),
        ("p3", "failed"), ("p4", "done")]
    errors = {o.name: o.error for o in report.failed}
    assert errors["p1"] == "internal error: ZeroDivisionError: boom"  # model stage
    assert "not a readable image" in errors["broken"]  # reader stage
    assert "it is a file" in errors["p3"]  # writer stage
    assert (out / "p4" / "regions.json").is_file() and not (out / "p1" / "regions.json").exists()
    assert len(_summary(out)) == len(jobs)

    monkeypatch.setenv("CHANGESEG_DEBUG", "1")  # debugging: the first error is raised, as sequentially
    with pytest.raises(ZeroDivisionError, match="boom"):
        run_batch_overlapped(Flaky(failing_shape=(96, 72)), jobs, tmp_path / "debug", DetectOptions())


def test_the_next_pair_is_read_while_the_model_runs(jobs, tmp_path, monkeypatch):
    """The model holds pair 0 until pair 1 has been read: only an overlapped run gets past it."""
    read_second = threading.Event()
    loaded = []
    original = batch_pipeline.load_pair

    def load_pair(reference, comparison, options):
        pair = original(reference, comparison, options)
        loaded.append(reference)
        if len(loaded) == 2:
            read_second.set()
        return pair

    class Waiting(Flaky):
        def predict_proba(self, reference, comparison):
            if not self.seen:
                assert read_second.wait(timeout=60), "pair 1 was not read while pair 0 was in the model"
            return super().predict_proba(reference, comparison)

    monkeypatch.setattr(batch_pipeline, "load_pair", load_pair)
    report = run_batch_overlapped(Waiting(failing_shape=None), jobs[:2], tmp_path / "out")
    assert [o.status for o in report.outcomes] == ["done", "done"]
