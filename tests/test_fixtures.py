"""The cached tiny-model fixture: keyed by what the training depends on, exact when reused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from changeseg.models import build_model
from tests.inference import conftest as tiny


def _untrained(steps: int = 40):
    torch.manual_seed(steps)
    return build_model(fpn_channels=16).eval()


def test_the_key_follows_the_training_sources_and_steps(tmp_path: Path) -> None:
    source = tmp_path / "train.py"
    source.write_text("steps = 40\n")
    key = tiny.tiny_model_key((source,))
    assert tiny.tiny_model_key((source,)) == key
    assert tiny.tiny_model_key((source,), steps=8) != key
    source.write_text("steps = 41\n")
    assert tiny.tiny_model_key((source,)) != key
    assert Path(tiny.__file__).resolve() in tiny.TRAINING_SOURCES
    assert any(p.name == "model.py" for p in tiny.TRAINING_SOURCES)  # the network's code


def test_the_cache_trains_once_then_reuses_exact_weights(tmp_path: Path, monkeypatch) -> None:
    calls: list[int] = []

    def fake_training(steps: int = 40):
        calls.append(steps)
        return _untrained(steps)

    monkeypatch.setattr(tiny, "trained_tiny_model", fake_training)
    first = tiny.cached_tiny_model(tmp_path / "cache", steps=3)
    second = tiny.cached_tiny_model(tmp_path / "cache", steps=3)
    assert calls == [3] and len(list((tmp_path / "cache").iterdir())) == 1
    assert not second.training
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    (entry,) = (tmp_path / "cache").iterdir()
    entry.write_bytes(b"torn")  # an unreadable entry is trained again and replaced
    tiny.cached_tiny_model(tmp_path / "cache", steps=3)
    assert calls == [3, 3] and entry.stat().st_size > 1000
    tiny.cached_tiny_model(None, steps=3)  # no cache folder: always trains
    assert calls == [3, 3, 3]
    tiny.cached_tiny_model(tmp_path / "cache", steps=4)  # other inputs: a new entry replaces it
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [
        f"tiny-{tiny.tiny_model_key(steps=4)}.safetensors"]


@pytest.mark.slow
def test_a_cached_model_equals_a_fresh_training(tmp_path: Path) -> None:
    cached = tiny.cached_tiny_model(tmp_path, steps=8)  # trains and stores
    reused = tiny.cached_tiny_model(tmp_path, steps=8)  # loads
    fresh = tiny.trained_tiny_model(steps=8)
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, cached.state_dict()[name]), name
        assert torch.equal(value, reused.state_dict()[name]), name
