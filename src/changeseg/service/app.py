"""The HTTP service: a FastAPI app around any change predictor.

`create_app(predictor)` wraps anything with the `ChangeDetector.predict` interface (the
PyTorch `ChangeDetector`, the torch-free ONNX runtime, or a test double) in an app with:

- `POST /v1/detect` — two uploaded images (multipart fields `reference`, `comparison`) and
  optional form fields `threshold`, `min_area`, `resize`, `align`, `domain`, `return` → JSON summary
  (changed fraction, regions, image size, timings, model) with, on request, base64 PNGs;
- `POST /v1/detect/{mask|overlay|probability|comparison}` — the same form, answered with one PNG;
- `GET /healthz`, `GET /v1/models`, `GET /metrics` (Prometheus), the OpenAPI docs at `/docs`,
  and the web page at `/`.

Limits (`limits.py`, `work_queue.py`): the request body is counted while it is read and refused
with 413 past `max_upload_bytes`; images over `max_pixels` are refused with 413 before they are
decoded; at most `max_concurrency` predictions run at once (in a dedicated thread pool) with at
most `queue_size` more waiting, beyond which requests get 503 at once; a request not answered
within `request_timeout_s` (queue wait included) gets 504. Bad uploads get 422 with a
`{"detail": "..."}` message. Clients can only upload bytes: no file system path is read.

With `api_keys`, every `/v1/` route needs `Authorization: Bearer KEY` (`auth.py`: 401 / 403).
Every answer carries an `X-Request-ID` and is counted in `/metrics` and logged as one JSON line
(`access.py`, `metrics.py`).

This module imports no torch: with the ONNX backend the server stays torch-free.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Protocol

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from changeseg import __version__
from changeseg.errors import ChangesegError, InputError
from changeseg.errors import PixelLimitError as DeclaredPixelLimitError
from changeseg.inference.domains import model_domains
from changeseg.inference.result import ChangeResult
from changeseg.io.images import decode_image, encode_png, read_image, to_uint8_rgb
from changeseg.service.access import RequestObserver, current_request_id
from changeseg.service.auth import ApiKeyMiddleware, add_bearer_to_openapi
from changeseg.service.limits import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    ServiceLimits,
    UploadLimitMiddleware,
)
from changeseg.service.metrics import METRICS_CONTENT_TYPE, ServiceMetrics
from changeseg.service.ondevice import OnDeviceModel, add_on_device_routes
from changeseg.service.web_bundle import ISOLATION_HEADERS
from changeseg.service.work_queue import QueueFullError, WorkQueue

log = logging.getLogger("changeseg.service")

STATIC_DIR = Path(__file__).resolve().parent / "static"
IMAGE_KINDS = ("mask", "overlay", "probability", "comparison")


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


class PixelLimitError(ChangesegError):
    """An uploaded image with more pixels than the service accepts."""


# ---------------------------------------------------------------- decoding and rendering


def decode_upload(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Decode uploaded image bytes into an H×W×C array (RGB order, EXIF orientation applied).

    `changeseg.io.images.decode_image` reads the header first: a format outside the
    allow-list (PNG, JPEG, TIFF, WebP, BMP) is refused (422) and a declared size over
    `max_pixels` is refused (413), both before a pixel is decoded, so a small file that
    expands to a huge image costs microseconds, not gigabytes.
    """
    if not data:
        raise InputError(f"{name}: the uploaded file is empty")
    try:
        array = decode_image(data, name, max_pixels)
    except DeclaredPixelLimitError as exc:  # raised from the header: answered 413
        raise PixelLimitError(str(exc)) from None
    return read_image(array, name)


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
        "domains": sorted(model_domains(predictor)),
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
DomainField = Annotated[str, Form(description=(
    "Where the pair comes from, when the model has a calibration for it (`/v1/models` lists its "
    "`domains`; `default`: `fixed-camera`): the probabilities then carry that calibration."))]
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
               request_timeout_s: float = 60.0, model_info: dict[str, Any] | None = None,
               api_keys: Sequence[str] = (), model_load_s: float | None = None,
               on_device: OnDeviceModel | None = None) -> FastAPI:
    """Build the FastAPI app serving `predictor` (see the module docstring for the API).

    `predictor` needs only `.predict(reference, comparison, threshold=, min_area=, resize=)`
    returning a `ChangeResult`; it is called from worker threads, at most `max_concurrency`
    at once. `model_info` is what `/v1/models` reports (default: `describe_predictor`).
    `api_keys` (see `auth.load_api_keys`), when not empty, are required on every `/v1/` route;
    `model_load_s`, the time the model took to load, is reported in `/metrics`. `on_device` serves
    the page's on-device mode (`service/ondevice.py`: the model's ONNX file and manifest under
    `/v1/ondevice/`, the onnxruntime-web files under `/ort/`); without it the mode is off.
    """
    limits = ServiceLimits(max_upload_bytes, max_pixels, max_concurrency, queue_size, request_timeout_s)
    limits.check()
    info = dict(model_info) if model_info is not None else describe_predictor(predictor)
    info.setdefault("name", "model")
    work = WorkQueue(max_concurrency, queue_size)
    supports_align = accepts_keyword(predictor.predict, "align")
    info.setdefault("supports_align", supports_align)
    info.setdefault("domains", describe_predictor(predictor)["domains"])
    metrics = ServiceMetrics(work.stats, str(info["name"]), str(info.get("backend", "")), __version__,
                             model_load_s)

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
    # The last added middleware runs first: observe everything, then authenticate, then count bytes.
    app.add_middleware(UploadLimitMiddleware, max_bytes=max_upload_bytes)
    if api_keys:
        app.add_middleware(ApiKeyMiddleware, keys=tuple(api_keys))
        add_bearer_security_to_docs(app)
    app.add_middleware(RequestObserver, metrics=metrics, routes=app.router.routes)
    app.state.predictor = predictor
    app.state.work = work
    app.state.limits = limits
    app.state.model_info = info
    app.state.metrics = metrics
    info["on_device"] = add_on_device_routes(app, on_device)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    async def run_detection(reference: UploadFile, comparison: UploadFile, threshold: float | None,
                            min_area: int | None, resize: bool, align_text: str,
                            images: list[str], domain: str = "") -> dict[str, Any]:
        try:
            align = parse_align(align_text)
        except InputError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        if align and not supports_align:
            raise HTTPException(422, detail="align: this server's model backend cannot align pairs; "
                                            "send images taken from the same viewpoint")
        options: dict[str, Any] = {"align": align} if align else {}
        domain = domain.strip()
        if domain:  # checked here so the answer never names the model's path on the server
            if domain not in info["domains"]:
                known = ", ".join(info["domains"]) or "none"
                raise HTTPException(422, detail=f"domain: the model has no calibration for {domain!r} "
                                                f"(its domains: {known})")
            options["domain"] = domain
        admitted = time.perf_counter()
        ref_bytes = await reference.read()
        cmp_bytes = await comparison.read()

        def job() -> dict[str, Any]:
            started = time.perf_counter()
            with metrics.prediction.time():
                return work_on_pair(started)

        def work_on_pair(started: float) -> dict[str, Any]:
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
            log.exception("prediction failed (request %s)", current_request_id())
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
        domain: DomainField = "",
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
        output = await run_detection(reference, comparison, threshold, min_area, resize, align, kinds,
                                     domain)
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
        domain: DomainField = "",
    ) -> Response:
        """Detect changes and answer with one PNG: `mask` (0/255), `overlay`, `probability` (0-255) or
        `comparison` (as the model saw it: resized or aligned onto the reference).

        The headers `X-Changed-Fraction` and `X-Region-Count` carry the headline numbers.
        """
        output = await run_detection(reference, comparison, threshold, min_area, resize, align,
                                     [image.value], domain)
        summary = output["summary"]
        return Response(output["images"][image.value], media_type="image/png", headers={
            "Content-Disposition": f'inline; filename="{image.value}.png"',
            "X-Changed-Fraction": str(summary["changed_fraction"]),
            "X-Region-Count": str(summary["region_count"]),
        })

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness and load: the model's name, the running/waiting prediction counts, and whether
        the API routes need a key (`auth`: `bearer` or `none`)."""
        return {"status": "ok", "version": __version__, "model": info["name"],
                "auth": "bearer" if api_keys else "none", **work.stats()}

    @app.get("/v1/models", tags=["service"])
    async def models() -> dict[str, Any]:
        """The model this server runs and the limits it applies to requests."""
        return {"models": [info], "limits": limits.as_dict()}

    @app.get("/metrics", tags=["service"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}})
    async def prometheus_metrics() -> Response:
        """Prometheus metrics: requests by route and status, latency histograms, queue depth,
        in-flight requests, running predictions and the model's load time."""
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        # Cross-origin isolated, so on-device mode may use WebAssembly threads (service/ondevice.py).
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=ISOLATION_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def add_bearer_security_to_docs(app: FastAPI) -> None:
    """Declare bearer keys on the `/v1/` routes in the app's OpenAPI schema (an Authorize button in /docs)."""
    build_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_bearer_to_openapi(build_schema())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


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
