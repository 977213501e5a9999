"""`OpenVinoChangeDetector`: an exported ONNX model compiled by OpenVINO for the CPU, without torch.

The same ONNX model folder that `OnnxChangeDetector` runs (`model.onnx` + `config.json`, from
`changeseg export` or the export cache) is read by OpenVINO and compiled for the CPU device,
with the inference precision hint set to bf16 where the CPU has native bf16 arithmetic
(AVX512-BF16 or AMX) and to f32 elsewhere or on request. A quantised folder (QDQ int8, from
`changeseg.inference.quantize`) runs its int8 convolutions as int8.

Only the session differs from the onnxruntime backend: `OpenVinoSession` gives a compiled
model onnxruntime's `get_inputs` / `get_outputs` / `run` surface, and the detector is an
`OnnxChangeDetector`, so reading, channel adaptation, scaling, tiling, TTA, regions and
outputs are the torch-free path's own code. Nothing here imports torch.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from changeseg.errors import CheckpointError, ConfigError
from changeseg.inference.backend import cpu_supports_bf16
from changeseg.inference.onnx_runtime import (
    OUTPUT_NAME,
    OnnxChangeDetector,
    folder_precision,
    import_runtime,
    physical_cores,
    resolve_onnx_path,
)
from changeseg.io.checkpoints import read_config

PRECISIONS = ("auto", "fp32", "bf16")
HINTS = {"fp32": "f32", "bf16": "bf16"}


def import_openvino() -> Any:
    """The `openvino` module, or a CheckpointError saying how to install it."""
    return import_runtime("openvino", "OpenVINO runtime", "openvino")


def resolve_precision(precision: str) -> str:
    """fp32 or bf16 for an OpenVINO precision request: auto is bf16 on CPUs with native bf16."""
    if precision not in PRECISIONS:
        raise ConfigError(f"OpenVINO precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return precision


@dataclass(frozen=True)
class _Port:
    """An input or output as onnxruntime describes it: a name and a shape (ints or names)."""

    name: str
    shape: list[int | str]


def _port(port: Any) -> _Port:
    shape = [int(d.get_length()) if d.is_static else "?" for d in port.get_partial_shape()]
    return _Port(port.get_any_name(), shape)


class OpenVinoSession:
    """A compiled OpenVINO model behind onnxruntime's `InferenceSession` surface.

    Each thread gets its own infer request (a request is not safe to share between threads),
    so `serve --concurrency N` and overlapped batch runs can call `run` concurrently.
    """

    def __init__(self, compiled: Any, precision_hint: str) -> None:
        self.compiled = compiled
        self.precision_hint = precision_hint
        self._local = threading.local()

    def get_inputs(self) -> list[_Port]:
        """The model's inputs (name, shape)."""
        return [_port(p) for p in self.compiled.inputs]

    def get_outputs(self) -> list[_Port]:
        """The model's outputs (name, shape)."""
        return [_port(p) for p in self.compiled.outputs]

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Infer once; the named outputs (all when None) as arrays this caller owns."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        results = request.infer(feeds)
        names = output_names or [p.get_any_name() for p in self.compiled.outputs]
        by_name = {port.get_any_name(): value for port, value in results.items()}
        return [np.array(by_name[name], copy=True) for name in names]


def compile_onnx(model_path: str | os.PathLike, precision: str = "fp32", threads: int | None = None,
                 source: str = "") -> OpenVinoSession:
    """Read an ONNX model with OpenVINO and compile it for the CPU (latency hint, one stream, no pinning).

    `precision` is "fp32" or "bf16" (the inference precision hint); `threads` the inference
    threads (default: the physical cores). Raises CheckpointError when the model cannot be read
    or compiled.
    """
    ov = import_openvino()
    hint = HINTS[precision]
    # No CPU pinning: on a CPU shared with other jobs a pinned thread waits for its busy core
    # (measured here: bf16 at 512² 463 ms pinned, 337 ms unpinned, the same minute).
    config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
              "INFERENCE_NUM_THREADS": int(threads or physical_cores()), "ENABLE_CPU_PINNING": False}
    try:
        core = ov.Core()
        compiled = core.compile_model(core.read_model(os.fspath(model_path)), "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long multi-line texts
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{source or model_path}: OpenVINO cannot compile the model "
                              f"({first_line})") from None
    return OpenVinoSession(compiled, hint)


class OpenVinoChangeDetector(OnnxChangeDetector):
    """An exported change model run by OpenVINO on the CPU: same interface as `ChangeDetector`."""

    backend_name = "openvino"

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, threads: int | None = None,
                        precision: str = "auto") -> OpenVinoChangeDetector:  # type: ignore[override]
        """Load an ONNX model folder (`model.onnx` + `config.json`) or a `.onnx` file beside a config.

        `precision`: "auto" (bf16 where the CPU has native bf16, else fp32), "fp32" or "bf16";
        a quantised (int8) folder reports "int8". `threads` sets OpenVINO's inference threads
        (default: the physical cores). Raises CheckpointError for anything missing or invalid.
        """
        model_path, folder = resolve_onnx_path(name_or_path)
        config = read_config(folder)
        hint = resolve_precision(precision)
        session = compile_onnx(model_path, hint, threads, source=str(model_path))
        label = "int8" if folder_precision(config) == "int8" else hint
        trained = bool(config.metadata.get("trained", True))
        return cls(session, config, name=str(name_or_path), trained=trained, precision=label)


__all__ = ["OUTPUT_NAME", "OpenVinoChangeDetector", "OpenVinoSession", "compile_onnx", "import_openvino",
           "resolve_precision"]
