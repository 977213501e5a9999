"""The on-device web page: the onnxruntime-web files it runs on, its model manifest, a static folder.

The page (`static/index.html`, `app.js`, `ondevice.js`, `style.css`) runs an exported ONNX model
in the browser with onnxruntime-web. Three things feed it:

- **The runtime**: the JavaScript and WebAssembly files of the npm package `onnxruntime-web`,
  pinned to `ORT_WEB_VERSION` in `web/package.json` and installed by `make` (`npm ci --prefix
  web`) into `web/node_modules/onnxruntime-web/dist/`, which is not committed. `find_web_runtime`
  looks in `$CHANGESEG_ORT_WEB` first, then in that folder of the source checkout. Only
  `RUNTIME_FILES` are used: the WebAssembly build (`ort.wasm.min.mjs` + `ort-wasm-simd-threaded.*`,
  about 14.3 MB) and the WebGPU build (`ort.webgpu.min.mjs` + `ort-wasm-simd-threaded.asyncify.*`,
  about 26.9 MB); a browser downloads one of the two.
- **The model**: an ONNX model folder (`changeseg.inference.export_cache.cached_onnx`).
- **The manifest** (`web_manifest`): what the page needs to reproduce the Python pipeline —
  class names, threshold, minimum area, input channels and scale, tile size and overlap, overlay
  colours — and where to fetch the model.

`export_web(model, out_dir)` (`changeseg export --web OUTDIR`) writes all of it as one folder that
any static web server can serve, no Python needed. Torch is imported only when the model has to
be exported (a cache miss).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from changeseg import __version__
from changeseg.errors import ChangesegError, InputError
from changeseg.inference.backend import backend_min_area
from changeseg.inference.domains import domain_calibration, model_domains
from changeseg.inference.export_cache import ONNX_FILE, cached_onnx, make_temporary_folder, resolve_source
from changeseg.inference.multiscale import model_scales
from changeseg.inference.result import CLASS_COLOURS
from changeseg.inference.tiling import DEFAULT_TILE_SIZE, DEFAULT_WEIGHT_FLOOR, TilingOptions
from changeseg.io.checkpoints import CONFIG_FILE, read_config
from changeseg.io.digest import file_sha256
from changeseg.io.images import output_error, write_json

ORT_WEB_PACKAGE = "onnxruntime-web"
ORT_WEB_VERSION = "1.30.0"  # the exact version pinned in web/package.json (a test keeps them equal)
RUNTIME_ENV = "CHANGESEG_ORT_WEB"
WASM_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
WEBGPU_FILES = ("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs",
                "ort-wasm-simd-threaded.asyncify.wasm")
RUNTIME_FILES = WASM_FILES + WEBGPU_FILES
STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_FILES = ("app.js", "ondevice.js", "style.css")
SERVER_MODE_MARK = '<body data-mode="server">'
STATIC_MODE_MARK = '<body data-mode="static">'
MANIFEST_FORMAT = "changeseg-web-model"
MANIFEST_VERSION = 1
MANIFEST_FILE = "model.json"
OVERLAY_ALPHA = 0.45  # ChangeResult.overlay's default
# Cross-origin isolation: what WebAssembly multi-threading (SharedArrayBuffer) needs from the server.
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin",
                     "Cross-Origin-Embedder-Policy": "require-corp"}
MEDIA_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
               ".json": "application/json", ".onnx": "application/octet-stream", ".html": "text/html",
               ".css": "text/css"}


class WebRuntimeError(ChangesegError):
    """The onnxruntime-web files are missing, incomplete or of another version than the pinned one."""


def project_runtime_dir() -> Path:
    """Where `make` installs the runtime in a source checkout: web/node_modules/onnxruntime-web/dist."""
    return Path(__file__).resolve().parents[3] / "web" / "node_modules" / ORT_WEB_PACKAGE / "dist"


def runtime_version(folder: Path) -> str | None:
    """The onnxruntime-web version of a `dist` folder (from the package.json beside it), if known."""
    try:
        package = json.loads((folder.parent / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(package, dict) and package.get("name") == ORT_WEB_PACKAGE:
        return str(package.get("version"))
    return None


def find_web_runtime() -> Path:
    """The folder holding the onnxruntime-web files the page needs (`RUNTIME_FILES`).

    `$CHANGESEG_ORT_WEB` when set (a folder such as `node_modules/onnxruntime-web/dist`), else
    `web/node_modules/onnxruntime-web/dist` of the source checkout. Raises WebRuntimeError, with
    the command that installs the runtime, when files are missing or the version differs from
    `ORT_WEB_VERSION`.
    """
    explicit = os.environ.get(RUNTIME_ENV, "").strip()
    folder = Path(explicit).expanduser() if explicit else project_runtime_dir()
    where = f"{folder} (from ${RUNTIME_ENV})" if explicit else str(folder)
    install = (f"install it with `make install` or `npm ci --prefix web` in the changeseg source folder, "
               f"or point ${RUNTIME_ENV} at the dist folder of {ORT_WEB_PACKAGE} {ORT_WEB_VERSION}")
    missing = [name for name in RUNTIME_FILES if not (folder / name).is_file()]
    if missing:
        what = "is not installed" if len(missing) == len(RUNTIME_FILES) else f"lacks {', '.join(missing)}"
        raise WebRuntimeError(f"the {ORT_WEB_PACKAGE} runtime for on-device mode {what} at {where}; "
                              f"{install}")
    version = runtime_version(folder)
    if version is not None and version != ORT_WEB_VERSION:
        raise WebRuntimeError(f"{ORT_WEB_PACKAGE} {version} found at {where}, but changeseg needs exactly "
                              f"{ORT_WEB_VERSION}; {install}")
    return folder


def runtime_sizes(folder: Path) -> dict[str, int]:
    """Bytes of the runtime files: each build (`wasm`, `webgpu`) and `all` of them together."""
    def total(names: tuple[str, ...]) -> int:
        return sum((folder / name).stat().st_size for name in names)

    return {"wasm": total(WASM_FILES), "webgpu": total(WEBGPU_FILES), "all": total(RUNTIME_FILES)}


def media_type(name: str) -> str:
    """The Content-Type a web server must send for one of the page's files (.mjs, .wasm, ...)."""
    return MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def web_manifest(onnx_folder: str | os.PathLike, name: str, model_url: str,
                 tile_size: int = DEFAULT_TILE_SIZE, tile_overlap: int | None = None) -> dict[str, Any]:
    """The page's description of an ONNX model folder: how to fetch it and run it like the Python pipeline.

    `model_url` is where the page downloads `model.onnx` (relative to the page). `tile_size` and
    `tile_overlap` are those of `changeseg detect` (images larger than the tile are tiled; the
    overlap defaults to a quarter tile, at most 128 pixels). Raises InputError for bad tiling
    and CheckpointError for a folder without a readable config; InputError for a model that runs at
    other scales than 1 (`metadata.scales`), which the page does not do.
    """
    folder = Path(onnx_folder)
    tiling = TilingOptions(tile_size, tile_overlap)
    config = read_config(folder)
    scales = model_scales(SimpleNamespace(config=config))
    if scales != (1.0,):  # the page predicts the pair as it is; running such a model there would be wrong
        listed = ",".join(f"{v:g}" for v in scales)
        raise InputError(f"{name} runs at scales {listed} (metadata.scales in its config.json); the "
                         "in-browser page runs models at scale 1 only: use the server")
    model_file = folder / ONNX_FILE
    holder = SimpleNamespace(config=config, name=name)  # what the backend helpers read
    onnx_info = config.metadata.get("onnx", {}) if isinstance(config.metadata.get("onnx"), dict) else {}
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "changeseg_version": __version__,
        "name": name,
        "trained": bool(config.metadata.get("trained", True)),
        "model_url": model_url,
        "model_bytes": model_file.stat().st_size,
        "model_sha256": file_sha256(model_file),
        "inputs": ["reference", "comparison"],
        "output": "probabilities",
        "in_channels": int(config.model.get("in_channels", 3)),
        "input_scale": "0-1: 8-bit values / 255 (the mean/std normalisation is inside the graph)",
        "normalization": {"mean": list(config.mean), "std": list(config.std), "inside_graph": True},
        "class_names": list(config.class_names),
        "threshold": float(config.threshold),
        "min_area": backend_min_area(SimpleNamespace(config=config)),
        # the page applies these as `changeseg detect --domain NAME` does (changeseg.inference.domains)
        "domains": {domain: dict(zip(("temperature", "no_change_bias"), domain_calibration(holder, domain)))
                    for domain in sorted(model_domains(holder))},
        # no split_depth / split_cover / box_grow: the page (ondevice.js) neither splits merged
        # regions nor grows their boxes
        "tiling": {"tile_size": tiling.tile_size, "overlap": int(tiling.overlap or 0),
                   "weight_floor": DEFAULT_WEIGHT_FLOOR},
        "overlay": {"alpha": OVERLAY_ALPHA, "colours": {k: list(v) for k, v in CLASS_COLOURS.items()},
                    "outline": [255, 255, 0]},
        "runtime": {"package": ORT_WEB_PACKAGE, "version": ORT_WEB_VERSION},
        "export": {key: onnx_info.get(key) for key in ("opset", "exporter", "max_abs_diff", "torch_version")},
    }


