"""A throwaway multi-node Ray cluster on this machine, for tests, benchmarks and trying things out.

`LocalCluster(nodes=2)` runs ``ray start --head`` and ``ray start --address=…`` as separate
processes (``--block``, so each one owns the Ray processes it starts), all on 127.0.0.1, each
node with its own temporary folder, ports and CPU count, and token authentication with a
token of its own. `stop()` sends each ``ray start`` SIGTERM, which stops that node's Ray
processes, and waits; it never touches Ray processes it did not start (unlike ``ray stop``,
which stops every Ray process of the user). Drivers connect to `address` with `env` (the
authentication settings) in their environment:

    with LocalCluster(nodes=2) as cluster:
        subprocess.run(["changeseg", "detect", "--pairs", "pairs.csv", "-o", "out",
                        "--ray", cluster.address], env=cluster.env, check=True)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

READY = "block forever"  # what `ray start --block` prints once the node is up and registered


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ray_executable() -> str:
    """The `ray` command beside this Python, else the one on PATH."""
    beside = Path(sys.executable).with_name("ray")
    if beside.exists():
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise RuntimeError("the `ray` command is not installed (pip install 'changeseg[ray]')")
    return found


class LocalCluster:
    """A head node and `nodes - 1` worker nodes on this machine (see the module docstring)."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 150,
                 start_timeout_s: float = 180.0, stop_timeout_s: float = 60.0) -> None:
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, got {nodes}")
        self.nodes = nodes
        self.cpus_per_node = cpus_per_node
        self.object_store_mb = object_store_mb
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        # short: Ray's Unix sockets live under it and their paths are limited to ~107 characters
        self.root = Path(tempfile.mkdtemp(prefix="csray-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self._ports: set[int] = set()
        self.port = self._new_port()
        self.address = f"127.0.0.1:{self.port}"
        token = self.root / "token"
        token.write_text(secrets.token_hex(32), encoding="utf-8")
        token.chmod(0o600)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "1"}
        self.env.pop("RAY_ADDRESS", None)
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def _new_port(self) -> int:
        """A free port this cluster has not handed out yet: the OS may offer a port again as soon
        as its probe closes, and Ray refuses to start when two of its components share one."""
        while True:
            port = free_port()
            if port not in self._ports:
                self._ports.add(port)
                return port

    def _start_node(self, name: str, head: bool) -> None:
        folder = self.root / name
        folder.mkdir()
        log = self.root / f"{name}.log"
        command = [ray_executable(), "start", "--block", "--node-ip-address=127.0.0.1",
                   f"--num-cpus={self.cpus_per_node}", "--num-gpus=0", f"--temp-dir={folder}",
                   f"--object-store-memory={self.object_store_mb * 2**20}", "--disable-usage-stats",
                   f"--dashboard-agent-listen-port={self._new_port()}", "--log-style=record"]
        if head:
            command += ["--head", f"--port={self.port}", "--include-dashboard=false",
                        f"--ray-client-server-port={self._new_port()}"]
        else:
            command += [f"--address={self.address}"]
        with open(log, "wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=self.env,
                                       start_new_session=True)
        self.processes.append(process)
        self.logs.append(log)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if READY in log.read_text(encoding="utf-8", errors="replace"):
                return
            if process.poll() is not None:
                break
            time.sleep(0.5)
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        raise RuntimeError(f"Ray node {name} did not start (exit code {process.poll()}):\n{tail}")

    def start(self) -> LocalCluster:
        """Start the head, then the worker nodes; on any failure stop what started and raise."""
        try:
            self._start_node("head", head=True)
            for index in range(1, self.nodes):
                self._start_node(f"worker{index}", head=False)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the nodes this cluster started (workers first), each by SIGTERM to its `ray start`,
        SIGKILL to its process group after `stop_timeout_s`; then remove the temporary folder."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
        self.processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def leftover_processes(self) -> list[int]:
        """Ids of live processes whose command line names this cluster's folder (Linux; [] elsewhere):
        after `stop()` there should be none."""
        found = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            except OSError:
                continue
            if str(self.root) in command and state != "Z":
                found.append(int(entry.name))
        return found

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
