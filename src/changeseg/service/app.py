"""The HTTP service: a FastAPI app around any change predictor.

`create_app(predictor)` wraps anything with the `ChangeDetector.predict` interface (the
PyTorch `ChangeDetector`, the torch-free ONNX runtime, or a test double) in an app with:

- `POST /v1/detect` — two uploaded images (multipart fields `reference`, `comparison`) and
  optional form fields `threshold`, `min_area`, `resize`, `align`, `return` → JSON summary
  (changed fraction, regions, image size, timings, model) with, on request, base64 PNGs;
- `POST /v1/detect/{mask|overlay|probability|comparison}` — the same form, answered with one PNG;
- `GET /healthz`, `GET /v1/models`, the OpenAPI docs at `/docs`, and the web page at `/`.

Limits: the request body is counted while it is read and refused with 413 past
`max_upload_bytes`; images over `max_pixels` are refused with 413 before they are decoded;
at most `max_concurrency` predictions run at once (in a dedicated thread pool) with at most
`queue_size` more waiting, beyond which requests get 503 at once; a request not answered
within `request_timeout_s` (queue wait included) gets 504. Bad uploads get 422 with a
`{"detail": "..."}` message. Clients can only upload bytes: no file system path is read.

This module imports no torch: with the ONNX backend the server stays torch-free.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from io import BytesIO
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image

from changeseg import __version__
from changeseg.errors import ChangesegError, InputError
from changeseg.inference.result import ChangeResult
from changeseg.io.images import encode_png, read_image, to_uint8_rgb

log = logging.getLogger("changeseg.service")

STATIC_DIR = Path(__file__).resolve().parent / "static"
IMAGE_KINDS = ("mask", "overlay", "probability", "comparison")
DEFAULT_MAX_UPLOAD_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_PIXELS = 4096 * 4096

T = TypeVar("T")


class Predictor(Protocol):
    """What the service needs from a model: `ChangeDetector.predict`'s signature."""

    def predict(self, reference: Any, comparison: Any, threshold: float | None = None,
                min_area: int | None = None, resize: bool = False) -> ChangeResult:
        """Detect changes between two images given as H×W×C numpy arrays."""
        ...


class ImageKind(str, Enum):
    """The images a client can ask for (see `render_image`)."""

    mask = "mask"
    overlay = "overlay"
    probability = "probability"
    comparison = "comparison"


@dataclass(frozen=True)
class ServiceLimits:
    """The service's resource limits (see `create_app`)."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_concurrency: int = 1
    queue_size: int = 8
    request_timeout_s: float = 60.0

    def check(self) -> None:
        """Raise InputError if any limit is out of range."""
        if self.max_upload_bytes < 1:
            raise InputError(f"max_upload_bytes must be positive, got {self.max_upload_bytes}")
        if self.max_pixels < 1:
            raise InputError(f"max_pixels must be positive, got {self.max_pixels}")
        if self.max_concurrency < 1:
            raise InputError(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.queue_size < 0:
            raise InputError(f"queue_size must be 0 or more, got {self.queue_size}")
        if not self.request_timeout_s > 0:
            raise InputError(f"request_timeout_s must be positive, got {self.request_timeout_s}")


class PixelLimitError(ChangesegError):
    """An uploaded image with more pixels than the service accepts."""


class QueueFullError(Exception):
    """Every prediction slot and queue place is taken."""


# ---------------------------------------------------------------- upload size limit


class _BodyTooLarge(Exception):
    """Raised from `receive` once a request body passes the upload limit."""


class UploadLimitMiddleware:
    """Pure ASGI middleware refusing request bodies over `max_bytes` with 413.

    A declared Content-Length over the limit is refused before any of the body is read; a
    chunked or under-declared body is counted as it streams in and cut off (413) as soon as
    it passes the limit, so an upload is never buffered beyond `max_bytes`.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return (f"upload too large: the request body may be at most {self.max_bytes} bytes "
                f"({self.max_bytes / 2**20:.1f} MiB) for both images together")

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_json(send, 413, {"detail": self._detail()}, close=True)
            return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> dict:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if exceeded:  # whatever the app makes of the cut-off body, the answer is our 413
                return
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await _send_json(send, 413, {"detail": self._detail()}, close=True)


def _content_length(scope: dict) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Callable, status: int, payload: dict, close: bool = False) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- bounded work queue


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