def page_html(mode: str) -> str:
    """The page's index.html for `mode` "server" (served by `changeseg serve`) or "static" (no server)."""
    text = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    if SERVER_MODE_MARK not in text:
        raise ChangesegError(f"{STATIC_DIR / 'index.html'} lacks {SERVER_MODE_MARK!r}")
    if mode == "server":
        return text
    if mode == "static":
        return text.replace(SERVER_MODE_MARK, STATIC_MODE_MARK, 1)
    raise InputError(f"unknown page mode {mode!r}; expected server or static")


@contextmanager
def serve_static(folder: str | os.PathLike, isolated: bool = False) -> Iterator[str]:
    """Serve an exported folder from Python's http.server on a free 127.0.0.1 port (for a local
    look, the browser tests and the latency bench); yields its URL. With `isolated`, every answer
    carries the COOP/COEP headers that WebAssembly threads need (plain http.server sends none)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # no request lines on stderr
            pass

        def end_headers(self) -> None:
            if isolated:
                for name, value in ISOLATION_HEADERS.items():
                    self.send_header(name, value)
            super().end_headers()

    handler = functools.partial(Handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass(frozen=True)
class WebExportReport:
    """What `export_web` wrote."""

    folder: Path
    model_name: str
    model_bytes: int
    runtime_bytes: dict[str, int]
    total_bytes: int
    onnx_folder: Path

    def summary(self) -> str:
        """One line: where, what, how large."""
        mb = 1e6
        return (f"{self.folder} (model {self.model_name}: {self.model_bytes / mb:.1f} MB; onnxruntime-web "
                f"{ORT_WEB_VERSION}: {self.runtime_bytes['wasm'] / mb:.1f} MB WebAssembly build, "
                f"{self.runtime_bytes['webgpu'] / mb:.1f} MB WebGPU build; "
                f"{self.total_bytes / mb:.1f} MB in all)")


README_TEXT = """changeseg on-device change detection: a static web page
=========================================================

