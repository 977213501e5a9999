"""Load test for `changeseg serve`: many concurrent POST /v1/detect on loopback, bounded in time and count.

It starts its own server (a `changeseg serve` subprocess on a free 127.0.0.1 port) unless
`--url` names one already running on this machine, sends the same image pair from
`--clients` threads until `--duration` seconds or `--max-requests` requests have passed,
then prints requests per second, latency percentiles (p50/p90/p99) and errors by status,
with the command, machine and date. Only loopback addresses are ever contacted.

`--auth on` starts the server with a random API key (in CHANGESEG_API_KEYS) and sends it as a
bearer token; `--auth compare` starts two servers, one without and one with a key, and loads
them in alternating rounds (`--rounds`, so a drift in the machine's background load hits both
alike), then reports both and their ratio: the cost of checking the key, within noise or not.

    python bench/load.py                               # examples/coffee pair, default model
    python bench/load.py --model CKPT_DIR --clients 8 --duration 30 --queue 4
    python bench/load.py --pair REF.jpg CMP.jpg --backend onnx --model ONNX_DIR
    python bench/load.py --auth compare --duration 40 --rounds 4
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import platform
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "coffee"
DEFAULT_PAIR = (EXAMPLE / "reference.png", EXAMPLE / "comparison.png")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an already running server on loopback (default: start one)")
    parser.add_argument("--model", default="default", help="model for the server this script starts")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--server-concurrency", type=int, default=1, help="server --concurrency")
    parser.add_argument("--queue", type=int, default=8, help="server --queue")
    parser.add_argument("--timeout", type=float, default=60.0, help="server --timeout (s)")
    parser.add_argument("--pair", nargs=2, type=Path, metavar=("REF", "CMP"), default=list(DEFAULT_PAIR),
                        help="image pair to send (default: examples/coffee, 384×384)")
    parser.add_argument("--return", dest="images", default="", help="images to request, e.g. mask,overlay")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load (at most 600)")
    parser.add_argument("--max-requests", type=int, default=2000, help="stop after this many requests")
    parser.add_argument("--auth", choices=["off", "on", "compare"], default="off",
                        help="off: no API key; on: the server requires one and every request sends it; "
                             "compare: both, in alternating rounds, with the ratio")
    parser.add_argument("--rounds", type=int, default=4,
                        help="--auth compare: alternating rounds per server (--duration is split over them)")
    parser.add_argument("--api-key-file", type=Path,
                        help="with --url and --auth on: send the first key of this file")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 600:
        parser.error("--duration must be in (0, 600] seconds")
    if args.clients < 1 or args.max_requests < 1 or args.rounds < 1:
        parser.error("--clients, --max-requests and --rounds must be at least 1")
    if args.url and not is_loopback_url(args.url):
        parser.error("--url must point at this machine (127.0.0.0/8, ::1 or localhost)")
    if args.url and args.auth == "compare":
        parser.error("--auth compare starts its own two servers; it cannot use --url")
    if args.url and args.auth == "on" and not args.api_key_file:
        parser.error("--url with --auth on needs --api-key-file")
    return args


def first_key(path: Path) -> str:
    """The first key (non-blank, non-comment line) of an API key file."""
    for line in path.read_text().splitlines():
        if line.strip() and not line.strip().startswith("#"):
            return line.strip()
    raise RuntimeError(f"no key in {path}")


def is_loopback_url(url: str) -> bool:
    """Whether `url`'s host is a loopback address."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, log_file,
                 api_key: str | None = None) -> tuple[subprocess.Popen, str]:
    """Start `changeseg serve` on a free loopback port and wait (≤ 180 s) until it answers.

    With `api_key` the server requires it (passed in CHANGESEG_API_KEYS, not on the command line).
    """
    port = free_port()
    command = [sys.executable, "-m", "changeseg.cli.main", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--model", args.model, "--backend", args.backend,
               "--concurrency", str(args.server_concurrency), "--queue", str(args.queue),
               "--timeout", str(args.timeout), "--log-level", "warning"]
    if args.backend == "torch":
        command += ["--precision", args.precision]
    env = {k: v for k, v in os.environ.items() if k != "CHANGESEG_API_KEYS"}
    if api_key:
        env["CHANGESEG_API_KEYS"] = api_key
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    process.terminate()
    raise RuntimeError("server did not start within 180 s")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM the server, SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def run_load(url: str, files: dict, data: dict, clients: int, duration: float, max_requests: int,
             headers: dict[str, str] | None = None) -> tuple[list[tuple[str, float]], float]:
    """Send requests from `clients` threads until the time or count runs out.

    Returns (status, latency_s) per request — status is the HTTP code or the exception name —
    and the wall time of the whole run.
    """
    records: list[tuple[str, float]] = []
    lock = threading.Lock()
    issued = 0
    stop_at = time.monotonic() + duration

    def worker() -> None:
        nonlocal issued
        with httpx.Client(timeout=httpx.Timeout(120.0), headers=headers) as client:
            while time.monotonic() < stop_at:
                with lock:
                    if issued >= max_requests:
                        return
                    issued += 1
                started = time.perf_counter()
                try:
                    status = str(client.post(f"{url}/v1/detect", files=files, data=data).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    records.append((status, elapsed))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 180)
    return records, time.perf_counter() - began


