"""Many pairs in one run: a pair list or two matched folders, resumable, with a summary CSV.

Each pair gets its own folder ``OUT/<name>/`` holding the usual outputs (see
`changeseg.inference.pipeline.detect_to_folder`). A pair's regions.json is written last and
records the pair's inputs and the detection settings; a folder counts as complete — and is
skipped on the next run — only when that file parses and its record matches the current
pair and settings. A pair being (re)computed first loses its regions.json, so a run killed
half-way leaves it incomplete. A bad pair is recorded as failed and the run goes on;
``OUT/summary.csv`` (name, status, changed_fraction, regions, ms, error) is rewritten
atomically after every pair.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from changeseg.errors import ChangesegError, InputError
from changeseg.inference.backend import ProbaBackend
from changeseg.inference.outputs import check_output_folder, clear_owned_outputs
from changeseg.inference.pipeline import DetectOptions, detect_to_folder, load_pair
from changeseg.inference.tiling import TileCallback
from changeseg.io.images import atomic_write

SUMMARY_FILE = "summary.csv"
SUMMARY_FIELDS = ("name", "status", "changed_fraction", "regions", "ms", "error")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")  # the formats read_image allows
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class PairJob:
    """One pair to process: an output name and two inputs (files or GeoTIFF band folders).

    `problem` is set when the pair could not be formed (e.g. a file with no partner); such a
    job is reported as failed without running.
    """

    name: str
    reference: Path | None
    comparison: Path | None
    problem: str = ""


@dataclass
class PairOutcome:
    """What happened to one pair: status "done", "skipped" (already complete) or "failed"."""

    name: str
    status: str
    changed_fraction: float | None = None
    regions: int | None = None
    ms: float | None = None
    error: str = ""

    def row(self) -> dict[str, str]:
        """The pair's summary.csv row."""
        return {
            "name": self.name,
            "status": self.status,
            "changed_fraction": "" if self.changed_fraction is None else f"{self.changed_fraction:.6f}",
            "regions": "" if self.regions is None else str(self.regions),
            "ms": "" if self.ms is None else f"{self.ms:.1f}",
            "error": self.error,
        }


@dataclass
class BatchReport:
    """The outcome of `run_batch`: one entry per pair, and where summary.csv was written."""

    outcomes: list[PairOutcome] = field(default_factory=list)
    summary_path: Path | None = None

    def with_status(self, status: str) -> list[PairOutcome]:
        """The outcomes with this status."""
        return [o for o in self.outcomes if o.status == status]

    @property
    def failed(self) -> list[PairOutcome]:
        """Pairs that failed."""
        return self.with_status("failed")

    @property
    def ok(self) -> bool:
        """Whether no pair failed."""
        return not self.failed


def safe_name(name: str) -> str:
    """A pair name usable as one folder name (characters outside [A-Za-z0-9._-] become _)."""
    cleaned = _UNSAFE.sub("_", name.strip()).strip("._")
    return cleaned or "pair"


def _unique_names(jobs: list[PairJob], source: str) -> list[PairJob]:
    seen: dict[str, int] = {}
    for job in jobs:
        seen[job.name] = seen.get(job.name, 0) + 1
    duplicates = sorted(name for name, count in seen.items() if count > 1)
    if duplicates:
        raise InputError(f"{source}: pair names must be unique; repeated: {', '.join(duplicates[:10])}"
                         + (" …" if len(duplicates) > 10 else "") + " (add a name column)")
    return jobs


def _default_names(references: Sequence[Path]) -> list[str]:
    names = [safe_name(p.stem if p.is_file() or p.suffix else p.name) for p in references]
    counts = {n: names.count(n) for n in names}
    return [safe_name(f"{p.parent.name}-{n}") if counts[n] > 1 else n for p, n in zip(references, names)]


