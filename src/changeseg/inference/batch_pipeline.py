"""A batch run with its stages overlapped: the next pair is read while the model runs, the last one
written while the model runs the next.

`run_batch_overlapped` does what `changeseg.inference.batch.run_batch` does sequentially — the
same pair folders, the same regions.json records, the same rules for skipping a complete folder
and for a failed pair, summary.csv rewritten atomically after every pair, in pair order — with
the three stages of `changeseg.inference.pipeline.detect_to_folder` in three threads joined by
bounded queues:

- a *reader* thread settles the pairs that need no model (already complete, failed to form),
  clears each pair's folder of an earlier run's outputs, decodes the pair (`load_pair`) and
  prepares it (`prepare_loaded`: scaling, alignment);
- the calling thread runs the model (`infer_prepared`), or a whole windowed pair;
- a *writer* thread turns the probabilities into regions and writes the pair's folder
  (`write_inference`), records the outcome and rewrites summary.csv.

Each queue holds at most `depth` pairs, so at most `2 · depth + 3` pairs are in memory at once.
Decoding, PNG encoding and NumPy release the GIL, so on a CPU with cores to spare beside the
model's threads the reading and writing cost (almost) no wall time. A stage that fails for a pair
makes that pair a failed row and the pair goes on to the writer as such; the others continue.
With ``CHANGESEG_DEBUG`` set, the error of the first failing pair (in pair order) stops the run when
that pair reaches the writer, and is raised in the calling thread, as the sequential run raises it.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from changeseg.inference.backend import ProbaBackend
from changeseg.inference.batch import (
    SUMMARY_FILE,
    BatchReport,
    PairJob,
    PairOutcome,
    failed_outcome,
    settings_record,
    settled_outcome,
    write_summary,
)
from changeseg.inference.outputs import check_output_folder, clear_owned_outputs
from changeseg.inference.pipeline import (
    DetectOptions,
    Inference,
    PairInput,
    PreparedPair,
    detect_windowed,
    infer_prepared,
    load_pair,
    prepare_loaded,
    write_inference,
)
from changeseg.inference.tiling import TileCallback

DEFAULT_DEPTH = 1
_END = None  # closes a queue


@dataclass
class _Pair:
    """One pair on its way through the stages."""

    index: int
    job: PairJob
    folder: Path
    record: dict[str, Any]
    outcome: PairOutcome | None = None  # set once the pair is settled (skipped, failed or done)
    pair: PairInput | None = None
    prepared: PreparedPair | None = None
    inference: Inference | None = None
    summary: dict[str, Any] | None = None  # a windowed pair is written by the model stage
    ms: float = 0.0  # time spent on it by all stages together
    exception: Exception | None = None  # what made it fail

    def fail(self, exc: Exception, started: float) -> None:
        """Record that a stage raised `exc` for this pair, and let go of what it holds."""
        self.ms += (time.perf_counter() - started) * 1e3
        self.outcome = failed_outcome(self.job.name, exc, self.ms)
        self.exception = exc
        self.pair = self.prepared = self.inference = None


class _Stop(Exception):
    """Raised in a stage thread when the run is being stopped."""


class _Run:
    """The shared state of one overlapped run: queues, the stop flag and the first fatal error."""

    def __init__(self, depth: int) -> None:
        self.to_model: queue.Queue[_Pair | None] = queue.Queue(maxsize=depth)
        self.to_writer: queue.Queue[_Pair | None] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.debug = bool(os.environ.get("CHANGESEG_DEBUG"))

    def put(self, target: queue.Queue[_Pair | None], item: _Pair | None) -> None:
        """Put `item` on `target`, waiting for room unless the run is being stopped."""
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                target.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self, source: queue.Queue[_Pair | None]) -> _Pair | None:
        """The next item of `source`, waiting for one unless the run is being stopped."""
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                return source.get(timeout=0.1)
            except queue.Empty:
                continue

    def fatal(self, exc: BaseException) -> None:
        """Stop the run because of `exc` (raised in the calling thread at the end)."""
        if self.error is None:
            self.error = exc
        self.stop.set()



def run_batch_overlapped(backend: ProbaBackend, jobs: Sequence[PairJob], out_dir: str | os.PathLike,
                         options: DetectOptions | None = None, resume: bool = True, model: str = "",
                         on_pair: Callable[[PairOutcome, int, int], None] | None = None,
                         on_tile: TileCallback | None = None, depth: int = DEFAULT_DEPTH) -> BatchReport:
    """Detect every pair into ``out_dir/<name>/`` like `changeseg.inference.batch.run_batch`,
    reading and writing pairs in threads beside the model (see the module docstring).

    `on_pair(outcome, index, total)` is called after each pair, in pair order, from the writer
    thread. `depth` (≥ 1) is how many pairs may wait between two stages.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    options = options or DetectOptions()
    out = check_output_folder(out_dir)
    report = BatchReport(summary_path=out / SUMMARY_FILE)
    model = model or str(getattr(backend, "name", ""))
    run = _Run(depth)

    def read() -> None:
        try:
            for index, job in enumerate(jobs):
                run.put(run.to_model, _read_pair(backend, index, job, out, options, resume, model))
            run.put(run.to_model, _END)
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 — a bug in the stage itself: end the run
            run.fatal(exc)

    def write() -> None:
        try:
            while (item := run.get(run.to_writer)) is not None:
                outcome = _write_pair(backend, item, options)
                if run.debug and item.exception is not None:
                    run.fatal(item.exception)  # CHANGESEG_DEBUG: raised as in a sequential run
                    return
                report.outcomes.append(outcome)
                write_summary(report.summary_path, report.outcomes)
                if on_pair is not None:
                    on_pair(outcome, item.index, len(jobs))
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 — e.g. summary.csv cannot be written: end the run
            run.fatal(exc)

    threads = [threading.Thread(target=read, name="changeseg-batch-read", daemon=True),
               threading.Thread(target=write, name="changeseg-batch-write", daemon=True)]
    for thread in threads:
        thread.start()
    try:
        while (item := run.get(run.to_model)) is not None:
            _infer_pair(backend, item, options, on_tile)
            run.put(run.to_writer, item)
        run.put(run.to_writer, _END)
        threads[1].join()
    except _Stop:
        pass
    except BaseException as exc:  # KeyboardInterrupt included: stop the stage threads, then raise
        run.fatal(exc)
    finally:
        if run.error is not None:
            run.stop.set()
        for thread in threads:
            thread.join()
    if run.error is not None:
        raise run.error
    if not jobs:
        write_summary(report.summary_path, [])
    return report


