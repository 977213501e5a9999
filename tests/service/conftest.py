"""Fixtures for the HTTP service: predictors for the in-process app and a real `changeseg serve`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from changeseg.inference.result import ChangeResult, match_size, result_from_probabilities
from tests.conftest import PROJECT_ROOT, require_real_data
from tests.service.chromium import browser  # noqa: F401  (the headless Chromium fixture)

SERVER_START_TIMEOUT_S = 120.0


class DifferencePredictor:
    """A torch-free stand-in: the change probability is the mean absolute pixel difference."""

    name = "/server/side/path/difference"
    trained = True
    class_names = ["unchanged", "changed"]

    def predict(self, reference: np.ndarray, comparison: np.ndarray, threshold: float | None = None,
                min_area: int | None = None, resize: bool = False) -> ChangeResult:
        """Changed where the two images differ by more than half the range."""
        comparison = match_size(reference, comparison, resize)
        diff = np.abs(reference[..., :3].astype(np.float32) - comparison[..., :3].astype(np.float32))
        change = (diff.mean(axis=2) / 255.0).astype(np.float32)
        probs = np.stack([1.0 - change, change])
        return result_from_probabilities(probs, comparison, 0.5 if threshold is None else threshold,
                                         min_area or 0, self.class_names, self.name)


class BlockingPredictor(DifferencePredictor):
    """Blocks every prediction until `release` is set, so tests can fill slots and the queue."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def predict(self, reference: np.ndarray, comparison: np.ndarray, threshold: float | None = None,
                min_area: int = 0, resize: bool = False) -> ChangeResult:
        """Signal `entered`, wait for `release` (at most 30 s), then predict."""
        self.entered.release()
        self.release.wait(30)
        return super().predict(reference, comparison, threshold, min_area, resize)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    """A running `changeseg serve` subprocess on loopback."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        """What the server has written to stdout/stderr so far."""
        return self.log_path.read_text(errors="replace")


SERVE = ["-m", "changeseg.cli.main", "serve"]


def start_server(args: list[str], log_path: Path, entry: list[str] = SERVE,
                 env: dict[str, str] | None = None) -> LiveServer:
    """Start `changeseg serve ARGS` on a free loopback port and wait until /healthz answers.

    `entry` is what follows `python` (default `-m changeseg.cli.main serve`; see gated_server.py),
    `env` extra environment variables for the server.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, *entry, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
               *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                   cwd=PROJECT_ROOT)
    server = LiveServer(url, process, log_path)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"changeseg serve exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_server(server)
    pytest.fail(f"changeseg serve did not answer within {SERVER_START_TIMEOUT_S:.0f} s:\n{server.log()}")


def stop_server(server: LiveServer) -> None:
    """Stop the server process (SIGTERM, then SIGKILL after 10 s)."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)


@pytest.fixture(scope="session")
def live_server(tiny_checkpoint, tmp_path_factory) -> Iterator[LiveServer]:
    """`changeseg serve` with the tiny checkpoint on a free 127.0.0.1 port; stopped at the end."""
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    server = start_server(["--model", str(tiny_checkpoint), "--backend", "torch", "--precision", "fp32",
                           "--max-upload-mb", "4", "--concurrency", "1", "--queue", "4"], log_path)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="session")
def domain_server(tiny_with_domain, tmp_path_factory) -> Iterator[LiveServer]:
    """`changeseg serve` with the tiny checkpoint that records a `fixed-camera` domain calibration."""
    log_path = tmp_path_factory.mktemp("serve-domain") / "server.log"
    server = start_server(["--model", str(tiny_with_domain), "--backend", "torch", "--precision", "fp32",
                           "--no-warmup"], log_path)
    try:
        yield server
    finally:
        stop_server(server)


API_KEYS = ("file-key-" + "a" * 24, "file-key-" + "b" * 24)  # in the key file
ENV_API_KEY = "env-key-" + "c" * 24  # in CHANGESEG_API_KEYS


def gated_entry(gate: Path) -> list[str]:
    """`start_server`'s entry for `changeseg serve` around a GatedPredictor waiting for `gate`."""
    return ["-m", "tests.service.gated_server", str(gate)]


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory) -> Iterator[LiveServer]:
    """`changeseg serve --api-key-file` (two keys, a third in CHANGESEG_API_KEYS) around a test double.

    The double's gate is open, so it answers at once like DifferencePredictor.
    """
    folder = tmp_path_factory.mktemp("auth-serve")
    gate = folder / "gate"
    gate.touch()
    key_file = folder / "keys.txt"
    key_file.write_text(f"# changeseg API keys\n{API_KEYS[0]}\n\n{API_KEYS[1]}\n")
    server = start_server(["--api-key-file", str(key_file), "--no-warmup"], folder / "server.log",
                          entry=gated_entry(gate), env={"CHANGESEG_API_KEYS": ENV_API_KEY})
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def tsunami_pair() -> tuple[Path, Path]:
    """A real street-view pair (PCD TSUNAMI, 1024×224): reference t0, comparison t1."""
    root = require_real_data("tsunami")
    return root / "t0" / "00000000.jpg", root / "t1" / "00000000.jpg"