def pairs_from_csv(path: str | os.PathLike) -> list[PairJob]:
    """Read a pair list: CSV rows ``reference,comparison[,name]`` (an optional header row naming
    those columns; blank lines and lines starting with # are ignored). Relative paths are
    resolved against the CSV's folder; a missing name defaults to the reference's file stem.
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise InputError(f"pair list not found: {csv_path}")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read pair list {csv_path}: {exc}") from None
    rows = [(number, row) for number, row in enumerate(csv.reader(io.StringIO(text)), start=1)
            if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")]
    if rows and [c.strip().lower() for c in rows[0][1]][:2] == ["reference", "comparison"]:
        header = [c.strip().lower() for c in rows[0][1]]
        rows = rows[1:]
    else:
        header = ["reference", "comparison", "name"]
    if not rows:
        raise InputError(f"pair list {csv_path} has no pairs")
    base = csv_path.parent
    entries = []
    for number, row in rows:
        cells = [c.strip() for c in row]
        if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
            raise InputError(f"{csv_path}, line {number}: expected reference,comparison[,name], got "
                             f"{len(cells)} column(s)")
        values = dict(zip(header, cells))
        entries.append((base / values["reference"], base / values["comparison"], values.get("name", "")))
    defaults = _default_names([e[0] for e in entries])
    jobs = [PairJob(safe_name(name) if name else default, ref, cmp)
            for (ref, cmp, name), default in zip(entries, defaults)]
    return _unique_names(jobs, str(csv_path))


def _inputs_in(folder: Path) -> dict[str, Path]:
    from changeseg.io.geotiff import is_geotiff

    found = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        image = entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES
        if image or (entry.is_dir() and is_geotiff(entry)):
            found[entry.name] = entry
    return found


def pairs_from_dirs(reference_dir: str | os.PathLike, comparison_dir: str | os.PathLike) -> list[PairJob]:
    """Pair the images (and GeoTIFF band folders) of two folders by identical file name.

    A file with no partner in the other folder becomes a failed job naming what is missing.
    """
    ref_dir, cmp_dir = Path(reference_dir), Path(comparison_dir)
    for label, folder in (("reference", ref_dir), ("comparison", cmp_dir)):
        if not folder.is_dir():
            raise InputError(f"{label} folder not found: {folder}")
    refs, cmps = _inputs_in(ref_dir), _inputs_in(cmp_dir)
    if not refs and not cmps:
        raise InputError(f"no images in {ref_dir} or {cmp_dir}")
    names = sorted(set(refs) | set(cmps))
    stems = [safe_name(Path(n).stem) for n in names]
    labels = [safe_name(n) if stems.count(s) > 1 else s for n, s in zip(names, stems)]
    jobs = []
    for file_name, label in zip(names, labels):
        ref, cmp = refs.get(file_name), cmps.get(file_name)
        problem = ""
        if ref is None:
            problem = f"no reference named {file_name} in {ref_dir}"
        elif cmp is None:
            problem = f"no comparison named {file_name} in {cmp_dir}"
        jobs.append(PairJob(label, ref, cmp, problem))
    return _unique_names(jobs, f"{ref_dir} + {cmp_dir}")


def settings_record(job: PairJob, options: DetectOptions, model: str) -> dict[str, Any]:
    """What regions.json records about a batch pair, to recognise a complete folder later."""
    settings = asdict(options)
    return {"reference": str(Path(job.reference).resolve()) if job.reference else None,
            "comparison": str(Path(job.comparison).resolve()) if job.comparison else None,
            "model": model, "settings": json.loads(json.dumps(settings, default=str))}


def completed_summary(folder: Path, record: dict[str, Any]) -> dict[str, Any] | None:
    """The stored summary if `folder` holds a complete result for exactly this pair and settings."""
    try:
        summary = json.loads((folder / "regions.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("batch") != record or "region_count" not in summary:
        return None
    return summary


def summary_csv(outcomes: Sequence[PairOutcome]) -> str:
    """The text of summary.csv for these outcomes (a header row, then one row per pair)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for outcome in outcomes:
        writer.writerow(outcome.row())
    return buffer.getvalue()