Serve this folder with any static web server and open index.html. The model ({name}) runs in
the browser with onnxruntime-web {version}: the images never leave the device.

- Over HTTPS (or on http://localhost): plain HTTP to another address is not a secure context,
  so the browser gives it neither WebGPU nor WebAssembly threads.
- .mjs files must be served as text/javascript and .wasm files as application/wasm (most
  servers do so out of the box).
- For WebAssembly multi-threading the page must be cross-origin isolated: send
      Cross-Origin-Opener-Policy: same-origin
      Cross-Origin-Embedder-Policy: require-corp
  with every file. The _headers file does this on Netlify and Cloudflare Pages. Without them the
  page still works, on one thread.

Quick local test:  python3 -m http.server --bind 127.0.0.1 8080   (then http://127.0.0.1:8080/)
Made by changeseg {changeseg} (`changeseg export --web`); see docs/deploy.md.
"""


def _check_destination(out: Path) -> None:
    """Refuse to replace anything but an empty folder or an earlier web export."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--web output must be a folder, got an existing file: {out}")
    if out.is_dir() and any(out.iterdir()):
        try:
            manifest = json.loads((out / "model" / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise InputError(f"{out} is not empty and is not an earlier `changeseg export --web` folder; "
                             "choose a new or empty folder")


def export_web(model: str | os.PathLike, out_dir: str | os.PathLike, tile_size: int = DEFAULT_TILE_SIZE,
               tile_overlap: int | None = None, cache_dir: str | os.PathLike | None = None,
               opset: int | None = None, exporter: str = "torchscript", tolerance: float | None = None,
               log: Callable[[str], None] | None = None) -> WebExportReport:
    """Write a self-contained static on-device page for `model` to `out_dir`; returns a report.

    `model` is a packaged model name, a checkpoint folder (exported through the export cache,
    checked against PyTorch) or an exported ONNX folder. The folder holds `index.html`,
    `static/` (the page's script and style), `ort/` (the onnxruntime-web files), `model/`
    (`model.onnx`, `config.json`, `model.json` — the manifest) and `_headers` / `README.txt`
    (serving notes). It is built beside `out_dir` and renamed into place, replacing an earlier
    web export; a non-empty folder that is not one is refused. The runtime is looked for first,
    so a missing one fails before any export.
    """
    runtime = find_web_runtime()
    TilingOptions(tile_size, tile_overlap)  # bad tiling fails before any work
    out = Path(out_dir)
    _check_destination(out)
    source = resolve_source(model)
    onnx_folder = cached_onnx(model, cache_dir=cache_dir, opset=opset, exporter=exporter, tolerance=tolerance,
                              log=log)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        building = make_temporary_folder(out.parent, out.name)
    except OSError as exc:
        raise output_error(out, exc) from None
    try:
        _write_folder(building, runtime, onnx_folder, source.name, tile_size, tile_overlap)
        _swap_into_place(building, out)
    except OSError as exc:
        raise output_error(out, exc) from None
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    model_bytes = (out / "model" / ONNX_FILE).stat().st_size
    return WebExportReport(out, source.name, model_bytes, runtime_sizes(runtime), total, onnx_folder)


def _write_folder(folder: Path, runtime: Path, onnx_folder: Path, name: str, tile_size: int,
                  tile_overlap: int | None) -> None:
    (folder / "index.html").write_text(page_html("static"), encoding="utf-8")
    (folder / "static").mkdir()
    for page_file in PAGE_FILES:
        shutil.copyfile(STATIC_DIR / page_file, folder / "static" / page_file)
    (folder / "ort").mkdir()
    for runtime_file in RUNTIME_FILES:
        shutil.copyfile(runtime / runtime_file, folder / "ort" / runtime_file)
    model_dir = folder / "model"
    model_dir.mkdir()
    shutil.copyfile(onnx_folder / ONNX_FILE, model_dir / ONNX_FILE)
    shutil.copyfile(onnx_folder / CONFIG_FILE, model_dir / CONFIG_FILE)
    manifest = web_manifest(model_dir, name, f"model/{ONNX_FILE}", tile_size, tile_overlap)
    write_json(model_dir / MANIFEST_FILE, manifest)
    headers = "".join(f"  {key}: {value}\n" for key, value in ISOLATION_HEADERS.items())
    (folder / "_headers").write_text(f"/*\n{headers}", encoding="utf-8")
    (folder / "README.txt").write_text(README_TEXT.format(name=name, version=ORT_WEB_VERSION,
                                                          changeseg=__version__), encoding="utf-8")


def _swap_into_place(building: Path, out: Path) -> None:
    """Rename the finished folder onto `out`; an earlier export there is moved aside, then deleted."""
    if not out.exists():
        os.rename(building, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, old / out.name)
    try:
        os.rename(building, out)
    except OSError:
        os.rename(old / out.name, out)  # put the earlier export back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)

