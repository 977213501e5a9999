"""The bounded prediction queue: a fixed pool of worker threads and a limited number of waiting jobs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class QueueFullError(Exception):
    """Every prediction slot and queue place is taken."""


class WorkQueue:
    """A fixed pool of prediction threads with a bounded number of waiting jobs.

    `run` admits a job only while fewer than `workers + queue_size` are admitted (else
    QueueFullError at once). An admitted job keeps its place until it has really finished,
    even if its request timed out, because the thread is still busy with it.
    """

    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._completed = 0
        self._rejected = 0
        self._executor: ThreadPoolExecutor | None = None

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="changeseg-predict")
            return self._executor

    def stats(self) -> dict[str, int]:
        """Running and waiting jobs, capacity, and counts of completed and rejected jobs."""
        with self._lock:
            return {"running": self._running, "waiting": self._admitted - self._running,
                    "workers": self.workers, "queue_size": self.queue_size,
                    "completed": self._completed, "rejected": self._rejected}

    def _release(self, _future: Any) -> None:
        with self._lock:
            self._admitted -= 1
            self._completed += 1

    async def run(self, job: Callable[[], T], timeout_s: float) -> T:
        """Run `job` in the pool; QueueFullError when full, asyncio.TimeoutError after `timeout_s`."""
        with self._lock:
            if self._admitted >= self.workers + self.queue_size:
                self._rejected += 1
                raise QueueFullError
            self._admitted += 1

        def tracked() -> T:
            with self._lock:
                self._running += 1
            try:
                return job()
            finally:
                with self._lock:
                    self._running -= 1

        try:
            future = self._pool().submit(tracked)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        # Cancelling the asyncio wrapper (timeout, client gone) also cancels a job still queued.
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)

    def shutdown(self) -> None:
        """Drop queued jobs and let the threads finish; the pool is recreated on next use."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