def write_summary(path: Path, outcomes: Sequence[PairOutcome]) -> Path:
    """Write summary.csv atomically."""
    text = summary_csv(outcomes)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, ChangesegError):
        return text
    return f"internal error: {type(exc).__name__}: {text}"


def settled_outcome(job: PairJob, folder: Path, record: dict[str, Any], resume: bool) -> PairOutcome | None:
    """The outcome of a pair that needs no model — failed before running (`job.problem`) or,
    with `resume`, skipped because `folder` is already complete for `record` — else None."""
    if job.problem:
        return PairOutcome(job.name, "failed", error=job.problem)
    stored = completed_summary(folder, record) if resume else None
    if stored is None:
        return None
    return PairOutcome(job.name, "skipped", stored.get("changed_fraction"), stored.get("region_count"),
                       stored.get("timings_ms", {}).get("total"))


def process_pair(backend: ProbaBackend, job: PairJob, out: Path, options: DetectOptions, resume: bool,
                 model: str, on_tile: TileCallback | None = None) -> PairOutcome:
    """Detect one batch pair into ``out/<name>/``, or skip or fail it; never raises for a bad pair.

    The body of `run_batch`, shared with distributed runs (`changeseg.distributed`), so a pair
    folder is written, recognised as complete and reported the same way everywhere.
    """
    folder = out / job.name
    record = settings_record(job, options, model)
    settled = settled_outcome(job, folder, record, resume)
    if settled is not None:
        return settled
    started = time.perf_counter()
    try:
        clear_owned_outputs(folder)  # regions.json first: incomplete until rewritten last
        assert job.reference is not None and job.comparison is not None
        pair = load_pair(job.reference, job.comparison, options)
        summary = detect_to_folder(backend, pair, folder, options, extra={"batch": record}, on_tile=on_tile)
        return PairOutcome(job.name, "done", summary["changed_fraction"], summary["region_count"],
                           (time.perf_counter() - started) * 1e3)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # one bad pair must not stop the run
        if os.environ.get("CHANGESEG_DEBUG"):
            raise
        return failed_outcome(job.name, exc, (time.perf_counter() - started) * 1e3)


def failed_outcome(name: str, exc: Exception, ms: float) -> PairOutcome:
    """The outcome of a pair whose processing raised `exc` after `ms` milliseconds: its error in one line."""
    return PairOutcome(name, "failed", ms=ms, error=_one_line(exc))


def run_batch(backend: ProbaBackend, jobs: Sequence[PairJob], out_dir: str | os.PathLike,
              options: DetectOptions | None = None, resume: bool = True, model: str = "",
              on_pair: Callable[[PairOutcome, int, int], None] | None = None,
              on_tile: TileCallback | None = None, overlap: bool = True) -> BatchReport:
    """Detect every pair into ``out_dir/<name>/``; never stops at a bad pair (see the module docstring).

    With `resume`, pairs whose folder is already complete for the same inputs, `model` and
    options are skipped. `on_pair(outcome, index, total)` is called after each pair. With
    `overlap` (the default) the next pair is read and the last one written while the model runs
    (`changeseg.inference.batch_pipeline`); the results are the same as one pair at a time.
    """
    if overlap:
        from changeseg.inference.batch_pipeline import run_batch_overlapped

        return run_batch_overlapped(backend, jobs, out_dir, options, resume, model, on_pair, on_tile)
    options = options or DetectOptions()
    out = check_output_folder(out_dir)
    report = BatchReport(summary_path=out / SUMMARY_FILE)
    model = model or str(getattr(backend, "name", ""))
    for index, job in enumerate(jobs):
        outcome = process_pair(backend, job, out, options, resume, model, on_tile)
        report.outcomes.append(outcome)
        write_summary(report.summary_path, report.outcomes)
        if on_pair is not None:
            on_pair(outcome, index, len(jobs))
    if not jobs:
        write_summary(report.summary_path, [])
    return report