# ---------------------------------------------------------------- decoding and rendering


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode uploaded image bytes into an H×W×C array (RGB order), checking the pixel limit.

    The size is read from the file header and checked against `max_pixels` before the
    pixels are decoded, so a small file that expands to a huge image is refused cheaply.
    """
    if not data:
        raise InputError(f"{name}: the uploaded file is empty")
    size = _header_size(data, name, max_pixels)
    if size is not None:
        _check_pixels(size[0], size[1], name, max_pixels)
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is not None:
        if array.ndim == 3 and array.shape[2] == 3:
            array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
        elif array.ndim == 3 and array.shape[2] == 4:
            array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
    else:
        array = _decode_with_pil(data)
    if array is None:
        raise InputError(f"{name}: not a readable image (upload a PNG, JPEG, TIFF, BMP or WebP file)")
    _check_pixels(array.shape[1], array.shape[0], name, max_pixels)
    return read_image(array, name)


def _header_size(data: bytes, name: str, max_pixels: int) -> tuple[int, int] | None:
    try:
        with Image.open(BytesIO(data)) as image:
            return image.size
    except Image.DecompressionBombError:
        raise PixelLimitError(f"{name}: image has far more than the {max_pixels} pixels allowed") from None
    except Exception:  # PIL cannot parse the header; OpenCV may still decode it
        return None


def _decode_with_pil(data: bytes) -> np.ndarray | None:
    try:
        with Image.open(BytesIO(data)) as image:
            return np.asarray(image)
    except Exception:  # any PIL failure means "not an image we can read"
        return None


def _check_pixels(width: int, height: int, name: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise PixelLimitError(f"{name}: image is {width}×{height} = {width * height} pixels; "
                              f"the limit is {max_pixels} pixels")


def render_image(result: ChangeResult, kind: str) -> np.ndarray:
    """The array behind one requested image.

    `mask`: 0/255 changed pixels; `overlay`: the comparison tinted where it changed;
    `probability`: change probability 0-255; `comparison`: the comparison as the model saw it
    (resized or aligned onto the reference's grid), 8-bit RGB.
    """
    if kind == "mask":
        return result.mask.astype(np.uint8) * 255
    if kind == "overlay":
        return result.overlay()
    if kind == "probability":
        return (np.clip(result.probability, 0.0, 1.0) * 255).round().astype(np.uint8)
    if kind == "comparison":
        return to_uint8_rgb(result.comparison)
    raise InputError(f"unknown image {kind!r}; choose from {', '.join(IMAGE_KINDS)}")


def parse_image_list(text: str | None) -> list[str]:
    """Parse the `return` field ("mask,overlay", spaces allowed) into known image names."""
    kinds = [part.strip().lower() for part in (text or "").split(",") if part.strip()]
    unknown = [k for k in kinds if k not in IMAGE_KINDS]
    if unknown:
        raise InputError(f"return: unknown image {unknown[0]!r}; choose any of {', '.join(IMAGE_KINDS)}")
    return list(dict.fromkeys(kinds))


ALIGN_OFF = ("", "false", "no", "off", "0")
ALIGN_ON = ("true", "yes", "on", "1")
ALIGN_METHODS = ("sift", "orb")


def parse_align(text: str | None) -> bool | str:
    """Parse the `align` field: off (False), on with the default method (True), or a method name."""
    value = (text or "").strip().lower()
    if value in ALIGN_OFF:
        return False
    if value in ALIGN_ON:
        return True
    if value in ALIGN_METHODS:
        return value
    raise InputError(f"align: expected true, false, {' or '.join(ALIGN_METHODS)}, got {text!r}")


def accepts_keyword(function: Callable, name: str) -> bool:
    """Whether `function` takes a keyword argument `name` (explicitly or through **kwargs)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def describe_predictor(predictor: Any, backend: str | None = None) -> dict[str, Any]:
    """A JSON-ready description of a predictor for `/v1/models` (no server file paths)."""
    raw_name = str(getattr(predictor, "name", "") or "model")
    name = Path(raw_name).name or raw_name
    config = getattr(predictor, "config", None)
    info: dict[str, Any] = {
        "name": name,
        "backend": backend or type(predictor).__name__,
        "trained": bool(getattr(predictor, "trained", True)),
        "class_names": list(getattr(predictor, "class_names", None) or ["unchanged", "changed"]),
        "default_threshold": getattr(config, "threshold", None),
    }
    for attr in ("device", "precision"):
        if getattr(predictor, attr, None) is not None:
            info[attr] = str(getattr(predictor, attr))
    return info


# ---------------------------------------------------------------- the app


# Form fields shared by both detect endpoints (module level: FastAPI resolves string annotations here).
ReferenceField = Annotated[UploadFile, File(description="The reference (before) image file.")]
ComparisonField = Annotated[UploadFile, File(description="The comparison (after) image file.")]
ThresholdField = Annotated[float | None, Form(ge=0.0, le=1.0, description=(
    "Change-probability threshold in [0, 1] (default: the model's own)."))]
MinAreaField = Annotated[int | None, Form(ge=0, description=(
    "Drop regions smaller than this many pixels (default: the model's own, 0 for most models)."))]
ResizeField = Annotated[bool, Form(description=(
    "Resize the comparison to the reference's size instead of refusing different sizes."))]

AlignField = Annotated[str, Form(description=(
    "Register the comparison onto the reference first, for pairs not taken from the same viewpoint: "
    "`true` (SIFT), `sift` or `orb`. Pixels outside the overlap are reported as unknown, never changed."))]
ReturnField = Annotated[str, Form(alias="return", description=(
    "Comma-separated images to include as base64 PNGs under `images`: any of mask, overlay, "
    "probability, comparison (the comparison as the model saw it: resized or aligned), "
    "e.g. `mask,overlay`."))]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "Upload larger than the body limit, or an image over the pixel limit."},
    422: {"description": "Bad upload or field: missing file, not an image, sizes differ, bad value."},
    503: {"description": "Every prediction slot and queue place is taken; retry later."},
    504: {"description": "The prediction did not finish within the request timeout."},
}


