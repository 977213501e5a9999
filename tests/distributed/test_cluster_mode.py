"""Cluster mode on this machine: a head node and a second worker node as separate `ray start`
processes on 127.0.0.1, the batch CLI against the head's address, then both stopped."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from changeseg.distributed.cluster import probe
from changeseg.distributed.testing import LocalCluster
from changeseg.errors import InputError
from changeseg.inference.batch import pairs_from_csv, run_batch
from changeseg.inference.pipeline import DetectOptions
from tests.distributed.conftest import mask_agreement, require_ray


@pytest.fixture
def two_node_cluster():
    """A head (1 CPU) and one worker node (1 CPU) on 127.0.0.1, stopped in the finaliser."""
    require_ray()
    cluster = LocalCluster(nodes=2, cpus_per_node=1)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_batch_against_a_two_node_cluster(two_node_cluster, pair_list, tiny_checkpoint, tmp_path):
    cluster = two_node_cluster
    env = {**cluster.env, "OMP_NUM_THREADS": "1"}
    args = ["--pairs", str(pair_list), "-o", str(tmp_path / "cluster"), "-m", str(tiny_checkpoint),
            "--backend", "torch", "--precision", "fp32", "--min-area", "4", "--ray", cluster.address]
    result = subprocess.run([sys.executable, "-m", "changeseg.cli.main", "detect", *args],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 1, result.stderr  # the two bad pairs
    # each node has 1 CPU and each worker reserves 1: two workers means one on each node
    assert "8 pair(s): 6 done, 0 skipped (already complete), 2 failed; torch, fp32 on 2 Ray worker(s)" \
        in result.stdout
    assert [line.split(":")[1].strip() for line in result.stderr.splitlines() if line.startswith("error:")] \
        == ["pair broken", "pair mismatched"]

    from changeseg.inference.predictor import ChangeDetector

    detector = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
    local = run_batch(detector, pairs_from_csv(pair_list), tmp_path / "local", DetectOptions(min_area=4),
                      model=str(tiny_checkpoint))
    with open(tmp_path / "cluster" / "summary.csv", newline="", encoding="utf-8") as handle:
        rows = [(r["name"], r["status"]) for r in csv.DictReader(handle)]
    assert rows == [(o.name, o.status) for o in local.outcomes]
    for outcome in local.with_status("done"):
        assert mask_agreement(tmp_path / "cluster" / outcome.name / "mask.png",
                              tmp_path / "local" / outcome.name / "mask.png") >= 0.999

    cluster.stop()  # (the finaliser would too) — and nothing of it is left running
    assert cluster.leftover_processes() == []
    with pytest.raises(InputError, match="cannot reach a Ray cluster"):
        probe(cluster.address, timeout=2)
    assert not os.path.exists(cluster.root)
