"""`changeseg serve`: run the HTTP service (API, docs and web page) under uvicorn."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import click

from changeseg.cli.main import run_command
from changeseg.errors import ChangesegError

BACKENDS = ("torch", "onnx")


def load_predictor(model: str, backend: str, device: str = "cpu", precision: str = "auto") -> Any:
    """Load the predictor for `backend`: PyTorch `ChangeDetector` or the torch-free ONNX runtime."""
    if backend == "onnx":
        try:
            from changeseg.inference.onnx_runtime import OnnxChangeDetector
        except ImportError as exc:
            raise ChangesegError(f"the ONNX backend is unavailable ({exc}); "
                                 "install changeseg[onnx]") from None
        return OnnxChangeDetector.from_pretrained(model)
    from changeseg.inference.predictor import ChangeDetector

    return ChangeDetector.from_pretrained(model, device=device, precision=precision)


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


@click.command("serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 exposes the service to the network; it has no auth).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("-m", "--model", default="default", show_default=True,
              help="A packaged model name, a preset name, or a checkpoint folder "
                   "(an exported ONNX folder with --backend onnx).")
@click.option("--backend", type=click.Choice(BACKENDS), default="torch", show_default=True,
              help="torch: PyTorch ChangeDetector; onnx: onnxruntime, no torch import.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto (torch backend).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Numeric precision (torch backend).")
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
@click.option("--no-warmup", is_flag=True, help="Skip the small warm-up prediction at start-up.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True)
def command(host: str, port: int, model: str, backend: str, device: str, precision: str,
            max_upload_mb: float, max_pixels: int, concurrency: int, queue_size: int, timeout: float,
            no_warmup: bool, log_level: str) -> None:
    """Serve change detection over HTTP: POST /v1/detect, a web page at /, API docs at /docs."""
    try:
        import uvicorn

        from changeseg.service.app import create_app, describe_predictor
    except ImportError as exc:
        raise ChangesegError(f"the HTTP service needs its extra ({exc}); install changeseg[serve]") from None

    predictor = load_predictor(model, backend, device, precision)
    if not getattr(predictor, "trained", True):
        click.echo(f"warning: model {model!r} is UNTRAINED; its change maps are not meaningful. "
                   "Pass --model DIR with a trained checkpoint.", err=True)
    if not no_warmup:
        warm_up(predictor)
    info = describe_predictor(predictor, backend=backend)
    app = create_app(predictor, max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels,
                     max_concurrency=concurrency, queue_size=queue_size, request_timeout_s=timeout,
                     model_info=info)
    if not is_loopback(host):
        click.echo(f"warning: listening on {host}: anyone who can reach this address can use the service "
                   "(there is no authentication)", err=True)
    click.echo(f"changeseg serve: model {info['name']} ({backend}); page at http://{host}:{port}/ "
               f"and API docs at /docs", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `changeseg serve` with the given arguments; returns the exit code."""
    return run_command(command, argv, "changeseg serve")
