"""Synthetic pairs as map-style and streaming torch datasets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from torch.utils.data import DataLoader

from changeseg.data.synthetic.datasets import SyntheticPairDataset, SyntheticPairStream
from changeseg.data.synthetic.generator import SyntheticPairGenerator
from tests.data.synthetic.helpers import assert_same_sample, generator


def test_map_style_dataset_is_fixed_and_matches_the_generator(photos):
    gen = generator(photos, seed=2)
    dataset = SyntheticPairDataset(gen, length=4, start=10)
    assert len(dataset) == 4
    assert_same_sample(dataset[0], gen.sample(10))
    assert dataset[-1]["name"] == "synth_000013"
    with pytest.raises(IndexError):
        dataset[4]
    wrapped = SyntheticPairDataset(gen, length=2, transform=lambda s: s["name"])
    assert list(wrapped) == ["synth_000000", "synth_000001"]


def test_stream_is_endless_deterministic_and_split_between_ranks(photos):
    gen = SyntheticPairGenerator(photos, size=32, seed=0)
    names = [s["name"] for s in itertools.islice(iter(SyntheticPairStream(gen, start=5)), 3)]
    assert names == ["synth_000005", "synth_000006", "synth_000007"]
    stream = SyntheticPairStream(gen, rank=1, world_size=2)
    names = [s["name"] for s in itertools.islice(iter(stream), 3)]
    assert names == ["synth_000001", "synth_000003", "synth_000005"]


def test_stream_workers_get_distinct_pairs_and_runs_repeat(photos):
    gen = SyntheticPairGenerator(photos, size=32, seed=0)

    def first_batches() -> list[tuple[str, np.ndarray]]:
        loader = DataLoader(SyntheticPairStream(gen), batch_size=None, num_workers=2)
        return [(s["name"], s["comparison"].numpy()) for s in itertools.islice(loader, 6)]

    run_a, run_b = first_batches(), first_batches()
    assert sorted(name for name, _ in run_a) == [f"synth_{i:06d}" for i in range(6)]
    for (name_a, image_a), (name_b, image_b) in zip(run_a, run_b):
        assert name_a == name_b
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(image_a, gen.sample(int(name_a[-6:]))["comparison"])
