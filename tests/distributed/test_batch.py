"""Batch detection on a local Ray instance (num_cpus=2): the local run's layout and masks, resuming,
bad pairs, the Ray Dataset API and object-store outputs through pyarrow."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from changeseg.distributed.batch import RESULT_COLUMNS, detect_dataset, run_batch_ray
from changeseg.distributed.cluster import WorkerOptions
from changeseg.inference.batch import pairs_from_csv, run_batch
from changeseg.inference.loading import BackendSpec
from changeseg.inference.pipeline import DetectOptions
from changeseg.io.images import write_png
from tests.distributed.conftest import mask_agreement, synthetic_pair

OPTIONS = DetectOptions(min_area=4)


def _summary(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def detector(tiny_checkpoint):
    from changeseg.inference.predictor import ChangeDetector

    return ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")


def test_ray_batch_matches_the_local_run_and_resumes(local_ray, pair_list, tiny_checkpoint, detector,
                                                     tmp_path):
    jobs = pairs_from_csv(pair_list)
    model = str(tiny_checkpoint)
    local = run_batch(detector, jobs, tmp_path / "local", OPTIONS, model=model)
    seen = []
    spec = BackendSpec(model, precision="fp32")
    report = run_batch_ray(jobs, tmp_path / "ray", spec, OPTIONS, WorkerOptions(workers=2), model=model,
                           on_pair=lambda outcome, index, total: seen.append((outcome.name, index, total)))
    assert report.workers == 2
    assert sorted(n for n, _, _ in seen) == sorted(j.name for j in jobs)
    assert [i for _, i, _ in seen] == list(range(len(jobs))) and {t for _, _, t in seen} == {len(jobs)}

    # summary.csv: same pairs, order, statuses and errors as the local run
    ours, theirs = _summary(tmp_path / "ray" / "summary.csv"), _summary(tmp_path / "local" / "summary.csv")
    assert [(r["name"], r["status"], r["error"], r["regions"]) for r in ours] == \
        [(r["name"], r["status"], r["error"], r["regions"]) for r in theirs]
    statuses = {r["name"]: r["status"] for r in ours}
    assert statuses.pop("broken") == "failed" and statuses.pop("mismatched") == "failed"
    assert set(statuses.values()) == {"done"} and len(statuses) == 6
    failed = {o.name: o.error for o in report.failed}
    assert "broken.png" in failed["broken"] and "40" in failed["mismatched"]
    assert failed == {o.name: o.error for o in local.failed}

    # every pair folder: the same files, the same record, masks agreeing on ≥ 99.9 % of pixels
    agreements, changed = [], 0
    for name in statuses:
        ray_folder, local_folder = tmp_path / "ray" / name, tmp_path / "local" / name
        assert _files(ray_folder) == _files(local_folder)
        ray_json = json.loads((ray_folder / "regions.json").read_text())
        local_json = json.loads((local_folder / "regions.json").read_text())
        assert ray_json["batch"] == local_json["batch"]
        agreements.append(mask_agreement(ray_folder / "mask.png", local_folder / "mask.png"))
        changed += ray_json["region_count"]
    assert min(agreements) >= 0.999 and changed > 0

    # the folders are the local run's own: a local run skips them all
    assert len(run_batch(detector, jobs, tmp_path / "ray", OPTIONS, model=model).with_status("skipped")) == 6
    # resumable: a second run skips every finished pair and redoes an incomplete one (no
    # regions.json: killed half-way), and only that one; the bad pairs fail again
    mtime = (tmp_path / "ray" / "synthetic0" / "mask.png").stat().st_mtime_ns
    (tmp_path / "ray" / "levir1" / "regions.json").unlink()
    again = run_batch_ray(jobs, tmp_path / "ray", spec, OPTIONS, WorkerOptions(workers=2), model=model)
    assert {o.name: o.status for o in again.outcomes} == {**dict.fromkeys(statuses, "skipped"),
                                                          "levir1": "done", "broken": "failed",
                                                          "mismatched": "failed"}
    assert again.workers == 2  # three pairs to do (levir1, and the bad pairs tried again)
    assert (tmp_path / "ray" / "synthetic0" / "mask.png").stat().st_mtime_ns == mtime
    assert mask_agreement(tmp_path / "ray" / "levir1" / "mask.png",
                          tmp_path / "local" / "levir1" / "mask.png") >= 0.999


def test_detect_dataset_is_a_ray_dataset_of_result_rows(local_ray, tiny_checkpoint, tmp_path):
    rng = np.random.default_rng(5)
    reference, comparison = synthetic_pair(rng)
    write_png(tmp_path / "a.png", reference)
    write_png(tmp_path / "b.png", comparison)
    pairs = local_ray.data.from_items([
        {"reference": str(tmp_path / "a.png"), "comparison": str(tmp_path / "b.png"), "name": "good one"},
        {"reference": str(tmp_path / "gone.png"), "comparison": str(tmp_path / "b.png"), "name": ""},
    ])
    dataset = detect_dataset(pairs, tmp_path / "out", BackendSpec(str(tiny_checkpoint), precision="fp32"),
                             OPTIONS, WorkerOptions(workers=1))
    assert isinstance(dataset, local_ray.data.Dataset)
    assert not (tmp_path / "out" / "good_one").exists()  # lazy: nothing ran yet
    rows = {row["name"]: row for row in dataset.take_all()}
    assert set(rows) == {"good_one", "gone"} and set(rows["gone"]) == set(RESULT_COLUMNS)
    good, gone = rows["good_one"], rows["gone"]
    assert good["status"] == "done" and good["regions"] >= 1 and 0 < good["changed_fraction"] < 1
    assert json.loads((tmp_path / "out" / "good_one" / "regions.json").read_text())["region_count"] == \
        good["regions"]
    assert good["folder"] == str(tmp_path / "out" / "good_one")
    assert gone["status"] == "failed" and "not found" in gone["error"] and gone["regions"] is None


def test_outputs_to_a_pyarrow_file_system_uri(local_ray, pair_list, tiny_checkpoint, detector, tmp_path):
    jobs = [j for j in pairs_from_csv(pair_list) if j.name in ("synthetic1", "levir0", "broken")]
    spec = BackendSpec(str(tiny_checkpoint), precision="fp32")
    uri = (tmp_path / "store").as_uri()  # file:///…: the object-store route (upload), on a local disk
    report = run_batch_ray(jobs, uri, spec, OPTIONS, WorkerOptions(workers=2), model="tiny")
    assert report.summary_path is None and report.summary_location == f"{uri}/summary.csv"
    assert [(o.name, o.status) for o in report.outcomes] == \
        [("synthetic1", "done"), ("levir0", "done"), ("broken", "failed")]
    folder = run_batch(detector, jobs, tmp_path / "folder", OPTIONS, model="tiny")
    assert [o.status for o in folder.outcomes] == [o.status for o in report.outcomes]
    store = tmp_path / "store"
    assert _files(store) == _files(tmp_path / "folder")  # the local layout, no temporary names left
    assert not (store / "broken").exists()
    for name in ("synthetic1", "levir0"):
        assert mask_agreement(store / name / "mask.png", tmp_path / "folder" / name / "mask.png") >= 0.999
    assert [r["status"] for r in _summary(store / "summary.csv")] == ["done", "done", "failed"]
    again = run_batch_ray(jobs, uri, spec, OPTIONS, WorkerOptions(workers=2), model="tiny")
    assert [o.status for o in again.outcomes] == ["skipped", "skipped", "failed"]
    assert again.workers == 1  # one pair to do (the bad one, tried again): one worker, none idle


def test_a_model_the_workers_cannot_load_stops_the_run_with_one_line(local_ray, pair_list, tmp_path):
    from changeseg.errors import ChangesegError

    jobs = [j for j in pairs_from_csv(pair_list) if j.name == "synthetic2"]
    missing = BackendSpec(str(tmp_path / "only-on-the-driver"), backend="torch")
    with pytest.raises(ChangesegError) as caught:  # check_model=False: as if the driver could load it
        run_batch_ray(jobs, tmp_path / "out", missing, OPTIONS, WorkerOptions(workers=1), check_model=False)
    message = str(caught.value)
    assert message.startswith("the Ray run stopped: model folder not found: ") and "\n" not in message
    summary = tmp_path / "out" / "summary.csv"
    assert message.endswith(f"0 of 1 pair(s) finished ({summary}); run again to resume")
    assert summary.read_text().splitlines() == ["name,status,changed_fraction,regions,ms,error"]
