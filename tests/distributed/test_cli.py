"""`changeseg detect --ray`: batch and one GeoTIFF pair on Ray through the CLI, and every way of
getting it wrong giving one `error:` line and a non-zero exit."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from changeseg.cli import detect
from changeseg.distributed.testing import free_port
from changeseg.io.images import write_png
from tests.distributed.conftest import mask_agreement, write_geotiff_pair


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return [(r["name"], r["status"], r["error"]) for r in csv.DictReader(handle)]


def _run_cli(args, env=None, timeout=600):
    environment = {**os.environ, **(env or {})}
    environment.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "changeseg.cli.main", "detect", *args], capture_output=True,
                          text=True, env=environment, timeout=timeout)


def test_batch_on_ray_writes_what_the_local_cli_writes(local_ray, pair_list, tiny_checkpoint, tmp_path,
                                                       capsys):
    common = ["--pairs", str(pair_list), "-m", str(tiny_checkpoint), "--backend", "torch", "--precision",
              "fp32", "--min-area", "4"]
    assert detect.main([*common, "-o", str(tmp_path / "local")]) == 1
    local = capsys.readouterr()
    code = detect.main([*common, "-o", str(tmp_path / "ray"), "--ray", "local", "--ray-workers", "2"])
    ours = capsys.readouterr()
    assert code == 1  # two bad pairs
    assert ours.out.strip() == ("8 pair(s): 6 done, 0 skipped (already complete), 2 failed; torch, fp32 on 2 "
                                f"Ray worker(s) → {tmp_path / 'ray' / 'summary.csv'}")
    errors = [line for line in ours.err.splitlines() if line.startswith("error:")]
    assert sorted(errors) == sorted(line for line in local.err.splitlines() if line.startswith("error:"))
    assert [e.split(":")[1].strip() for e in sorted(errors)] == ["pair broken", "pair mismatched"]
    assert _rows(tmp_path / "ray" / "summary.csv") == _rows(tmp_path / "local" / "summary.csv")
    for name, status, _ in _rows(tmp_path / "ray" / "summary.csv"):
        if status == "done":
            agreement = mask_agreement(tmp_path / "ray" / name / "mask.png",
                                       tmp_path / "local" / name / "mask.png")
            assert agreement >= 0.999


def test_one_geotiff_pair_on_a_fresh_local_ray_instance(tiny_checkpoint, tmp_path):
    torch = pytest.importorskip("torch")
    from changeseg.inference.geo import detect_geotiff_windowed
    from changeseg.inference.predictor import ChangeDetector
    from changeseg.inference.tiling import TilingOptions
    from tests.distributed.test_raster import _read

    reference, comparison = write_geotiff_pair(tmp_path, seed=7)
    tiling = ["--tile-size", "160", "--tile-overlap", "32", "--tile-batch", "2"]
    result = _run_cli([str(reference), str(comparison), "-o", str(tmp_path / "ray"), "-m",
                       str(tiny_checkpoint), "--backend", "torch", "--precision", "fp32", *tiling,
                       "--min-area", "4", "--ray", "local", "--ray-num-cpus", "2"], {"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "torch, fp32, tile windows on 2 Ray worker(s)" in result.stdout and result.stdout.count("\n") == 1
    assert not any(line.startswith(("error", "Traceback")) for line in result.stderr.splitlines())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        detector = ChangeDetector.from_pretrained(tiny_checkpoint, precision="fp32")
        local = detect_geotiff_windowed(detector, reference, comparison, tmp_path / "local",
                                        tiling=TilingOptions(160, 32, 2), min_area=4)
    finally:
        torch.set_num_threads(threads)
    assert f"in {local['region_count']} region(s)" in result.stdout and local["region_count"] >= 3
    for name in ("mask.tif", "probability.tif"):
        assert np.array_equal(_read(tmp_path / "ray" / name)[0], _read(tmp_path / "local" / name)[0])


def test_without_ray_installed_the_error_says_how_to_get_it(pair_list, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    code = detect.main(["--pairs", str(pair_list), "-o", str(tmp_path / "out"), "--ray", "local"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: Ray is not installed")
    assert "pip install 'changeseg[ray]'" in err and not (tmp_path / "out").exists()


def test_an_unreachable_cluster_is_one_line_in_seconds(pair_list, tmp_path):
    port = free_port()
    result = _run_cli(["--pairs", str(pair_list), "-o", str(tmp_path / "out"), "--ray", f"127.0.0.1:{port}"],
                      timeout=120)
    # one line: found before the model (here "default", never loaded or exported) and before Ray
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [f"error: cannot reach a Ray cluster at 127.0.0.1:{port}: "
                                          "Connection refused (start one with `ray start --head`, or use "
                                          "--ray local)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--ray-workers", "2"], "--ray-workers need --ray ADDRESS"),
    (["--ray-gpus-per-worker", "1"], "--ray-gpus-per-worker need --ray ADDRESS"),
    (["--ray", "nowhere"], "bad Ray address 'nowhere': expected local, auto, or HOST:PORT"),
    (["--ray", "10.1.2.3:99999"], "bad Ray address"),
    (["--ray", "10.1.2.3:6379", "--ray-num-cpus", "2"], "--ray-num-cpus applies to --ray local only"),
    (["--ray", "local", "--ray-cpus-per-worker", "0"], "each Ray worker needs some CPUs or GPUs"),
    (["-o", "s3://bucket/out"], "object-store outputs need --ray"),
])
def test_ray_option_errors_are_one_line(args, message, pair_list, tmp_path, capsys):
    out = ["-o", str(tmp_path / "out")] if "-o" not in args else []
    code = detect.main(["--pairs", str(pair_list), *out, *args])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and err.startswith("error:") and message in err, err
    assert not (tmp_path / "out").exists()


def test_one_pair_on_ray_must_be_geotiff(tmp_path, rng, capsys):
    for name in ("a.png", "b.png"):
        write_png(tmp_path / name, rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    code = detect.main([str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "out"),
                        "--ray", "local"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "needs a GeoTIFF pair" in err
    assert not (tmp_path / "out").exists()
