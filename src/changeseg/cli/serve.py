"""`changeseg serve`: run the HTTP service (API, docs and web page) under uvicorn."""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from changeseg.cli.main import run_command
from changeseg.errors import ChangesegError

BACKENDS = ("auto", "torch", "onnx", "openvino")  # = changeseg.inference.loading.BACKENDS
PRECISIONS = ("auto", "fp32", "bf16", "int8")


def load_predictor(model: str, backend: str, device: str = "cpu", precision: str = "auto") -> Any:
    """Load the predictor for `backend` (auto, torch, onnx or openvino; see `changeseg.inference.loading`).

    One-off work (an ONNX export into the cache, an int8 quantisation) and notes go to stderr.
    """
    from changeseg.cli.detect import load_backend

    return load_backend(backend, model, device, precision)


def warm_up(predictor: Any) -> None:
    """Run one small prediction so the first client request does not pay one-off start-up costs."""
    import numpy as np

    blank = np.zeros((64, 64, 3), np.uint8)
    predictor.predict(blank, blank)


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_note(host: str, has_keys: bool) -> str | None:
    """The warning (no key) or note (keys over plain HTTP) for listening on a non-loopback `host`."""
    if is_loopback(host):
        return None
    if has_keys:
        return (f"note: listening on {host} with API keys; over plain HTTP the keys travel in clear text, "
                "so put a TLS proxy in front (docs/deploy.md)")
    return (f"warning: listening on {host} with no API key: anyone who can reach this address can use "
            "the service (pass --api-key-file or set CHANGESEG_API_KEYS)")


@click.command("serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 exposes the service to the network: give it API keys "
                   "and a TLS proxy).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("-m", "--model", default="default", show_default=True,
              help="A packaged model name, a preset name, or a checkpoint folder "
                   "(or an exported ONNX folder, with --backend onnx or openvino).")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="auto: the fastest installed for the device and model; torch: PyTorch; onnx: "
                   "onnxruntime; openvino: OpenVINO on the CPU (onnx and openvino: no torch import; a "
                   "model is exported once into the cache).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto (torch backend).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="auto: int8 where its validation verdict passes (onnx, openvino), else bf16 on CPUs with "
                   "native bf16 (torch, openvino), else fp32; int8: the quantised model (onnx, openvino).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=25.0, show_default=True,
              help="Largest request body (both images together), in MiB; larger gets 413.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=4096 * 4096, show_default=True,
              help="Largest image, in pixels (width × height); larger gets 413.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Predictions run at the same time.")
@click.option("--queue", "queue_size", type=click.IntRange(min=0), default=8, show_default=True,
              help="Requests allowed to wait for a free slot; beyond that, 503.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds a request may take, queue wait included; beyond that, 504.")
@click.option("--api-key-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File of API keys, one per line; every /v1/ request then needs "
                   "'Authorization: Bearer KEY'. Keys in $CHANGESEG_API_KEYS (comma-separated) count too.")
@click.option("--no-access-log", is_flag=True, help="Do not write the one-JSON-line-per-request access log.")
@click.option("--no-warmup", is_flag=True, help="Skip the small warm-up prediction at start-up.")
@click.option("--no-on-device", is_flag=True,
              help="Do not offer the page's on-device mode (which lets clients download the model as ONNX).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True)
def command(host: str, port: int, model: str, backend: str, device: str, precision: str,
            max_upload_mb: float, max_pixels: int, concurrency: int, queue_size: int, timeout: float,
            api_key_file: Path | None, no_access_log: bool, no_warmup: bool, no_on_device: bool,
            log_level: str) -> None:
    """Serve change detection over HTTP: POST /v1/detect, a web page at /, API docs at /docs.

    Prometheus metrics at /metrics. SIGTERM lets the requests in flight finish, then the server
    exits with status 0.
    """
    try:
        import uvicorn  # noqa: F401  (checked here so a missing extra is one clear line)

        from changeseg.service.app import create_app, describe_predictor
        from changeseg.service.auth import load_api_keys
        from changeseg.service.ondevice import on_device_for
        from changeseg.service.server import configure_access_log, serve
    except ImportError as exc:
        raise ChangesegError(f"the HTTP service needs its extra ({exc}); install changeseg[serve]") from None

    api_keys = load_api_keys(api_key_file)
    loading = time.perf_counter()
    predictor = load_predictor(model, backend, device, precision)
    model_load_s = time.perf_counter() - loading
    if not getattr(predictor, "trained", True):
        click.echo(f"warning: model {model!r} is UNTRAINED; its change maps are not meaningful. "
                   "Pass --model DIR with a trained checkpoint.", err=True)
    if not no_warmup:
        warm_up(predictor)
    info = describe_predictor(predictor, backend=getattr(predictor, "backend_name", backend))
    app = create_app(predictor, max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels,
                     max_concurrency=concurrency, queue_size=queue_size, request_timeout_s=timeout,
                     model_info=info, api_keys=api_keys, model_load_s=model_load_s,
                     on_device=None if no_on_device else on_device_for(model, str(info["name"])))
    exposure = exposure_note(host, bool(api_keys))
    if exposure:
        click.echo(exposure, err=True)
    auth = f"API key required ({len(api_keys)} key(s))" if api_keys else "no API key"
    from changeseg.inference.loading import describe_backend

    running = describe_backend(predictor, backend)
    click.echo(f"changeseg serve: model {info['name']} ({running}, loaded in {model_load_s:.1f} s), {auth}; "
               f"page at http://{host}:{port}/, API docs at /docs, metrics at /metrics", err=True)
    configure_access_log(enabled=not no_access_log)
    # A request can take at most --timeout (then 504): that bounds the wait for in-flight requests.
    stopped_by = serve(app, host, port, log_level, shutdown_timeout_s=math.ceil(timeout) + 5)
    if stopped_by:
        click.echo(f"changeseg serve: stopped by {stopped_by}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg serve` with the given arguments; returns the exit code."""
    return run_command(command, argv, "changeseg serve")
