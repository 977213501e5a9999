"""changeseg.distributed.testing: the local Ray cluster of the tests hands out distinct ports."""

from __future__ import annotations

import shutil

import pytest

from changeseg.distributed import testing


def test_the_cluster_never_hands_out_one_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # the OS may offer a port again as soon as its probe socket closes (a CI run once gave Ray's
    # client server and dashboard agent the same port, and the head node refused to start)
    offered = iter([40001, 40001, 40002, 40001, 40002, 40003])
    monkeypatch.setattr(testing, "free_port", lambda: next(offered))
    cluster = testing.LocalCluster(nodes=1)
    try:
        assert cluster.port == 40001
        assert [cluster._new_port(), cluster._new_port()] == [40002, 40003]
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)
