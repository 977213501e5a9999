"""The server side of the page's on-device mode: the model's manifest, the ONNX file, the runtime.

Routes added to the app by `add_on_device_routes`:

- `GET /v1/ondevice/manifest.json` — the model's web manifest (`web_bundle.web_manifest`): class
  names, threshold, minimum area, tiling, overlay colours and `model_url`. The first request
  prepares the ONNX model (a PyTorch model is exported once into the export cache,
  `changeseg.inference.export_cache`, and checked against PyTorch), so it can take a while;
  later ones answer at once. 404 with the reason when on-device mode is not available.
- `GET /v1/ondevice/model.onnx` — the exported model itself.
- `GET /ort/{file}` — the onnxruntime-web files (`web_bundle.RUNTIME_FILES` only).

The two model routes live under `/v1/`, so with API keys they need the bearer key like every
other API route (the page sends it); the runtime files are a public library and stay open, like
the page itself. The page and the runtime are answered with the cross-origin isolation headers,
so the browser allows WebAssembly threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse

from changeseg.errors import ChangesegError
from changeseg.inference.export_cache import ONNX_FILE
from changeseg.service.web_bundle import (
    ISOLATION_HEADERS,
    RUNTIME_FILES,
    WebRuntimeError,
    find_web_runtime,
    media_type,
    web_manifest,
)

log = logging.getLogger("changeseg.service")

MANIFEST_ROUTE = "/v1/ondevice/manifest.json"
MODEL_ROUTE = "/v1/ondevice/model.onnx"
RUNTIME_ROUTE = "/ort/{name}"


class OnDeviceModel:
    """The model the page runs in the browser: prepared on first use, then kept.

    `prepare()` returns an ONNX model folder (`model.onnx` + `config.json`); it runs at most
    once at a time, in a worker thread, and its result (or its error) is kept. `unavailable`,
    when given, is the reason on-device mode is off (e.g. a missing runtime, an untrained preset).
    """

    def __init__(self, name: str, prepare: Callable[[], Path], runtime_dir: Path | None = None,
                 unavailable: str | None = None) -> None:
        self.name = name
        self._prepare = prepare
        self.runtime_dir = runtime_dir
        self.unavailable = unavailable if unavailable or runtime_dir is not None else \
            "the onnxruntime-web runtime is not installed on the server"
        self._lock = threading.Lock()
        self._folder: Path | None = None
        self._manifest: dict[str, Any] | None = None
        self._error: str | None = None

    @classmethod
    def for_model(cls, name: str, prepare: Callable[[], Path],
                  unavailable: str | None = None) -> OnDeviceModel:
        """An on-device model with the runtime `web_bundle.find_web_runtime` finds (none: mode off)."""
        try:
            runtime = find_web_runtime()
        except WebRuntimeError as exc:
            return cls(name, prepare, None, unavailable or str(exc))
        return cls(name, prepare, runtime, unavailable)

    def status(self) -> dict[str, Any]:
        """For `/v1/models`: {"available": bool, "reason": why not (when not)}."""
        reason = self.unavailable or self._error
        return {"available": reason is None, **({"reason": reason} if reason else {}),
                "manifest": MANIFEST_ROUTE.lstrip("/")}

    def folder(self) -> Path:
        """The prepared ONNX folder (preparing it on the first call); ChangesegError when unavailable."""
        if self.unavailable:
            raise ChangesegError(self.unavailable)
        with self._lock:
            if self._folder is None:
                if self._error:
                    raise ChangesegError(self._error)
                try:
                    self._folder = Path(self._prepare())
                except ChangesegError as exc:
                    self._error = f"the model could not be prepared for on-device use: {exc}"
                    raise ChangesegError(self._error) from None
            return self._folder

    def manifest(self) -> dict[str, Any]:
        """The web manifest of the prepared model (`model_url` relative to the page)."""
        folder = self.folder()
        with self._lock:
            if self._manifest is None:
                try:
                    self._manifest = web_manifest(folder, self.name, MODEL_ROUTE.lstrip("/"))
                except ChangesegError as exc:  # e.g. a model that runs at scales the page does not
                    self._error = f"the model cannot run on the device: {exc}"
                    raise ChangesegError(self._error) from None
            return self._manifest


def on_device_for(model: str | os.PathLike, name: str) -> OnDeviceModel:
    """The on-device model of `changeseg serve --model MODEL` (served under the name `name`).

    A packaged model or checkpoint folder is exported through the export cache on first use; an
    ONNX folder (`--backend onnx`) is served as it is. A model that cannot be cached (an untrained
    preset, a lone .onnx file) or a missing runtime leaves the mode off, with the reason.
    """
    from changeseg.inference.export_cache import cached_onnx, resolve_source

    unavailable = None
    try:
        resolve_source(model)
    except ChangesegError as exc:
        unavailable = str(exc)

    def prepare() -> Path:
        return cached_onnx(model, log=log.warning)

    return OnDeviceModel.for_model(name, prepare, unavailable)


def add_on_device_routes(app: FastAPI, on_device: OnDeviceModel | None) -> dict[str, Any]:
    """Add the manifest, model and runtime routes to `app`; returns the status for `/v1/models`."""
    if on_device is None:
        return {"available": False, "reason": "this server was started without on-device mode"}

    async def prepared(what: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(what)
        except ChangesegError as exc:
            raise HTTPException(404, detail=f"on-device mode is not available: {exc}") from None

    @app.get(MANIFEST_ROUTE, tags=["on-device"])
    async def on_device_manifest() -> JSONResponse:
        """The web manifest of the model the page can run in the browser (see docs/deploy.md).

        The first request exports the model to ONNX (once, into the export cache) and may take
        a minute; 404 with the reason when on-device mode is not available.
        """
        manifest = await prepared(on_device.manifest)
        return JSONResponse(manifest, headers={"Cache-Control": "no-cache"})

    @app.get(MODEL_ROUTE, tags=["on-device"], response_class=FileResponse,
             responses={200: {"content": {"application/octet-stream": {}}, "description": "model.onnx"}})
    async def on_device_model() -> FileResponse:
        """The exported ONNX model (inputs `reference`, `comparison`: N×C×H×W float32 in 0–1)."""
        folder = await prepared(on_device.folder)
        return FileResponse(folder / ONNX_FILE, media_type="application/octet-stream",
                            headers={"Cache-Control": "no-cache"}, filename=f"{on_device.name}.onnx")

    @app.get(RUNTIME_ROUTE, include_in_schema=False)
    async def runtime_file(name: str) -> FileResponse:
        if name not in RUNTIME_FILES or on_device.runtime_dir is None:
            raise HTTPException(404, detail=f"no runtime file {name!r}")
        return FileResponse(os.path.join(on_device.runtime_dir, name), media_type=media_type(name),
                            headers={"Cache-Control": "public, max-age=86400", **ISOLATION_HEADERS})

    return on_device.status()
