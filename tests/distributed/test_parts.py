"""The parts of changeseg.distributed that need no running Ray: addresses, pool sizes, and the
object-store route (pyarrow file systems) for one pair."""

from __future__ import annotations

import json

import numpy as np
import pytest

from changeseg.distributed.cluster import WorkerOptions, parse_address, pool_size, probe
from changeseg.distributed.storage import ArrowStore, FolderStore, _upload_order, is_uri, output_store
from changeseg.distributed.testing import free_port
from changeseg.errors import InputError, OutputError
from changeseg.inference.batch import PairJob, settings_record
from changeseg.inference.pipeline import DetectOptions
from changeseg.io.images import read_image, to_model_channels, write_png
from tests.distributed.conftest import require_ray, synthetic_pair


class DifferenceBackend:
    """A fast stand-in model: change = mean absolute difference."""

    class_names = ["unchanged", "changed"]
    name = "difference"
    trained = True

    def prepare(self, image, name):
        return to_model_channels(read_image(image, name), 3)

    def predict_proba(self, reference, comparison):
        diff = np.abs(reference.astype(np.float32) - comparison.astype(np.float32)).mean(axis=2) / 255.0
        return np.stack([1.0 - diff, diff])


@pytest.mark.parametrize("address, expected", [("local", "local"), (" AUTO ", "auto"),
                                               ("10.0.0.5:6379", "10.0.0.5:6379"),
                                               ("head-node.cluster:6380", "head-node.cluster:6380"),
                                               ("[::1]:6379", "[::1]:6379")])
def test_addresses_that_parse(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["", "localhost", "10.0.0.5", "10.0.0.5:0", "10.0.0.5:70000", "a b:1",
                                     "ray://head:10001x"])
def test_addresses_that_do_not(address):
    with pytest.raises(InputError, match="bad Ray address"):
        parse_address(address)


def test_probe_fails_fast_on_a_closed_port():
    port = free_port()
    with pytest.raises(InputError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}: Connection"):
        probe(f"127.0.0.1:{port}", timeout=2)


def test_pool_size_fits_workers_to_the_cluster():
    totals = {"CPU": 8.0, "GPU": 2.0}
    assert pool_size(WorkerOptions(), totals) == (8, 8)
    assert pool_size(WorkerOptions(cpus=3), totals) == (2, 2)
    assert pool_size(WorkerOptions(workers=4, cpus=1), totals) == (4, 4)
    assert pool_size(WorkerOptions(workers=20, cpus=1), totals) == (8, 20)  # autoscaling pool 8 → 20
    assert pool_size(WorkerOptions(cpus=1, gpus=1), totals) == (2, 2)  # GPUs are the limit
    assert pool_size(WorkerOptions(cpus=0.5), totals) == (16, 16)
    with pytest.raises(InputError, match="no Ray worker fits.*1 GPU"):
        pool_size(WorkerOptions(gpus=1), {"CPU": 8.0, "GPU": 0.0})
    for bad in ({"workers": 0}, {"cpus": 0, "gpus": 0}, {"cpus": -1}):
        with pytest.raises(InputError):
            WorkerOptions(**bad)


def test_stores_are_chosen_by_the_location(tmp_path):
    assert is_uri("s3://bucket/x") and is_uri("file:///tmp/x") and not is_uri("/tmp/x")
    assert not is_uri("C:\\data\\out") and not is_uri("relative/out")
    assert output_store("s3://bucket/x") == ArrowStore("s3://bucket/x")
    assert output_store(tmp_path / "out") == FolderStore(str(tmp_path / "out"))


def test_completion_marker_is_uploaded_last(tmp_path):
    for name in ("regions.json", "mask.png", "overlay.png", "branches/level1_a.png", "zzz.tif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    order = [p.relative_to(tmp_path).as_posix() for p in _upload_order(tmp_path)]
    assert order[-1] == "regions.json" and len(order) == 5


def test_one_pair_through_a_pyarrow_file_system(tmp_path, rng):
    require_ray()
    reference, comparison = synthetic_pair(rng)
    write_png(tmp_path / "a.png", reference)
    write_png(tmp_path / "b.png", comparison)
    job = PairJob("pair", tmp_path / "a.png", tmp_path / "b.png")
    options = DetectOptions(save_probability=True)
    store = ArrowStore((tmp_path / "store").as_uri())
    store.check()
    stale = tmp_path / "store" / "pair" / "unknown.png"  # left by an earlier run: removed
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    mine = tmp_path / "store" / "pair" / "notes.txt"  # not changeseg's: kept
    mine.write_text("mine")
    backend = DifferenceBackend()
    outcome = store.process(backend, job, options, True, "difference")
    assert outcome.status == "done" and not stale.exists() and mine.exists()
    folder = tmp_path / "store" / "pair"
    assert sorted(p.name for p in folder.iterdir()) == ["mask.png", "notes.txt", "overlay.png",
                                                       "probability.png", "regions.json"]
    record = json.loads((folder / "regions.json").read_text())["batch"]
    assert record == settings_record(job, options, "difference")
    assert store.settled(job, record, True).status == "skipped"
    assert store.settled(job, record, False) is None
    assert store.settled(PairJob("x", None, None, "no partner"), record, True).status == "failed"
    failed = store.process(backend, PairJob("pair", tmp_path / "a.png", tmp_path / "gone.png"), options,
                           False, "difference")
    assert failed.status == "failed" and "not found" in failed.error
    assert not (folder / "regions.json").exists()  # a failed pair leaves no complete-looking folder
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        ArrowStore((tmp_path / "file").as_uri()).check()
