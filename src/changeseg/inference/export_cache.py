"""The export cache: a model exported to ONNX once, checked against PyTorch, then reused.

`cached_onnx(model)` returns an ONNX model folder (`model.onnx` + `config.json`, as written
by `changeseg.inference.export.export_onnx`) for a packaged model name or a checkpoint
folder. The first call exports the model, with the same parity check as `changeseg export`
(onnxruntime against PyTorch fp32 on a seeded pair; a failing check caches nothing); later
calls find the entry and return at once. The on-device mode of `changeseg serve` and
`changeseg export --web` use it.

Where: ``$CHANGESEG_CACHE/onnx/`` when that variable is set, else
``$XDG_CACHE_HOME/changeseg/onnx/``, else ``~/.cache/changeseg/onnx/``. One folder per entry,
named ``NAME-KEY``: NAME is the packaged model's name or the checkpoint folder's name, KEY
the first 16 hex digits of a SHA-256 over the checkpoint's `config.json` and
`model.safetensors` bytes, the exporter, the opset and the changeseg version. A changed
weight or config file therefore gives a new entry; old entries stay until removed (deleting
the folder is always safe).

Entries are written atomically: the export goes to a hidden temporary folder beside the
entries, `cache.json` (what was exported, when, and the parity-check numbers) is written
last, and the folder is renamed into place. A reader never sees a half-written entry; two
processes exporting the same model at once both succeed and one entry survives. Temporary
folders left by a killed export are removed after a day.

Looking an entry up (`lookup`, `resolve_source`, `source_key`) imports no torch; only an
actual export does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from changeseg import __version__
from changeseg.errors import CheckpointError
from changeseg.io.checkpoints import CONFIG_FILE, WEIGHTS_FILE, packaged_models, read_config
from changeseg.io.digest import update_digest
from changeseg.io.images import write_json

CACHE_ENV = "CHANGESEG_CACHE"
ONNX_SUBDIR = "onnx"
ENTRY_FILE = "cache.json"
ONNX_FILE = "model.onnx"  # the same name as changeseg.inference.onnx_runtime.ONNX_FILE
CACHE_FORMAT = 1
STALE_TEMP_S = 24 * 3600  # temporary folders older than this are leftovers of killed exports


@dataclass(frozen=True)
class ModelSource:
    """What gets exported: a checkpoint folder, the name its entry carries, and whether it is ONNX already."""

    name: str
    folder: Path
    is_onnx: bool = False


def cache_root() -> Path:
    """The changeseg cache folder: $CHANGESEG_CACHE, else $XDG_CACHE_HOME/changeseg, else ~/.cache/changeseg.
    """
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "changeseg"


def resolve_source(model: str | os.PathLike) -> ModelSource:
    """The checkpoint folder behind a packaged model name or a folder path (no torch import).

    An exported ONNX folder (`model.onnx` + `config.json`, no weights) is accepted as it is
    (`is_onnx`). Preset names are refused: an untrained preset has no fixed weights to export
    and cache. Raises CheckpointError naming the problem.
    """
    key = os.fspath(model)
    path = Path(key)
    if path.is_dir():
        if (path / WEIGHTS_FILE).is_file() and (path / CONFIG_FILE).is_file():
            return ModelSource(_entry_name(path.resolve().name), path)
        if (path / ONNX_FILE).is_file() and (path / CONFIG_FILE).is_file():
            return ModelSource(_entry_name(path.resolve().name), path, is_onnx=True)
        raise CheckpointError(f"{path} is neither a checkpoint folder ({WEIGHTS_FILE} + {CONFIG_FILE}) "
                              f"nor an exported ONNX folder ({ONNX_FILE} + {CONFIG_FILE})")
    packaged = packaged_models()
    if key in packaged:
        return ModelSource(key, packaged[key])
    if path.suffix or os.sep in key:
        raise CheckpointError(f"model folder not found: {key}")
    known = ", ".join(packaged) or "(none)"
    raise CheckpointError(f"model {key!r} cannot be exported to the cache: it is not a checkpoint folder "
                          f"or a packaged model (packaged: {known}); a preset is an untrained network "
                          "with no weights to export")


def _entry_name(name: str) -> str:
    """A folder-name-safe version of a model name (letters, digits, '.', '_', '-')."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    return safe[:64]


