"""The data module: validation split, seeded order and augmentation, resumable loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from changeseg.data.datasets.folder import FolderDataset
from changeseg.errors import ConfigError
from changeseg.labels import UNTYPED_CHANGE
from changeseg.training.datamodule import (
    ChangeDataModule,
    EpochOrder,
    ResumableBatchSampler,
    SwapPair,
    UntypedChangeLabels,
    collate_pairs,
)
from changeseg.training.recipe import load_recipe
from tests.training.train_helpers import write_pairs


def data_section(*overrides: str):
    return load_recipe(None, ["data.num_workers=0", "data.crop_size=32", "data.batch_size=2",
                              "data.val_fraction=0.25", *overrides]).data


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs"), count=8, size=48, seed=3)


def module(pairs: Path, *overrides: str, seed: int = 0, **kwargs: int) -> ChangeDataModule:
    section = data_section(f"data.train=[{{spec: 'folder:{pairs}'}}]", *overrides)
    dm = ChangeDataModule(section, seed=seed, **kwargs)
    dm.setup("fit")
    return dm


def batches(loader) -> list[dict]:
    return [batch for batch in loader]


def test_validation_split_is_carved_and_recorded(pairs: Path) -> None:
    dm = module(pairs)
    info = dm.split_info()
    assert info["val_seed"] == 0 and info["val_fraction"] == 0.25
    source = info["sources"][0]
    assert source["train"] == 6 and source["val"] == 2 and len(source["val_names"]) == 2
    assert module(pairs).split_info() == info  # same seed, same split
    other = module(pairs, "data.val_seed=5").split_info()["sources"][0]["val_names"]
    assert sorted(other) != sorted(source["val_names"])
    train_names = {n for b in batches(dm.train_dataloader()) for n in b["name"]}
    assert train_names.isdisjoint(source["val_names"])
    # the training names are recorded too (for evaluate's training-overlap check)
    assert sorted(source["train_names"]) == sorted(train_names) and len(train_names) == 6
    val = batches(dm.val_dataloader())
    assert sorted(n for b in val for n in b["name"]) == sorted(source["val_names"])
    assert val[0]["reference"].shape[-2:] == (48, 48)  # whole images for validation


def test_tone_curve_joins_the_training_augmentation(pairs: Path) -> None:
    from changeseg.data.transforms import ToneCurve
    from changeseg.training.datamodule import build_augmentation

    source = f"data.train=[{{spec: 'folder:{pairs}'}}]"
    section = data_section(source, "data.augment.tone_curve=0.3", "data.augment.p_tone=0.5")
    steps = build_augmentation(section.augment, 32).transforms
    tone = [step for step in steps if isinstance(step, ToneCurve)]
    assert len(tone) == 1 and tone[0].strength == 0.3 and tone[0].p == 0.5
    assert not any(isinstance(step, ToneCurve)
                   for step in build_augmentation(data_section(source).augment, 32).transforms)
    with pytest.raises(ConfigError, match="tone_curve must lie in"):
        data_section(source, "data.augment.tone_curve=1.0", "data.augment.p_tone=0.5")


def test_training_batches_are_seeded_by_epoch(pairs: Path) -> None:
    dm = module(pairs, "data.augment.color_jitter=0.3", "data.augment.p_color=1.0")
    loader = dm.train_dataloader()
    first = batches(loader)
    assert len(first) == 3
    batch = first[0]
    assert batch["reference"].shape == (2, 3, 32, 32) and batch["mask"].dtype == torch.int64
    assert set(batch["mask"].unique().tolist()) <= {0, 1, 255}
    again = batches(module(pairs, "data.augment.color_jitter=0.3", "data.augment.p_color=1.0")
                    .train_dataloader())
    for a, b in zip(first, again):
        assert a["name"] == b["name"] and torch.equal(a["reference"], b["reference"])
    loader.batch_sampler.sampler.set_epoch(1)
    second = batches(loader)
    assert [b["name"] for b in second] != [b["name"] for b in first]


def test_loader_resumes_within_an_epoch(pairs: Path) -> None:
    dm = module(pairs)
    loader = dm.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(3)
    full = batches(loader)
    loader.progress = lambda: 2
    state = loader.state_dict()
    assert state == {"epoch": 3, "batches_done": 2}
    fresh = module(pairs).train_dataloader()
    fresh.load_state_dict(state)
    rest = batches(fresh)
    assert [b["name"] for b in rest] == [b["name"] for b in full[2:]]
    assert torch.equal(rest[0]["comparison"], full[2]["comparison"])
    assert len(batches(fresh)) == len(full)  # the skip applies once
    fresh.load_state_dict({"epoch": 3, "batches_done": len(full)})  # finished epoch: no skip
    assert len(batches(fresh)) == len(full)


def test_epoch_order_shares_between_ranks() -> None:
    ranks = [EpochOrder(10, seed=1, rank=r, world_size=2) for r in range(2)]
    shares = [r.indices() for r in ranks]
    assert sorted(shares[0] + shares[1]) == list(range(10))
    padded = [EpochOrder(5, seed=1, rank=r, world_size=2).indices() for r in range(2)]
    assert len(padded[0]) == len(padded[1]) == 3 and set(padded[0] + padded[1]) == set(range(5))
    dropped = EpochOrder(5, seed=1, rank=1, world_size=2, drop_last=True)
    assert len(dropped.indices()) == len(dropped) == 2
    sampler = ResumableBatchSampler(EpochOrder(5, seed=0), batch_size=2, drop_last=True)
    assert len(sampler) == 2 and all(len(b) == 2 for b in sampler)
    assert all(key[0] == 0 for b in sampler for key in b)


def test_collate_pads_mixed_sizes() -> None:
    small = {"reference": torch.ones(3, 2, 3), "comparison": torch.ones(3, 2, 3),
             "mask": torch.ones(2, 3, dtype=torch.int64), "name": "a"}
    large = {"reference": torch.ones(3, 4, 4), "comparison": torch.ones(3, 4, 4),
             "mask": torch.zeros(4, 4, dtype=torch.int64), "name": "b", "offset": (0, 0)}
    batch = collate_pairs([small, large])
    assert batch["reference"].shape == (2, 3, 4, 4) and batch["name"] == ["a", "b"]
    assert batch["mask"][0, 3, 3] == 255 and batch["reference"][0, 0, 3, 3] == 0
    assert set(batch) == {"reference", "comparison", "mask", "name"}


def test_class_counts_match_the_training_masks(pairs: Path) -> None:
    dm = module(pairs)
    train_names = set(dm.split_info()["sources"][0]["val_names"])
    expected = np.zeros(2, np.int64)
    for path in sorted((pairs / "label").iterdir()):
        if path.stem in train_names:
            continue
        mask = np.asarray(Image.open(path)) > 127
        expected += [int((~mask).sum()), int(mask.sum())]
    assert dm.class_pixel_counts().tolist() == expected.tolist()


def test_grey_images_become_three_channels(tmp_path: Path) -> None:
    grey = write_pairs(tmp_path / "grey", count=4, size=40, grey=True)
    dm = module(grey)
    assert next(iter(dm.train_dataloader()))["reference"].shape[1] == 3
    single = module(grey, "data.mean=[0.5]", "data.std=[0.25]", in_channels=1)
    assert next(iter(single.val_dataloader()))["reference"].shape[1] == 1


def test_random_crops_and_tiles(pairs: Path) -> None:
    dm = module(pairs, "data.train.0.samples_per_epoch=10", "data.val_tile=32",
                "data.val_batch_size=4")
    assert len(dm.train_set) == 10
    # each 48×48 validation image gives 2×2 tiles of 32 (the last ones aligned to the edge)
    assert len(dm.val_set) == 8
    batch = next(iter(dm.val_dataloader()))
    assert batch["reference"].shape == (4, 3, 32, 32)
    with pytest.raises(ConfigError, match="crop_size"):
        module(pairs, "data.train.0.samples_per_epoch=10", "data.crop_size=null")
    # weight: a plain source is repeated, a cropped source serves more crops
    assert len(module(pairs, "data.train.0.weight=3").train_set) == 18
    weighted = module(pairs, "data.train.0.samples_per_epoch=5", "data.train.0.weight=2")
    assert len(weighted.train_set) == 10 and weighted.split_info()["sources"][0]["train"] == 10


def test_synthetic_source(tmp_path: Path) -> None:
    section = data_section("data.train=[{spec: synthetic, samples_per_epoch: 6, options: {size: 32}}]",
                           "data.val_synthetic=3", "data.labels=typed", "model.num_classes=4")
    dm = ChangeDataModule(section, seed=1, num_classes=4)
    dm.setup("fit")
    assert len(dm.train_set) == 6 and len(dm.val_set) == 3
    assert dm.split_info()["sources"][0]["val_names"] == ["synth_000000", "synth_000001", "synth_000002"]
    assert dm.split_info()["sources"][0]["train_names"] is None  # generated, not read
    loader = dm.train_dataloader()
    first = [n for b in loader for n in b["name"]]
    assert all(int(n.split("_")[1]) >= 3 for n in first)  # validation pairs never train
    loader.batch_sampler.sampler.set_epoch(1)
    assert set(first).isdisjoint(n for b in loader for n in b["name"])  # fresh pairs each epoch
    assert dm.class_pixel_counts().shape == (4,)
    with pytest.raises(ConfigError, match="classes"):
        ChangeDataModule(section, num_classes=2).setup()


def test_typed_swap_turns_appear_into_disappear() -> None:
    mask = np.array([[0, 1, 2], [3, 254, 255]], np.uint8)
    sample = {"reference": np.zeros((2, 3, 3)), "comparison": np.ones((2, 3, 3)), "mask": mask}
    always = np.random.default_rng(0)
    swapped = SwapPair(1.0, typed=True)(sample, always)
    assert swapped["reference"].max() == 1 and swapped["comparison"].max() == 0
    assert swapped["mask"].tolist() == [[0, 2, 1], [3, 254, 255]]
    assert SwapPair(1.0)(sample, always)["mask"] is mask  # binary labels are left alone


def test_binary_sets_feed_a_typed_model_as_untyped_change(pairs: Path, tmp_path: Path) -> None:
    data = FolderDataset(pairs)
    relabelled = UntypedChangeLabels(data)
    raw, served = data[0]["mask"], relabelled[0]["mask"]
    assert raw.max() == 1 and set(np.unique(served)) == {0, UNTYPED_CHANGE}
    assert np.array_equal(served == UNTYPED_CHANGE, raw == 1)
    section = data_section(
        f"data.train=[{{spec: 'folder:{pairs}'}}, {{spec: synthetic, samples_per_epoch: 4, "
        "options: {size: 32}}]", "data.val_synthetic=2", "data.labels=typed",
        "model.num_classes=4", "data.augment.swap=0.5")
    dm = ChangeDataModule(section, seed=1, num_classes=4)
    dm.setup("fit")
    values = set()
    for batch in dm.train_dataloader():
        values |= set(torch.unique(batch["mask"]).tolist())
    assert UNTYPED_CHANGE in values and values & {1, 2, 3}  # real: untyped; synthetic: typed
    assert values <= {0, 1, 2, 3, UNTYPED_CHANGE, 255}
    counts = dm.class_pixel_counts()
    assert counts.shape == (4,) and counts[1:].sum() > 0
    # fine-tuning a typed model on binary pairs alone (labels: binary) learns them the same way
    alone = module(pairs, "model.num_classes=4", "data.class_names=[unchanged, appear, disappear, exchange]",
                   num_classes=4)
    assert UNTYPED_CHANGE in set(torch.unique(next(iter(alone.train_dataloader()))["mask"]).tolist())


def test_scene_holdout_with_a_per_source_val_fraction(pairs: Path, tmp_path: Path) -> None:
    from tests.data.datasets.test_sbi2015 import write_scenes

    write_scenes(tmp_path / "sbi")
    spec = f"sbi2015:{tmp_path / 'sbi'}"
    section = data_section(
        f"data.train=[{{spec: '{spec}', options: {{scenes: [Alpha], pairs_per_scene: 6}}, val_fraction: 0}},"
        f" {{spec: 'folder:{pairs}'}}]",
        f"data.val=[{{spec: '{spec}', options: {{scenes: [Beta], pairs_per_scene: 4}}}}]")
    dm = ChangeDataModule(section, seed=0)
    dm.setup("fit")
    scenes_train, folder, scenes_val = dm.split_info()["sources"]
    assert scenes_train["train"] == 6 and scenes_train["val"] == 0 and scenes_train["val_names"] == []
    assert folder["train"] == 6 and folder["val"] == 2  # data.val_fraction still holds for the others
    assert scenes_val["options"] == {"scenes": ["Beta"], "pairs_per_scene": 4}
    assert len(scenes_val["val_names"]) == 4 and all(n.startswith("Beta/") for n in scenes_val["val_names"])
    trained = {n for b in batches(dm.train_dataloader()) for n in b["name"]}
    assert len(trained) == 12 and {n.split("/")[0] for n in trained if "/" in n} == {"Alpha"}
    assert sorted(scenes_train["train_names"] + folder["train_names"]) == sorted(trained)
    assert scenes_val["train_names"] == []  # a validation-only source trains on nothing
    validated = sorted(n for b in batches(dm.val_dataloader()) for n in b["name"])
    assert validated == sorted(folder["val_names"] + scenes_val["val_names"])


@pytest.mark.parametrize("per_epoch", [None, 6])
def test_train_scale_enlarges_small_training_frames_before_the_crop(tmp_path: Path, per_epoch) -> None:
    """20² frames in 32² crops are padded (ignore) in every crop; enlarged 2× first they fill it,
    both for a plain source and for one served as random crops; validation stays as it is."""
    small = write_pairs(tmp_path / "small", count=8, size=20, seed=5)
    crops = f", samples_per_epoch: {per_epoch}" if per_epoch else ""

    def served(*overrides: str) -> tuple[list[dict], list[dict]]:
        section = data_section(f"data.train=[{{spec: 'folder:{small}'{crops}}}]", *overrides)
        dm = ChangeDataModule(section, seed=0)
        dm.setup("fit")
        return batches(dm.train_dataloader()), batches(dm.val_dataloader())

    plain_train, plain_val = served()
    scaled_train, scaled_val = served("data.train_scale=2")
    assert all((b["mask"] == 255).any() for b in plain_train)
    assert not any((b["mask"] == 255).any() for b in scaled_train)
    assert all(b["reference"].shape[-2:] == (32, 32) for b in scaled_train)
    assert [b["reference"].shape for b in scaled_val] == [b["reference"].shape for b in plain_val]
    assert scaled_val[0]["reference"].shape[-2:] == (20, 20)
    with pytest.raises(ConfigError, match="train_scale"):
        data_section(f"data.train=[{{spec: 'folder:{small}'}}]", "data.train_scale=-1")


def test_val_scale_enlarges_validation_pairs_only(pairs: Path) -> None:
    plain = batches(module(pairs).val_dataloader())
    enlarged = batches(module(pairs, "data.val_scale=2").val_dataloader())
    assert enlarged[0]["reference"].shape[-2:] == (96, 96)  # the 48² pairs at twice their size
    assert [b["name"] for b in enlarged] == [b["name"] for b in plain]
    # the label is enlarged with its image: as many changed pixels, four times over
    for small, big in zip(plain, enlarged):
        changed_small = int((small["mask"] == 1).sum())
        assert abs(int((big["mask"] == 1).sum()) - 4 * changed_small) <= 0.1 * 4 * changed_small + 8
    train = next(iter(module(pairs, "data.val_scale=2").train_dataloader()))
    assert train["reference"].shape[-2:] == (32, 32)  # training crops are unchanged
    with pytest.raises(ConfigError, match="val_scale"):
        module(pairs, "data.val_scale=0")
