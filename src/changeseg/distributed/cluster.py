"""Connecting to Ray and sizing the pool of workers.

`ray_session(address)` connects for the duration of a block: ``local`` starts a Ray instance in
this process (stopped again at the end), ``auto`` joins the cluster named by ``RAY_ADDRESS`` or
the one running on this machine, ``HOST:PORT`` joins that head node (its GCS port, 6379 by
default). An address that does not answer is an `InputError` found in seconds (a plain TCP
probe before Ray's own, much longer, retries), not a traceback. When this process is already
connected (`ray.init` called by the user), the session reuses that connection and leaves it open.

`WorkerOptions` says how many workers (each holding one loaded model) and what each reserves;
`pool_size` checks that against the cluster's resources.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from changeseg.errors import InputError

INSTALL_HINT = "pip install 'changeseg[ray]'"
ADDRESS_HELP = "local, auto, or HOST:PORT of a Ray head node"
PROBE_TIMEOUT_S = 5.0
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")
_QUIET_LOGGERS = ("ray", "ray.data", "ray._private", "ray.util")


def require_ray() -> ModuleType:
    """The `ray` module, or an InputError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is part of the extra (ray[data])
    except ImportError as exc:
        raise InputError(f"Ray is not installed ({exc}); install it with {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class WorkerOptions:
    """The worker pool: `workers` actors (None: as many as the cluster's CPUs, or GPUs, allow),
    each reserving `cpus` CPUs and `gpus` GPUs and holding one loaded model."""

    workers: int | None = None
    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InputError(f"the number of Ray workers must be at least 1, got {self.workers}")
        if self.cpus < 0 or self.gpus < 0 or (self.cpus == 0 and self.gpus == 0):
            raise InputError(f"each Ray worker needs some CPUs or GPUs, got cpus={self.cpus}, "
                             f"gpus={self.gpus}")


def parse_address(address: str) -> str:
    """Check a `--ray` address: ``local``, ``auto`` or ``HOST:PORT``; returns it normalised."""
    value = address.strip()
    if value.lower() in ("local", "auto"):
        return value.lower()
    match = _HOST_PORT.match(value)
    if match is None or not 0 < int(match.group("port")) < 65536:
        raise InputError(f"bad Ray address {address!r}: expected {ADDRESS_HELP}")
    return value


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise InputError unless something accepts TCP connections at ``HOST:PORT``."""
    match = _HOST_PORT.match(address)
    if match is None:
        return  # not a plain HOST:PORT (e.g. a ray:// client address): leave it to Ray
    host, port = match.group("host").strip("[]"), int(match.group("port"))
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise InputError(f"cannot reach a Ray cluster at {address}: {reason} (start one with "
                         "`ray start --head`, or use --ray local)") from None


def preflight(address: str) -> str:
    """Check a `--ray` address before any other work: its form, and — for ``HOST:PORT``, or
    ``auto`` with ``RAY_ADDRESS`` set — that something answers there. Returns it normalised."""
    address = parse_address(address)
    target = os.environ.get("RAY_ADDRESS", "").strip() if address == "auto" else address
    if target not in ("", "local", "auto"):
        probe(target)
    return address


def _same_endpoint(a: str, b: str) -> bool:
    """Whether two HOST:PORT addresses name the same port on the same host (names resolved)."""

    def key(address: str) -> tuple[str, str]:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        with suppress(OSError):
            host = socket.gethostbyname(host)
        return host, port

    return key(a) == key(b)


def _quiet(enabled: bool) -> None:
    if not enabled:
        return
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller draws its own
    context.print_on_execution_start = False


def connect(address: str, num_cpus: int | None = None, quiet: bool = True,
            object_store_memory: int | None = None) -> bool:
    """Connect this process to Ray at `address` (see the module docstring); returns whether a new
    connection was made (False: one was already open and is reused). Raises InputError."""
    ray = require_ray()
    address = parse_address(address)
    if ray.is_initialized():
        current = str(getattr(ray.get_runtime_context(), "gcs_address", "") or "")
        if address not in ("local", "auto") and current and not _same_endpoint(current, address):
            raise InputError(f"this process is already connected to Ray at {current}, not {address}")
        _quiet(quiet)
        return False
    kwargs: dict[str, Any] = {"log_to_driver": not quiet, "include_dashboard": False,
                              "logging_level": logging.ERROR if quiet else logging.INFO}
    if quiet:
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    if address == "local":
        kwargs.update(num_cpus=num_cpus, object_store_memory=object_store_memory)
        target = "local"
    else:
        if num_cpus is not None:
            raise InputError("--ray-num-cpus applies to --ray local only (a cluster has its own CPUs)")
        target = address
        if address == "auto":
            target = os.environ.get("RAY_ADDRESS", "").strip() or "auto"
        if target != "auto":
            probe(target)
    try:
        ray.init(address=target, **kwargs)
    except Exception as exc:  # Ray raises many kinds; every one means "no cluster to use"
        if os.environ.get("CHANGESEG_DEBUG"):
            raise
        where = "the running Ray cluster (RAY_ADDRESS, or one started on this machine)" \
            if target == "auto" else target
        if type(exc).__name__ == "AuthenticationError":
            raise InputError(f"cannot connect to {where}: the cluster wants its authentication token "
                             "(set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH as on its "
                             "nodes; see docs/deploy.md)") from None
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise InputError(f"cannot connect to {where}: {text}") from None
    _quiet(quiet)
    return True


@contextmanager
def ray_session(address: str, num_cpus: int | None = None, quiet: bool = True,
                object_store_memory: int | None = None) -> Iterator[ModuleType]:
    """`connect` for the duration of a block; disconnects (stopping a ``local`` instance) at the
    end unless the connection was already open. Yields the `ray` module."""
    ray = require_ray()
    opened = connect(address, num_cpus, quiet, object_store_memory)
    try:
        yield ray
    finally:
        if opened:
            ray.shutdown()


def cluster_totals() -> dict[str, float]:
    """The cluster's total CPUs and GPUs (`ray.cluster_resources`), for sizing the pool."""
    ray = require_ray()
    resources = ray.cluster_resources()
    return {"CPU": float(resources.get("CPU", 0.0)), "GPU": float(resources.get("GPU", 0.0))}


def pool_size(options: WorkerOptions, totals: dict[str, float] | None = None) -> tuple[int, int]:
    """(workers that fit in the cluster now, workers wanted): the wanted number is
    `options.workers`, or as many as fit. Raises InputError when not even one fits."""
    totals = cluster_totals() if totals is None else totals
    limits = []
    if options.cpus > 0:
        limits.append(int(totals["CPU"] // options.cpus + 1e-9))
    if options.gpus > 0:
        limits.append(int(totals["GPU"] // options.gpus + 1e-9))
    fits = min(limits)
    if fits < 1:
        raise InputError(f"no Ray worker fits in the cluster: each needs {options.cpus:g} CPU(s) and "
                         f"{options.gpus:g} GPU(s), the cluster has {totals['CPU']:g} CPU(s) and "
                         f"{totals['GPU']:g} GPU(s)")
    wanted = options.workers or fits
    return min(fits, wanted), wanted