def _read_pair(backend: ProbaBackend, index: int, job: PairJob, out: Path, options: DetectOptions,
               resume: bool, model: str) -> _Pair:
    """The reader stage: settle the pair, or clear its folder, load and prepare it."""
    item = _Pair(index, job, out / job.name, settings_record(job, options, model))
    item.outcome = settled_outcome(job, item.folder, item.record, resume)
    if item.outcome is not None:
        return item
    started = time.perf_counter()
    try:
        clear_owned_outputs(item.folder)  # regions.json first: incomplete until rewritten last
        assert job.reference is not None and job.comparison is not None
        item.pair = load_pair(job.reference, job.comparison, options)
        if not item.pair.windowed:
            item.prepared = prepare_loaded(backend, item.pair, options)
            item.pair.reference = item.pair.comparison = None  # the prepared images replace them
        item.ms += (time.perf_counter() - started) * 1e3
    except Exception as exc:  # one bad pair must not stop the run
        item.fail(exc, started)
    return item


def _infer_pair(backend: ProbaBackend, item: _Pair, options: DetectOptions, on_tile: TileCallback | None
                ) -> None:
    """The model stage: the probabilities of a prepared pair, or the whole of a windowed pair."""
    if item.outcome is not None:
        return
    assert item.pair is not None
    started = time.perf_counter()
    try:
        if item.prepared is None:  # windowed: reads, predicts and writes in one go
            item.summary = detect_windowed(backend, item.pair, item.folder, options, {"batch": item.record},
                                           on_tile)
        else:
            item.inference = infer_prepared(backend, item.prepared, options, on_tile)
            item.prepared = None
        item.ms += (time.perf_counter() - started) * 1e3
    except Exception as exc:  # one bad pair must not stop the run
        item.fail(exc, started)


def _write_pair(backend: ProbaBackend, item: _Pair, options: DetectOptions) -> PairOutcome:
    """The writer stage: regions and output files of an inferred pair; returns its outcome."""
    if item.outcome is None:
        started = time.perf_counter()
        try:
            if item.summary is None:
                assert item.pair is not None and item.inference is not None
                item.summary = write_inference(backend, item.pair, item.inference, item.folder, options,
                                               {"batch": item.record})
            item.ms += (time.perf_counter() - started) * 1e3
            item.outcome = PairOutcome(item.job.name, "done", item.summary["changed_fraction"],
                                       item.summary["region_count"], item.ms)
        except Exception as exc:  # one bad pair must not stop the run
            item.fail(exc, started)
    item.pair = item.prepared = item.inference = None
    assert item.outcome is not None
    return item.outcome
