"""`OpenVinoChangeDetector`: an exported ONNX model compiled by OpenVINO for the CPU, without torch.

The same ONNX model folder that `OnnxChangeDetector` runs (`model.onnx` + `config.json`, from
`changeseg export` or the export cache) is read by OpenVINO and compiled for the CPU device,
with the inference precision hint set to bf16 where the CPU has native bf16 arithmetic
(AVX512-BF16 or AMX) and to f32 elsewhere or on request. A quantised folder (QDQ int8, from
`changeseg.inference.quantize`) runs its int8 convolutions as int8.

Only the session differs from the onnxruntime backend: `OpenVinoSession` gives the model,
compiled for each input shape it meets (static shapes run faster), onnxruntime's `get_inputs` /
`get_outputs` / `run` surface, and the detector is an `OnnxChangeDetector`, so reading, channel
adaptation, scaling, tiling, TTA, regions and outputs are the torch-free path's own code.
Nothing here imports torch.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from changeseg.errors import CheckpointError, ConfigError
from changeseg.hardware import cpu_supports_bf16
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


_CORE_LOCK = threading.Lock()
_CORE: list[Any] = []


def shared_core() -> Any:
    """The process's one `ov.Core`, made on first use and kept until the process ends.

    Every Core loads its own CPU plugin, and each CPU plugin points the signal stack of the
    thread that made it at a fresh mapping, which it unmaps when it goes. Two plugins freed in the
    order they were made leave that thread's signal stack pointing at unmapped memory, and the
    next signal with a handler (a Python `signal.signal` handler, PyTorch's data-loader SIGCHLD
    handler) kills the process with SIGSEGV. One Core, never freed, makes one plugin that never goes.
    """
    with _CORE_LOCK:
        if not _CORE:
            _CORE.append(import_openvino().Core())
        return _CORE[0]


@dataclass(frozen=True)
class _Port:
    """An input or output as onnxruntime describes it: a name and a shape (ints or names)."""

    name: str
    shape: list[int | str]


def _port(port: Any) -> _Port:
    shape = [int(d.get_length()) if d.is_static else "?" for d in port.get_partial_shape()]
    return _Port(port.get_any_name(), shape)


class OpenVinoSession:
    """An OpenVINO model behind onnxruntime's `InferenceSession` surface, compiled per input shape.

    The exported model has dynamic batch and image sizes; OpenVINO's CPU plugin runs a model
    compiled for one static shape 10-30 % faster than the dynamic one (bf16, 256² to 1024²,
    docs/benchmarks.md "OpenVINO static shapes"). So the first `STATIC_SHAPES` distinct input
    shapes each get a model compiled for that shape (tiles and batch runs repeat a few shapes),
    and any further shape the dynamic model, compiled once, so a server fed many sizes does not
    compile on every request. Each thread gets its own infer requests (a request is not safe to
    share between threads), so `serve --concurrency N` and overlapped batch runs can call `run`
    concurrently.
    """

    STATIC_SHAPES = 4

    def __init__(self, model: Any, config: dict[str, Any], precision_hint: str, model_path: str,
                 source: str = "") -> None:
        self.model = model  # as read, dynamic shapes; each static compile reshapes a clone
        self.inputs = [_port(p) for p in model.inputs]
        self.outputs = [_port(p) for p in model.outputs]
        self.model_path = model_path
        self.config = config
        self.precision_hint = precision_hint
        self.source = source
        self._compiled: dict[tuple[tuple[int, ...], ...] | None, Any] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def get_inputs(self) -> list[_Port]:
        """The model's inputs (name, shape)."""
        return list(self.inputs)

    def get_outputs(self) -> list[_Port]:
        """The model's outputs (name, shape)."""
        return list(self.outputs)

    def compiled_shapes(self) -> list[tuple[tuple[int, ...], ...] | None]:
        """The input shapes compiled so far (None for the dynamic model), in compile order."""
        with self._lock:
            return list(self._compiled)

    def _compiled_for(self, shapes: tuple[tuple[int, ...], ...]) -> Any:
        """The compiled model that runs inputs of these shapes, compiling it on first use."""
        with self._lock:
            if shapes in self._compiled:
                return self._compiled[shapes]
            static = sum(key is not None for key in self._compiled) < self.STATIC_SHAPES
            key = shapes if static else None
            if key not in self._compiled:
                model = self.model
                if static:
                    model = self.model.clone()  # 0.02 s, against 0.14 s to read the file again
                    model.reshape({p.get_any_name(): list(shape) for p, shape in zip(model.inputs, shapes)})
                self._compiled[key] = compile_model(shared_core(), model, self.config, self.source)
            return self._compiled[key]

    def run(self, output_names: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Infer once; the named outputs (all when None) as arrays this caller owns."""
        names_in = [port.name for port in self.inputs]
        compiled = self._compiled_for(tuple(tuple(feeds[name].shape) for name in names_in))
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get(id(compiled))
        if request is None:
            request = requests[id(compiled)] = compiled.create_infer_request()
        results = request.infer(feeds)
        names = output_names or [port.name for port in self.outputs]
        by_name = {port.get_any_name(): value for port, value in results.items()}
        return [np.array(by_name[name], copy=True) for name in names]


def _first_line(exc: Exception) -> str:
    """OpenVINO raises RuntimeError subclasses with long multi-line texts: their first line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_model(core: Any, model_path: str, source: str) -> Any:
    """`core.read_model`; CheckpointError (one line) when OpenVINO cannot read the file."""
    try:
        return core.read_model(model_path)
    except Exception as exc:
        raise CheckpointError(f"{source}: OpenVINO cannot read the model ({_first_line(exc)})") from None


def compile_model(core: Any, model: Any, config: dict[str, Any], source: str) -> Any:
    """`core.compile_model` for the CPU; CheckpointError (one line) when OpenVINO cannot."""
    try:
        return core.compile_model(model, "CPU", config)
    except Exception as exc:
        raise CheckpointError(f"{source}: OpenVINO cannot compile the model ({_first_line(exc)})") from None


def compile_onnx(model_path: str | os.PathLike, precision: str = "fp32", threads: int | None = None,
                 source: str = "") -> OpenVinoSession:
    """Read an ONNX model with OpenVINO for the CPU (latency hint, one stream, no pinning).

    `precision` is "fp32" or "bf16" (the inference precision hint); `threads` the inference
    threads (default: the physical cores). The model is compiled for each input shape on its
    first run (`OpenVinoSession`), so loading costs only the read. Raises CheckpointError when the
    model cannot be read, and the first run when it cannot be compiled.
    """
    core = shared_core()  # CheckpointError (how to install) when OpenVINO is missing
    hint = HINTS[precision]
    source = source or os.fspath(model_path)
    # No CPU pinning: on a CPU shared with other jobs a pinned thread waits for its busy core
    # (measured here: bf16 at 512² 463 ms pinned, 337 ms unpinned, the same minute).
    config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
              "INFERENCE_NUM_THREADS": int(threads or physical_cores()), "ENABLE_CPU_PINNING": False}
    model = read_model(core, os.fspath(model_path), source)
    return OpenVinoSession(model, config, hint, os.fspath(model_path), source)


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
