"""Batch detection on a Ray cluster, with Ray Data: the same pair folders as a local batch run.

`detect_dataset` builds a lazy Ray Dataset: one row per pair in, one row of results out
(`RESULT_COLUMNS`). `map_batches` runs `PairWorker`, a callable class, in a pool of Ray actors
(`ActorPoolStrategy`), so each worker loads the model once and keeps it; each actor reserves
the CPUs and GPUs of `WorkerOptions`. Ray Data streams pairs through the pool with
back-pressure. Each pair is processed by `changeseg.inference.batch.process_pair` — the local
batch run's own code — so a pair folder, its regions.json record (inputs, model, settings)
and the rules for "complete" are the same: a folder written by one kind of run is skipped by
the other.

`run_batch_ray` is the batch run itself: pairs that need no model (already complete, or failed
to form) are settled here on the driver, the rest go through `detect_dataset`, and summary.csv
(in pair order) is rewritten atomically as results arrive — at most once a second, and at the
end. A bad pair is a failed row, never a failed run; a run that Ray itself cannot finish (the
cluster lost) keeps the rows it has and says how many pairs are done, and the next run resumes.

Outputs go to a folder every worker can write, or to an object store (`changeseg.distributed.storage`).
Paths in a pair list are made absolute here, on the driver, because workers run elsewhere.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from changeseg.distributed.cluster import WorkerOptions, pool_size, require_ray
from changeseg.distributed.storage import FolderStore, OutputStore, output_store
from changeseg.errors import ChangesegError, InputError
from changeseg.inference.batch import (
    BatchReport,
    PairJob,
    PairOutcome,
    pairs_from_csv,
    safe_name,
    settings_record,
)
from changeseg.inference.loading import BackendSpec, load_backend
from changeseg.inference.pipeline import DetectOptions

# Columns of a result row: the pair's summary.csv fields, plus where its folder is.
RESULT_COLUMNS = ("name", "status", "changed_fraction", "regions", "ms", "error", "folder")
MAX_BLOCKS = 10_000  # one pair per block up to this many pairs (even load, steady progress)


class PairWorker:
    """The callable class `map_batches` runs in each Ray actor: loads the model once, then
    detects each pair of a batch into the store and returns one result row per pair."""

    def __init__(self, spec: BackendSpec, store: OutputStore, options: DetectOptions, resume: bool,
                 model: str) -> None:
        self.backend = load_backend(spec)
        self.store = store
        self.options = options
        self.resume = resume
        self.model = model

    def __call__(self, batch: dict[str, Any]) -> Any:
        """Process a batch of pair rows (columns reference, comparison, optional name and problem)."""
        import pyarrow as pa

        references = list(batch["reference"])
        comparisons = list(batch["comparison"])
        names = list(batch["name"]) if "name" in batch else [""] * len(references)
        problems = list(batch["problem"]) if "problem" in batch else [""] * len(references)
        rows: dict[str, list[Any]] = {column: [] for column in RESULT_COLUMNS}
        for reference, comparison, name, problem in zip(references, comparisons, names, problems):
            job = _job(reference, comparison, name, problem)
            outcome = self.store.process(self.backend, job, self.options, self.resume, self.model)
            for column, value in _result_row(outcome, self.store).items():
                rows[column].append(value)
        return pa.table({
            "name": pa.array(rows["name"], pa.string()),
            "status": pa.array(rows["status"], pa.string()),
            "changed_fraction": pa.array(rows["changed_fraction"], pa.float64()),
            "regions": pa.array(rows["regions"], pa.int64()),
            "ms": pa.array(rows["ms"], pa.float64()),
            "error": pa.array(rows["error"], pa.string()),
            "folder": pa.array(rows["folder"], pa.string()),
        })


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _job(reference: Any, comparison: Any, name: Any, problem: Any) -> PairJob:
    """A PairJob from a dataset row (empty strings for missing values)."""
    reference, comparison = _text(reference), _text(comparison)
    problem = _text(problem)
    if not problem and (not reference or not comparison):
        problem = "a pair needs both a reference and a comparison"
    label = _text(name) or (Path(reference).stem if reference else "pair")
    return PairJob(safe_name(label), Path(reference) if reference else None,
                   Path(comparison) if comparison else None, problem)


def _result_row(outcome: PairOutcome, store: OutputStore) -> dict[str, Any]:
    location = store.location.rstrip("/")
    folder = str(Path(location) / outcome.name) if isinstance(store, FolderStore) \
        else f"{location}/{outcome.name}"
    return {"name": outcome.name, "status": outcome.status, "changed_fraction": outcome.changed_fraction,
            "regions": outcome.regions, "ms": outcome.ms, "error": outcome.error, "folder": folder}


def outcome_of(row: dict[str, Any]) -> PairOutcome:
    """The PairOutcome of one result row of `detect_dataset`."""

    def number(value: Any) -> Any:
        return None if value is None or (isinstance(value, float) and value != value) else value

    regions = number(row.get("regions"))
    return PairOutcome(str(row["name"]), str(row["status"]), number(row.get("changed_fraction")),
                       None if regions is None else int(regions), number(row.get("ms")),
                       _text(row.get("error")))


def portable_jobs(jobs: Sequence[PairJob]) -> list[PairJob]:
    """The jobs with absolute input paths (workers do not share the driver's working directory)."""
    return [replace(job, reference=Path(job.reference).resolve() if job.reference else None,
                    comparison=Path(job.comparison).resolve() if job.comparison else None) for job in jobs]


def worker_spec(spec: BackendSpec, workers: WorkerOptions) -> BackendSpec:
    """The spec every worker loads, fixed here on the driver: the model folder as an absolute
    path, device "cuda" for a torch (or auto) worker that reserves a GPU but was told "cpu", and
    backend "auto" resolved once (`BackendSpec.resolved`), so all workers run the same backend."""
    spec = spec.portable()
    if workers.gpus > 0 and spec.backend in ("torch", "auto") and spec.device == "cpu":
        spec = replace(spec, device="cuda")  # a worker that reserves a GPU uses it
    return spec.resolved()


def _ensure_connected() -> Any:
    ray = require_ray()
    if not ray.is_initialized():
        ray.init()  # Ray's own default: RAY_ADDRESS, or a new local instance
    return ray


def detect_dataset(pairs: Sequence[PairJob] | str | os.PathLike | Any, out_dir: str | os.PathLike,
                   spec: BackendSpec | None = None, options: DetectOptions | None = None,
                   workers: WorkerOptions | None = None, resume: bool = True,
                   model: str | None = None) -> Any:
    """A lazy Ray Dataset that detects `pairs` into `out_dir` and yields one result row per pair.

    `pairs` is a list of `PairJob` (e.g. from `pairs_from_dirs`), the path of a pair-list CSV,
    or a Ray Dataset with columns ``reference`` and ``comparison`` (absolute paths, or paths
    every worker can open) and optionally ``name`` (default: the reference's file stem; names
    must be unique). Result columns: `RESULT_COLUMNS` (status "done", "skipped" or "failed").
    `out_dir` is a folder every worker can write, or an object-store URI (see
    `changeseg.distributed.storage`); `model` is the label recorded in regions.json
    (default `spec.model`). Connects to Ray first if this process is not connected
    (`ray.init()`: ``RAY_ADDRESS``, or a new local instance); `ray_session` gives control.
    Nothing runs until the dataset is consumed (`iter_rows`, `take_all`, `write_parquet`, …).
    """
    ray = _ensure_connected()
    spec = spec or BackendSpec()
    options = options or DetectOptions()
    workers = workers or WorkerOptions()
    store = output_store(out_dir)
    if isinstance(pairs, (str, os.PathLike)):
        pairs = pairs_from_csv(pairs)
    if isinstance(pairs, ray.data.Dataset):
        dataset = pairs
    else:
        jobs = portable_jobs(list(pairs))
        if not jobs:
            raise InputError("no pairs to process")
        items = [{"name": job.name, "reference": _text(job.reference), "comparison": _text(job.comparison),
                  "problem": job.problem} for job in jobs]
        dataset = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
        workers = replace(workers, workers=min(workers.workers or len(items), len(items)))  # no idle actors
    fits, wanted = pool_size(workers)
    compute = ray.data.ActorPoolStrategy(size=wanted) if fits >= wanted \
        else ray.data.ActorPoolStrategy(min_size=fits, max_size=wanted)
    constructor = {"spec": worker_spec(spec, workers), "store": store, "options": options, "resume": resume,
                   "model": model if model is not None else spec.model}
    return dataset.map_batches(PairWorker, batch_size=1, compute=compute, fn_constructor_kwargs=constructor,
                               num_cpus=workers.cpus, num_gpus=workers.gpus or None, batch_format="numpy")


@dataclass
class DistributedReport(BatchReport):
    """A `BatchReport` of a Ray run: also where summary.csv went (a path or URI) and the pool size."""

    summary_location: str = ""
    workers: int = 0


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OUR_ERROR = re.compile(r"changeseg\.errors\.\w+: (?P<message>.+)$")


def ray_failure(exc: BaseException) -> str:
    """One line for an error that stopped a Ray run: changeseg's own error when Ray wraps one
    (e.g. a model a worker could not load), else the exception's type and first line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ChangesegError):
        return str(cause)
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    for line in reversed(lines):
        match = _OUR_ERROR.search(line)
        if match:
            return match.group("message")[:300]
    head = lines[0] if lines else ""
    return f"{type(exc).__name__}: {head}"[:300]


def run_batch_ray(jobs: Sequence[PairJob], out_dir: str | os.PathLike, spec: BackendSpec | None = None,
                  options: DetectOptions | None = None, workers: WorkerOptions | None = None,
                  resume: bool = True, model: str | None = None, check_model: bool = True,
                  on_pair: Callable[[PairOutcome, int, int], None] | None = None,
                  summary_interval_s: float = 1.0) -> DistributedReport:
    """Detect every pair on the connected Ray cluster into ``out_dir/<name>/`` + summary.csv.

    The same outputs, resume rules and per-pair failures as `changeseg.inference.batch.run_batch`
    (see the module docstring). `check_model` loads the model once here first, on the CPU, so a
    bad model name fails before any worker starts. `on_pair(outcome, index, total)` is called as
    each pair settles (`index` counts settled pairs from 0, in arrival order). Raises
    ChangesegError when Ray cannot finish the run, after writing the rows it has.
    """
    _ensure_connected()
    spec = spec or BackendSpec()
    options = options or DetectOptions()
    workers = workers or WorkerOptions()
    label = model if model is not None else spec.model
    store = output_store(out_dir)
    store.check()
    if check_model:
        load_backend(replace(spec, device="cpu"))
    jobs = portable_jobs(jobs)
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        repeated = sorted(name for name, count in Counter(names).items() if count > 1)
        raise InputError(f"pair names must be unique; repeated: {', '.join(repeated[:10])}")
    summary_path = Path(store.summary_location()) if isinstance(store, FolderStore) else None
    report = DistributedReport(summary_path=summary_path, summary_location=store.summary_location())
    settled: dict[int, PairOutcome] = {}
    pending: list[int] = []
    for index, job in enumerate(jobs):
        outcome = store.settled(job, settings_record(job, options, label), resume)
        if outcome is None:
            pending.append(index)
        else:
            settled[index] = outcome
    order = {jobs[index].name: index for index in pending}
    total = len(jobs)
    last_write = 0.0

    def publish(force: bool = False) -> None:
        nonlocal last_write
        if force or time.monotonic() - last_write >= summary_interval_s:
            report.outcomes = [settled[i] for i in sorted(settled)]
            store.write_summary(report.outcomes)
            last_write = time.monotonic()

    count = 0
    for index in sorted(settled):
        if on_pair is not None:
            on_pair(settled[index], count, total)
        count += 1
    publish(force=True)
    if pending:
        workers = replace(workers, workers=min(workers.workers or len(pending), len(pending)))
        report.workers = min(pool_size(workers))
        dataset = detect_dataset([jobs[i] for i in pending], store.location, spec, options, workers, resume,
                                 label)
        try:
            for row in dataset.iter_rows():
                outcome = outcome_of(row)
                index = order.get(outcome.name)
                if index is None:
                    continue
                settled[index] = outcome
                if on_pair is not None:
                    on_pair(outcome, count, total)
                count += 1
                publish()
        except (KeyboardInterrupt, SystemExit):
            publish(force=True)
            raise
        except ChangesegError:
            publish(force=True)
            raise
        except Exception as exc:  # Ray's own failures: keep what is done, say how to resume
            if os.environ.get("CHANGESEG_DEBUG"):
                raise
            publish(force=True)
            done = sum(1 for o in settled.values() if o.status != "failed")
            raise ChangesegError(f"the Ray run stopped: {ray_failure(exc)}; {done} of {total} pair(s) "
                                 f"finished ({report.summary_location}); run again to resume") from None
    for index in pending:  # never expected: a pair the workers did not report is not silently lost
        if index not in settled:
            settled[index] = PairOutcome(jobs[index].name, "failed", error="no result came back from the Ray "
                                         "workers; run again to resume")
    publish(force=True)
    return report
