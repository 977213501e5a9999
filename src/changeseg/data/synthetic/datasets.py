"""Synthetic pairs as torch datasets: a fixed-length map-style set and an endless stream."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import Dataset, IterableDataset, get_worker_info

from changeseg.data.synthetic.generator import SyntheticPairGenerator
from changeseg.errors import ConfigError


class SyntheticPairDataset(Dataset):
    """A fixed-length, map-style dataset: item `i` is pair ``start + i`` of `generator`.

    `transform`, if given, is applied to each sample dict (e.g. joint augmentation and
    conversion to tensors).
    """

    def __init__(self, generator: SyntheticPairGenerator, length: int, start: int = 0,
                 transform: Callable[[dict[str, Any]], Any] | None = None) -> None:
        if length < 0 or start < 0:
            raise ConfigError("synthetic dataset: length and start must be non-negative")
        self.generator = generator
        self.length = int(length)
        self.start = int(start)
        self.transform = transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item: int) -> Any:
        if item < 0:
            item += self.length
        if not 0 <= item < self.length:
            raise IndexError(f"synthetic dataset index {item} out of range ({self.length})")
        sample = self.generator.sample(self.start + item)
        return self.transform(sample) if self.transform else sample


class SyntheticPairStream(IterableDataset):
    """An endless, deterministic stream of pairs for training.

    With N DataLoader workers and W distributed ranks, stream member k (k = rank·N + worker)
    yields pairs ``start + k, start + k + W·N, start + k + 2·W·N, ...``: every worker gets
    different pairs, and the whole stream is the same on every run. `rank` and `world_size`
    default to torch.distributed's when it is initialised, else 0 and 1.
    """

    def __init__(self, generator: SyntheticPairGenerator, start: int = 0,
                 transform: Callable[[dict[str, Any]], Any] | None = None,
                 rank: int | None = None, world_size: int | None = None) -> None:
        if start < 0:
            raise ConfigError("synthetic stream: start must be non-negative")
        self.generator = generator
        self.start = int(start)
        self.transform = transform
        self.rank = rank
        self.world_size = world_size

    def _distributed(self) -> tuple[int, int]:
        rank, world_size = self.rank, self.world_size
        if rank is None or world_size is None:
            import torch.distributed as dist

            active = dist.is_available() and dist.is_initialized()
            if rank is None:
                rank = dist.get_rank() if active else 0
            if world_size is None:
                world_size = dist.get_world_size() if active else 1
        return rank, world_size

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world_size = self._distributed()
        index = self.start + rank * workers + worker
        stride = world_size * workers
        while True:
            sample = self.generator.sample(index)
            yield self.transform(sample) if self.transform else sample
            index += stride