def create_app(predictor: Predictor, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_concurrency: int = 1, queue_size: int = 8,
               request_timeout_s: float = 60.0, model_info: dict[str, Any] | None = None) -> FastAPI:
    """Build the FastAPI app serving `predictor` (see the module docstring for the API).

    `predictor` needs only `.predict(reference, comparison, threshold=, min_area=, resize=)`
    returning a `ChangeResult`; it is called from worker threads, at most `max_concurrency`
    at once. `model_info` is what `/v1/models` reports (default: `describe_predictor`).
    """
    limits = ServiceLimits(max_upload_bytes, max_pixels, max_concurrency, queue_size, request_timeout_s)
    limits.check()
    info = dict(model_info) if model_info is not None else describe_predictor(predictor)
    info.setdefault("name", "model")
    work = WorkQueue(max_concurrency, queue_size)
    supports_align = accepts_keyword(predictor.predict, "align")
    info.setdefault("supports_align", supports_align)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        work.shutdown()

    docs_assets = offline_docs_assets()
    app = FastAPI(
        title="changeseg",
        version=__version__,
        description="Change detection between a reference and a comparison image (the C-3PO method). "
                    "Upload two images to `/v1/detect`; the web page is at `/`.",
        lifespan=lifespan,
        # With local copies of the docs' JavaScript the pages below work offline; else FastAPI's CDN ones.
        docs_url=None if docs_assets else "/docs",
        redoc_url=None if docs_assets else "/redoc",
    )
    if docs_assets is not None:
        add_offline_docs(app, docs_assets)
    app.add_middleware(UploadLimitMiddleware, max_bytes=max_upload_bytes)
    app.state.predictor = predictor
    app.state.work = work
    app.state.limits = limits
    app.state.model_info = info

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    async def run_detection(reference: UploadFile, comparison: UploadFile, threshold: float | None,
                            min_area: int | None, resize: bool, align_text: str,
                            images: list[str]) -> dict[str, Any]:
        try:
            align = parse_align(align_text)
        except InputError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        if align and not supports_align:
            raise HTTPException(422, detail="align: this server's model backend cannot align pairs; "
                                            "send images taken from the same viewpoint")
        options: dict[str, Any] = {"align": align} if align else {}
        admitted = time.perf_counter()
        ref_bytes = await reference.read()
        cmp_bytes = await comparison.read()

        def job() -> dict[str, Any]:
            started = time.perf_counter()
            ref = decode_upload(ref_bytes, "reference", limits.max_pixels)
            cmp = decode_upload(cmp_bytes, "comparison", limits.max_pixels)
            decoded = time.perf_counter()
            result = predictor.predict(ref, cmp, threshold=threshold, min_area=min_area, resize=resize,
                                       **options)
            predicted = time.perf_counter()
            encoded = {kind: encode_png(render_image(result, kind)) for kind in images}
            summary = result.summary()
            summary["model"] = info["name"]
            summary["timings_ms"] = {
                **summary.get("timings_ms", {}),
                "queue": round((started - admitted) * 1e3, 2),
                "decode": round((decoded - started) * 1e3, 2),
                "encode": round((time.perf_counter() - predicted) * 1e3, 2),
            }
            return {"summary": summary, "images": encoded}

        try:
            output = await work.run(job, limits.request_timeout_s)
        except QueueFullError:
            raise HTTPException(503, detail=f"server busy: {limits.max_concurrency} prediction(s) running "
                                            f"and {limits.queue_size} waiting; retry later",
                                headers={"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            raise HTTPException(504, detail="prediction did not finish within "
                                            f"{limits.request_timeout_s:g} s (queue wait included)") from None
        except PixelLimitError as exc:
            raise HTTPException(413, detail=str(exc)) from None
        except ChangesegError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        except Exception:
            log.exception("prediction failed")
            raise HTTPException(500, detail="internal error while predicting (see the server log)") from None
        output["summary"]["timings_ms"]["server_total"] = round((time.perf_counter() - admitted) * 1e3, 2)
        return output

    @app.post("/v1/detect", responses=ERROR_RESPONSES, tags=["detect"])
    async def detect(
        reference: ReferenceField,
        comparison: ComparisonField,
        threshold: ThresholdField = None,
        min_area: MinAreaField = None,
        resize: ResizeField = False,
        align: AlignField = "",
        return_images: ReturnField = "",
    ) -> JSONResponse:
        """Detect what changed between two uploaded images.

        Returns the model name, image `width`/`height`, `threshold`, `changed_fraction`,
        `changed_pixels`, `region_count`, `regions` (id, box [x0, y0, x1, y1) in pixels, area,
        centroid, mean/max score, label) and `timings_ms`; with `return=mask,overlay,...` also
        `images`: {name: base64-encoded PNG}. The mask is 0/255, the probability 0-255.
        """
        try:
            kinds = parse_image_list(return_images)
        except InputError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        output = await run_detection(reference, comparison, threshold, min_area, resize, align, kinds)
        payload = output["summary"]
        if kinds:
            payload["images"] = {k: base64.b64encode(v).decode("ascii") for k, v in output["images"].items()}
        return JSONResponse(payload)

    @app.post("/v1/detect/{image}", responses={200: {"content": {"image/png": {}},
                                                     "description": "The requested image as PNG."},
                                                **ERROR_RESPONSES}, tags=["detect"],
              response_class=Response)
    async def detect_image(
        image: ImageKind,
        reference: ReferenceField,
        comparison: ComparisonField,
        threshold: ThresholdField = None,
        min_area: MinAreaField = None,
        resize: ResizeField = False,
        align: AlignField = "",
    ) -> Response:
        """Detect changes and answer with one PNG: `mask` (0/255), `overlay`, `probability` (0-255) or
        `comparison` (as the model saw it: resized or aligned onto the reference).

        The headers `X-Changed-Fraction` and `X-Region-Count` carry the headline numbers.
        """
        output = await run_detection(reference, comparison, threshold, min_area, resize, align,
                                     [image.value])
        summary = output["summary"]
        return Response(output["images"][image.value], media_type="image/png", headers={
            "Content-Disposition": f'inline; filename="{image.value}.png"',
            "X-Changed-Fraction": str(summary["changed_fraction"]),
            "X-Region-Count": str(summary["region_count"]),
        })

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness and load: the model's name and the running/waiting prediction counts."""
        return {"status": "ok", "version": __version__, "model": info["name"], **work.stats()}

    @app.get("/v1/models", tags=["service"])
    async def models() -> dict[str, Any]:
        """The model this server runs and the limits it applies to requests."""
        return {"models": [info], "limits": {
            "max_upload_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels,
            "max_concurrency": limits.max_concurrency, "queue_size": limits.queue_size,
            "request_timeout_s": limits.request_timeout_s}}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def offline_docs_assets() -> Path | None:
    """The folder of Swagger UI / ReDoc files shipped by the `fastapi-offline` package, if installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).resolve().parent / "static"
    needed = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
    return folder if all((folder / name).is_file() for name in needed) else None


def add_offline_docs(app: FastAPI, assets: Path) -> None:
    """Serve `/docs` (Swagger UI) and `/redoc` from local files, so they work without internet."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=f"{root}{app.openapi_url}", title="changeseg API",
                                   swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
                                   swagger_favicon_url=f"{root}/docs-assets/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title="changeseg API",
                              redoc_js_url=f"{root}/docs-assets/redoc.standalone.js",
                              redoc_favicon_url=f"{root}/docs-assets/favicon.png", with_google_fonts=False)


def _validation_message(exc: RequestValidationError) -> str:
    """One readable line for FastAPI's list of validation errors."""
    messages = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
        field = ".".join(location) or "request"
        if error.get("type") == "missing":
            messages.append(f"missing form field {field!r}")
        else:
            messages.append(f"{field}: {error.get('msg', 'invalid value')}")
    return "; ".join(messages) or "invalid request"