def source_key(folder: str | os.PathLike, opset: int | None = None, exporter: str = "torchscript") -> str:
    """The SHA-256 (hex) naming a checkpoint's cache entry: config and weight bytes, export settings."""
    root = Path(folder)
    digest = hashlib.sha256(f"changeseg-onnx-cache/{CACHE_FORMAT}/{__version__}/{exporter}/"
                            f"{'default' if opset is None else int(opset)}\n".encode())
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        digest.update(f"{name}\n".encode())
        try:
            update_digest(digest, root / name)
        except OSError as exc:
            raise CheckpointError(f"cannot read {root / name}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def entry_folder(source: ModelSource, key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the cache entry of `source` with `key` lives (whether or not it exists yet)."""
    root = Path(cache_dir) if cache_dir is not None else cache_root() / ONNX_SUBDIR
    return root / f"{source.name}-{key[:16]}"


def is_complete(folder: Path, key: str | None = None) -> bool:
    """Whether `folder` is a finished entry: model, config and a `cache.json` (for `key`, when given)."""
    try:
        record = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or (key is not None and record.get("key") != key):
        return False
    model = folder / ONNX_FILE
    return model.is_file() and model.stat().st_size == record.get("model_bytes") and \
        (folder / CONFIG_FILE).is_file()


def lookup(model: str | os.PathLike, cache_dir: str | os.PathLike | None = None, opset: int | None = None,
           exporter: str = "torchscript") -> Path | None:
    """The finished cache entry for `model` (see `cached_onnx`), or None when it has not been exported yet.

    An ONNX folder is its own entry. Torch-free.
    """
    source = resolve_source(model)
    if source.is_onnx:
        return source.folder
    key = source_key(source.folder, opset, exporter)
    folder = entry_folder(source, key, cache_dir)
    return folder if is_complete(folder, key) else None


def cached_onnx(model: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                opset: int | None = None, exporter: str = "torchscript", tolerance: float | None = None,
                log: Callable[[str], None] | None = None) -> Path:
    """The ONNX model folder (`model.onnx` + `config.json`) of a packaged model or checkpoint folder.

    Exported and checked against PyTorch (`export_onnx`, the same check as `changeseg export`,
    with `opset`, `exporter` and `tolerance` passed on) into the cache on the first call, reused
    afterwards. `cache_dir` replaces the entries' folder (default: `cache_root() / "onnx"`).
    An exported ONNX folder is returned as it is. `log(message)` hears about an export.
    Raises CheckpointError for an unknown model, ExportError / ExportCheckError when the export
    fails (nothing is cached then), OutputError when the cache cannot be written.
    """
    source = resolve_source(model)
    if source.is_onnx:
        return source.folder
    key = source_key(source.folder, opset, exporter)
    final = entry_folder(source, key, cache_dir)
    if is_complete(final, key):
        return final
    root = final.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from changeseg.io.images import output_error

        raise output_error(root, exc) from None
    _remove_stale_temporaries(root)
    from changeseg.inference.export import DEFAULT_TOLERANCE, export_onnx

    if log is not None:
        log(f"exporting {source.name} to ONNX for the cache ({final}); this happens once per model")
    temporary = make_temporary_folder(root, final.name)
    try:
        report = export_onnx(source.folder, temporary, opset=opset, exporter=exporter,
                             tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance)
        config = read_config(temporary)
        write_json(temporary / ENTRY_FILE, {
            "format": "changeseg-onnx-cache", "format_version": CACHE_FORMAT, "key": key,
            "name": source.name, "source": str(source.folder.resolve()),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "changeseg_version": __version__, "opset": report.opset, "exporter": report.exporter,
            "model_bytes": report.size_bytes, "max_abs_diff": report.max_abs_diff,
            "mask_agreement": report.mask_agreement, "tolerance": report.tolerance,
            "class_names": config.class_names, "seconds": round(report.seconds, 2)})
        _publish(temporary, final, key)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return final


def _publish(temporary: Path, final: Path, key: str) -> None:
    """Rename the finished temporary folder onto `final`; another process's finished entry wins."""
    try:
        os.rename(temporary, final)
        return
    except OSError:
        if is_complete(final, key):  # another process finished the same export first
            return
    # `final` is a damaged entry (e.g. emptied by hand): replace it
    shutil.rmtree(final, ignore_errors=True)
    try:
        os.rename(temporary, final)
    except OSError as exc:
        if not is_complete(final, key):
            from changeseg.io.images import output_error

            raise output_error(final, exc) from None


def _remove_stale_temporaries(root: Path) -> None:
    now = time.time()
    for path in root.glob(".*.tmp"):
        try:
            if path.is_dir() and now - path.stat().st_mtime > STALE_TEMP_S:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def make_temporary_folder(parent: Path, name: str) -> Path:
    """A new hidden folder `.NAME.RANDOM.tmp` in `parent`, with the permissions of any new folder.

    (Unlike `tempfile.mkdtemp`, which makes it private: a cache entry or a web root must stay readable.)
    """
    for _ in range(100):
        candidate = parent / f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"cannot make a temporary folder in {parent}")


def describe_entry(folder: str | os.PathLike) -> dict:
    """The `cache.json` record of an entry ({} for an ONNX folder that did not come from the cache)."""
    try:
        record = json.loads((Path(folder) / ENTRY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