def machine_line() -> str:
    """CPU model, core count, OS and Python version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def report(args: argparse.Namespace, records: list[tuple[str, float]], wall: float, model: dict,
           pair_size: str, label: str = "") -> dict:
    """Summarise the run as a dict and print it (under `label`, when given)."""
    statuses = Counter(status for status, _ in records)
    ok = [latency * 1e3 for status, latency in records if status == "200"]
    every = [latency * 1e3 for _, latency in records]
    result = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "machine": machine_line(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": model,
        "pair": pair_size,
        "clients": args.clients,
        "server_concurrency": args.server_concurrency,
        "queue": args.queue,
        "requests": len(records),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(records) / wall, 3) if wall else 0.0,
        "ok_per_s": round(len(ok) / wall, 3) if wall else 0.0,
        "latency_ms_ok": {f"p{q}": round(percentile(ok, q), 1) for q in (50, 90, 99)},
        "latency_ms_all": {f"p{q}": round(percentile(every, q), 1) for q in (50, 90, 99)},
        "statuses": dict(sorted(statuses.items())),
    }
    if label:
        print(f"--- {label}")
    print(f"command : {result['command']}")
    print(f"machine : {result['machine']}")
    print(f"date    : {result['date']}")
    print(f"server  : model {model.get('name')} ({model.get('backend')}, {model.get('precision', '-')}), "
          f"concurrency {args.server_concurrency}, queue {args.queue}; pair {pair_size}")
    print(f"load    : {args.clients} clients, {result['requests']} requests in {result['wall_s']} s")
    print(f"rate    : {result['requests_per_s']} req/s total, {result['ok_per_s']} req/s answered 200")
    lat = result["latency_ms_ok"]
    print(f"latency : 200s p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms")
    lat = result["latency_ms_all"]
    print(f"          all  p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms")
    errors = {k: v for k, v in statuses.items() if k != "200"}
    print(f"statuses: {dict(sorted(statuses.items()))}; errors: {sum(errors.values())} {errors or ''}")
    return result


class Target:
    """One server under load: its URL, the headers every request sends, and its records."""

    def __init__(self, label: str, url: str, headers: dict[str, str]) -> None:
        self.label = label
        self.url = url
        self.headers = headers
        self.records: list[tuple[str, float]] = []
        self.wall = 0.0


def warm_up(target: Target, files: dict, data: dict) -> tuple[dict, str]:
    """One request to `target` (model loaded, caches warm); returns the model info and the pair size."""
    model = httpx.get(f"{target.url}/v1/models", headers=target.headers, timeout=10)
    warm = httpx.post(f"{target.url}/v1/detect", files=files, data=data, headers=target.headers, timeout=120)
    if model.status_code != 200 or warm.status_code != 200:
        raise RuntimeError(f"warm-up request to {target.label} failed: {warm.status_code} {warm.text}")
    return model.json()["models"][0], f"{warm.json()['width']}×{warm.json()['height']}"


def compare(results: dict[str, dict], rounds: list[dict[str, float]]) -> dict:
    """Print and return how the server with auth did relative to the one without.

    The noise is judged from the rounds: each round's ratio (with ÷ without, measured minutes
    apart at most) is one paired sample; the difference is "within noise" when the mean ratio
    is less than two standard errors from 1.
    """
    without, with_auth = results["without auth"], results["with auth"]
    ratio = with_auth["ok_per_s"] / without["ok_per_s"] if without["ok_per_s"] else float("nan")
    spread = {label: [round(r[label], 3) for r in rounds] for label in results}
    paired = [r["with auth"] / r["without auth"] for r in rounds if r["without auth"] > 0]
    mean = sum(paired) / len(paired) if paired else float("nan")
    if len(paired) > 1:
        stderr = math.sqrt(sum((x - mean) ** 2 for x in paired) / (len(paired) - 1) / len(paired))
    else:
        stderr = float("nan")
    within = abs(mean - 1) < 2 * stderr if len(paired) > 1 else None
    summary = {"ok_per_s_ratio_with_vs_without": round(ratio, 3),
               "round_ratio_mean": round(mean, 3), "round_ratio_stderr": round(stderr, 3),
               "within_noise": within,
               "p50_ms": {label: r["latency_ms_ok"]["p50"] for label, r in results.items()},
               "ok_per_s_by_round": spread}
    print("--- comparison")
    print(f"rate    : with auth {with_auth['ok_per_s']} req/s vs without {without['ok_per_s']} req/s "
          f"(ratio {summary['ok_per_s_ratio_with_vs_without']})")
    for label, values in spread.items():
        print(f"rounds  : {label:12s} " + ", ".join(f"{v:.3f}" for v in values) + " req/s answered 200")
    verdict = {True: "within noise", False: "NOT within noise", None: "one round: no noise estimate"}[within]
    print(f"ratio   : per round {mean:.3f} ± {stderr:.3f} (standard error) → {verdict}")
    print(f"p50     : with auth {summary['p50_ms']['with auth']} ms, "
          f"without {summary['p50_ms']['without auth']} ms")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Run the load test; returns 0, or 1 when no request succeeded."""
    args = parse_args(argv)
    reference, comparison = args.pair
    files = {"reference": (reference.name, reference.read_bytes()),
             "comparison": (comparison.name, comparison.read_bytes())}
    data = {"return": args.images} if args.images else {}
    key = secrets.token_urlsafe(32)
    plans = {"off": [("without auth", None)], "on": [("with auth", key)],
             "compare": [("without auth", None), ("with auth", key)]}[args.auth]
    rounds = args.rounds if args.auth == "compare" else 1
    processes: list[subprocess.Popen] = []
    targets: list[Target] = []
    round_rates: list[dict[str, float]] = []
    with tempfile.NamedTemporaryFile("w+b", prefix="changeseg-load-", suffix=".log") as log_file:
        try:
            for label, api_key in plans:
                if args.url:
                    url = args.url.rstrip("/")
                    api_key = first_key(args.api_key_file) if args.auth == "on" else None
                else:
                    process, url = start_server(args, log_file, api_key)
                    processes.append(process)
                targets.append(Target(label, url, {"Authorization": f"Bearer {api_key}"} if api_key else {}))
            model, pair_size = {}, ""
            for target in targets:
                model, pair_size = warm_up(target, files, data)
            for number in range(rounds):
                round_rates.append({})
                # A B, B A, A B, ...: neither server always runs first in a round.
                for target in targets if number % 2 == 0 else targets[::-1]:
                    records, wall = run_load(target.url, files, data, args.clients, args.duration / rounds,
                                             math.ceil(args.max_requests / rounds), target.headers)
                    target.records += records
                    target.wall += wall
                    ok = sum(1 for status, _ in records if status == "200")
                    round_rates[-1][target.label] = ok / wall if wall else 0.0
        except (RuntimeError, OSError) as exc:
            log_file.seek(0)
            print(f"error: {exc}\n{log_file.read().decode(errors='replace')}", file=sys.stderr)
            return 1
        finally:
            for process in processes:
                stop_server(process)
    results = {target.label: report(args, target.records, target.wall, model, pair_size,
                                    label=target.label if len(targets) > 1 or args.auth == "on" else "")
               for target in targets}
    output: dict = next(iter(results.values())) if len(results) == 1 else dict(results)
    if args.auth == "compare":
        output["comparison"] = compare(results, round_rates)
    if args.json:
        args.json.write_text(json.dumps(output, indent=2) + "\n")
    return 0 if all(r["statuses"].get("200") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
