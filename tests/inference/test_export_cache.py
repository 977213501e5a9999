"""The export cache: one checked export per model version, reused, replaced atomically."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest

from changeseg.errors import CheckpointError
from changeseg.inference.export import ExportCheckError
from changeseg.inference.export_cache import (
    CACHE_ENV,
    ENTRY_FILE,
    STALE_TEMP_S,
    cache_root,
    cached_onnx,
    lookup,
    resolve_source,
    source_key,
)
from changeseg.inference.onnx_runtime import OnnxChangeDetector
from changeseg.inference.predictor import ChangeDetector
from changeseg.io.checkpoints import WEIGHTS_FILE
from tests.inference.onnx_helpers import changed_pair


@pytest.fixture
def checkpoint(tiny_checkpoint, tmp_path):
    """A private copy of the tiny checkpoint, so a test may change its files."""
    return shutil.copytree(tiny_checkpoint, tmp_path / "tiny")


def test_first_call_exports_a_checked_entry_and_the_second_reuses_it(checkpoint, tmp_path):
    cache = tmp_path / "cache"
    messages: list[str] = []
    assert lookup(checkpoint, cache) is None
    folder = cached_onnx(checkpoint, cache, log=messages.append)
    assert len(messages) == 1 and "exporting tiny" in messages[0]
    assert folder.parent == cache and folder.name.startswith("tiny-")
    assert sorted(p.name for p in folder.iterdir()) == [ENTRY_FILE, "config.json", "model.onnx"]
    record = json.loads((folder / ENTRY_FILE).read_text())
    assert record["key"] == source_key(checkpoint) and folder.name == f"tiny-{record['key'][:16]}"
    assert record["max_abs_diff"] < 1e-4 and record["model_bytes"] == (folder / "model.onnx").stat().st_size
    assert not list(cache.glob(".*"))  # no temporary folder left behind
    (tmp_path / "plain").mkdir()
    assert folder.stat().st_mode == (tmp_path / "plain").stat().st_mode  # ordinary, not private

    before = (folder / "model.onnx").stat()
    started = time.perf_counter()
    again = cached_onnx(checkpoint, cache, log=messages.append)
    assert again == folder and lookup(checkpoint, cache) == folder
    assert len(messages) == 1  # no second export...
    after = (folder / "model.onnx").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # ...the same file
    assert time.perf_counter() - started < 2.0

    # the cached graph is the checkpoint's network: onnxruntime agrees with PyTorch on a new pair
    reference, comparison = changed_pair(np.random.default_rng(4), 72, 88)
    torch_detector = ChangeDetector.from_pretrained(checkpoint, precision="fp32")
    expected = torch_detector.predict_proba(reference, comparison)
    got = OnnxChangeDetector.from_pretrained(folder).predict_proba(reference, comparison)
    assert np.abs(got - expected).max() < 1e-4


def test_a_changed_weight_file_gives_a_new_entry(checkpoint, tmp_path):
    cache = tmp_path / "cache"
    first = cached_onnx(checkpoint, cache)
    detector = ChangeDetector.from_pretrained(checkpoint, precision="fp32")
    head = next(p for name, p in detector.model.named_parameters() if name.endswith("weight"))
    head.data += 0.01
    detector.save_pretrained(checkpoint)  # same folder, new model.safetensors
    assert lookup(checkpoint, cache) is None
    second = cached_onnx(checkpoint, cache)
    assert second != first and second.parent == first.parent
    assert (first / "model.onnx").is_file()  # the old entry is left as it was
    assert (first / "model.onnx").read_bytes() != (second / "model.onnx").read_bytes()
    assert json.loads((second / ENTRY_FILE).read_text())["key"] == source_key(checkpoint)


def test_a_changed_config_or_export_setting_changes_the_key(checkpoint):
    key = source_key(checkpoint)
    assert source_key(checkpoint, opset=18) != key
    assert source_key(checkpoint, exporter="dynamo") != key
    config = checkpoint / "config.json"
    document = json.loads(config.read_text())
    document["threshold"] = 0.42
    config.write_text(json.dumps(document))
    assert source_key(checkpoint) != key


def test_a_failed_check_caches_nothing(checkpoint, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ExportCheckError):
        cached_onnx(checkpoint, cache, tolerance=1e-30)  # no real export is that exact
    assert list(cache.iterdir()) == []
    assert lookup(checkpoint, cache) is None


def test_a_damaged_entry_is_exported_again_and_stale_temporaries_go(tiny_checkpoint, tiny_export, tmp_path):
    cache = tmp_path / "cache"
    folder = export_tiny_entry(tiny_checkpoint, tiny_export, cache)
    (folder / ENTRY_FILE).unlink()  # as if the entry had been half deleted
    stale = cache / ".tiny-0123.abcd.tmp"
    stale.mkdir()
    old = time.time() - STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    fresh = cache / ".tiny-4567.efgh.tmp"  # another process may be exporting into this one right now
    fresh.mkdir()
    assert lookup(tiny_checkpoint, cache) is None
    assert cached_onnx(tiny_checkpoint, cache) == folder
    assert (folder / ENTRY_FILE).is_file()
    assert not stale.exists() and fresh.exists()


def export_tiny_entry(checkpoint, report, cache):
    """The tiny checkpoint's cache entry, written from the session's shared ONNX export (no new export)."""
    source = resolve_source(checkpoint)
    key = source_key(checkpoint)
    folder = cache / f"{source.name}-{key[:16]}"
    folder.mkdir(parents=True)
    for name in ("model.onnx", "config.json"):
        shutil.copyfile(report.folder / name, folder / name)
    (folder / ENTRY_FILE).write_text(json.dumps({"key": key, "model_bytes": report.size_bytes}))
    return folder


def test_sources_onnx_folders_presets_and_unknown_names(tiny_export, tmp_path):
    source = resolve_source("default")
    assert source.name == "default" and (source.folder / WEIGHTS_FILE).is_file() and not source.is_onnx
    onnx_folder = tiny_export.folder
    assert cached_onnx(onnx_folder, tmp_path / "cache") == onnx_folder  # already ONNX: served as it is
    assert not (tmp_path / "cache").exists()
    with pytest.raises(CheckpointError, match="preset is an untrained network"):
        resolve_source("c3po-mobilenetv2-fcn")
    with pytest.raises(CheckpointError, match="model folder not found"):
        resolve_source(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a checkpoint folder"):
        cached_onnx(tmp_path / "empty", tmp_path / "cache")


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "changeseg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "changeseg"
