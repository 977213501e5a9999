"""Where a distributed run writes: a folder every worker can reach, or an object store.

`output_store(location)` picks one of two stores with the same few operations (check the
destination, tell a finished pair from one to do, process a pair, write summary.csv, upload
a finished folder):

- `FolderStore`: a path on a file system that every node mounts at the same place (NFS,
  Lustre, GPFS, CephFS, a Kubernetes ReadWriteMany volume — or this machine's disk for
  ``--ray local``). Pairs are written in place exactly as by the local batch run
  (`changeseg.inference.batch.process_pair`: temporary names renamed into place).
- `ArrowStore`: a URI that `pyarrow.fs.FileSystem.from_uri` understands — ``s3://bucket/prefix``,
  ``gs://bucket/prefix``, ``abfs://…``, ``hdfs://…`` (where pyarrow was built with them), or
  ``file:///path``. A worker writes a pair into a private temporary folder, then uploads its
  files, regions.json last, so — as on a disk — a pair is complete exactly when its regions.json
  is there and matches. An object store's PUT is atomic (an object is there whole or not at
  all); on ``file://`` each file is uploaded to a temporary name and moved into place.
  Credentials come from each node's environment (e.g. ``AWS_*`` variables or an instance role).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from changeseg.errors import OutputError
from changeseg.inference.batch import (
    SUMMARY_FILE,
    PairJob,
    PairOutcome,
    process_pair,
    settled_outcome,
    summary_csv,
    write_summary,
)
from changeseg.inference.outputs import BRANCHES_FOLDER, OWNED_FILES, check_output_folder
from changeseg.inference.pipeline import DetectOptions

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_COMPLETION_MARKER = "regions.json"  # written last: its presence (and match) means "complete"


def is_uri(location: str | os.PathLike) -> bool:
    """Whether `location` is a URI (``scheme://…``) rather than a file system path."""
    return bool(_URI.match(str(location)))


@dataclass(frozen=True)
class FolderStore:
    """Outputs in a folder on a file system every worker mounts at the same path."""

    root: str

    @property
    def location(self) -> str:
        """Where the outputs go, for messages."""
        return self.root

    def summary_location(self) -> str:
        """Where summary.csv goes, for messages."""
        return str(Path(self.root) / SUMMARY_FILE)

    def check(self, create: bool = True) -> None:
        """Make sure the folder can be written (OutputError otherwise)."""
        check_output_folder(self.root, create=create)

    def settled(self, job: PairJob, record: dict[str, Any], resume: bool) -> PairOutcome | None:
        """The outcome of a pair needing no model (failed to form, or already complete), else None."""
        return settled_outcome(job, Path(self.root) / job.name, record, resume)

    def process(self, backend: Any, job: PairJob, options: DetectOptions, resume: bool,
                model: str) -> PairOutcome:
        """Detect one pair into ``root/<name>/`` (the local batch run's code)."""
        return process_pair(backend, job, Path(self.root), options, resume, model)

    def write_summary(self, outcomes: list[PairOutcome]) -> None:
        """Write summary.csv atomically."""
        write_summary(Path(self.root) / SUMMARY_FILE, outcomes)

    def publish(self, folder: Path, name: str) -> None:
        """Move a finished output folder, written elsewhere, to ``root/<name>`` (regions.json last)."""
        _copy_tree(folder, Path(self.root) / name if name else Path(self.root))


def _copy_tree(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in _upload_order(source):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, partial)
        os.replace(partial, destination)


def _upload_order(folder: Path) -> list[Path]:
    """Every file under `folder`, regions.json last (it marks the folder complete)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix() == _COMPLETION_MARKER)


@dataclass(frozen=True)
class ArrowStore:
    """Outputs under a pyarrow file system URI (an object store, or ``file://`` for tests)."""

    uri: str

    @property
    def location(self) -> str:
        """Where the outputs go, for messages."""
        return self.uri

    def summary_location(self) -> str:
        """Where summary.csv goes, for messages."""
        return f"{self.uri.rstrip('/')}/{SUMMARY_FILE}"

    def _fs(self) -> tuple[Any, str]:
        try:
            from pyarrow import fs
        except ImportError as exc:
            raise OutputError(f"outputs at {self.uri} need pyarrow ({exc}); install changeseg[ray]") from None
        try:
            filesystem, path = fs.FileSystem.from_uri(self.uri)
        except (ValueError, OSError, TypeError) as exc:
            raise OutputError(f"cannot use {self.uri} as an output location: {_one_line(exc)}") from None
        return filesystem, path.rstrip("/")

    def check(self, create: bool = True) -> None:
        """Make sure the location can be written: create it and write, then remove, a probe object.
        With `create=False` only the URI and that no file is in the way are checked (nothing is made)."""
        from pyarrow import fs

        filesystem, base = self._fs()
        probe = f"{base}/.changeseg-probe.{os.getpid()}"
        try:
            if filesystem.get_file_info(base).type == fs.FileType.File:
                raise OutputError(f"cannot write to {self.uri}: it is a file, not a folder")
            if not create:
                return
            filesystem.create_dir(base, recursive=True)
            with filesystem.open_output_stream(probe) as stream:
                stream.write(b"")
            filesystem.delete_file(probe)
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot write to {self.uri}: {_one_line(exc)}") from None

    def _read_text(self, relative: str) -> str | None:
        filesystem, base = self._fs()
        try:
            with filesystem.open_input_stream(f"{base}/{relative}") as stream:
                return stream.read().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def settled(self, job: PairJob, record: dict[str, Any], resume: bool) -> PairOutcome | None:
        """The outcome of a pair needing no model (failed to form, or already complete), else None."""
        if job.problem:
            return PairOutcome(job.name, "failed", error=job.problem)
        if not resume:
            return None
        text = self._read_text(f"{job.name}/{_COMPLETION_MARKER}")
        try:
            stored = json.loads(text) if text is not None else None
        except ValueError:
            stored = None
        if not isinstance(stored, dict) or stored.get("batch") != record or "region_count" not in stored:
            return None
        return PairOutcome(job.name, "skipped", stored.get("changed_fraction"), stored.get("region_count"),
                           stored.get("timings_ms", {}).get("total"))

    def process(self, backend: Any, job: PairJob, options: DetectOptions, resume: bool,
                model: str) -> PairOutcome:
        """Detect one pair into a temporary folder here, then upload it (regions.json last)."""
        from changeseg.inference.batch import settings_record

        settled = self.settled(job, settings_record(job, options, model), resume)
        if settled is not None:
            return settled
        staging = Path(tempfile.mkdtemp(prefix="changeseg-pair-"))
        try:
            outcome = process_pair(backend, job, staging, options, False, model)
            if outcome.status != "done":
                self._clear(job.name)  # a failed pair leaves no stale complete-looking folder
                return outcome
            try:
                self.publish(staging / job.name, job.name)
            except OutputError as exc:
                return PairOutcome(job.name, "failed", ms=outcome.ms, error=str(exc))
            return outcome
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _clear(self, name: str) -> None:
        """Remove what changeseg owns under ``<name>/`` (the root for ""), regions.json first, as
        `clear_owned_outputs` does in a folder."""
        filesystem, base = self._fs()
        from pyarrow import fs

        folder = f"{base}/{name}" if name else base
        try:
            for owned in OWNED_FILES:
                info = filesystem.get_file_info(f"{folder}/{owned}")
                if info.type == fs.FileType.File:
                    filesystem.delete_file(info.path)
            branches = filesystem.get_file_info(f"{folder}/{BRANCHES_FOLDER}")
            if branches.type == fs.FileType.Directory:
                filesystem.delete_dir(branches.path)
        except OSError as exc:
            raise OutputError(f"cannot clear {self.uri}/{name}: {_one_line(exc)}") from None

    def _put(self, filesystem: Any, data: bytes, path: str) -> None:
        from pyarrow import fs

        if isinstance(filesystem, fs.LocalFileSystem):  # a real file system: write, then rename
            partial = f"{path.rsplit('/', 1)[0]}/.{path.rsplit('/', 1)[1]}.{os.getpid()}.tmp"
            with filesystem.open_output_stream(partial) as stream:
                stream.write(data)
            filesystem.move(partial, path)
        else:  # an object store: one PUT is atomic
            with filesystem.open_output_stream(path) as stream:
                stream.write(data)

    def publish(self, folder: Path, name: str) -> None:
        """Upload a finished output folder to ``<uri>/<name>``, clearing older outputs first and
        writing regions.json last."""
        filesystem, base = self._fs()
        target = f"{base}/{name}" if name else base
        try:
            self._clear(name)
            filesystem.create_dir(target, recursive=True)
            for path in _upload_order(folder):
                relative = path.relative_to(folder).as_posix()
                if "/" in relative:
                    filesystem.create_dir(f"{target}/{relative.rsplit('/', 1)[0]}", recursive=True)
                self._put(filesystem, path.read_bytes(), f"{target}/{relative}")
        except OSError as exc:
            raise OutputError(f"cannot upload the outputs of {name or 'the pair'} to {self.uri}: "
                              f"{_one_line(exc)}") from None

    def write_summary(self, outcomes: list[PairOutcome]) -> None:
        """Write summary.csv (one atomic PUT, or a rename on ``file://``)."""
        filesystem, base = self._fs()
        try:
            self._put(filesystem, summary_csv(outcomes).encode("utf-8"), f"{base}/{SUMMARY_FILE}")
        except OSError as exc:
            raise OutputError(f"cannot write {self.summary_location()}: {_one_line(exc)}") from None


OutputStore = FolderStore | ArrowStore


def output_store(location: str | os.PathLike) -> OutputStore:
    """The store for `location`: `ArrowStore` for a URI, `FolderStore` (absolute path) otherwise."""
    if is_uri(location):
        return ArrowStore(str(location))
    return FolderStore(os.path.abspath(location))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
