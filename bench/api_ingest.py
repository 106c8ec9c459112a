"""Event API ingest benchmark: durable deployments/s and latency against `dora api`.

Starts `dora api` as a subprocess on the SQLite default (a temporary working
directory, so `sqlite:///.dora/warehouse.db` is used), measures `/healthz` (the
no-database ceiling of the same server) and then POSTs of unique deployments at
32 connections with `wrk` (installed from Debian's packages when missing; several
Python client processes when that is impossible). Afterwards it counts the rows
actually stored. Prints a readable summary with ratios, then one JSON line.

    python bench/api_ingest.py [--quick] [--duration S] [--connections N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

API_KEY = "bench-key"
DEPLOYMENT_PATH = "/api/v2/dora/deployment"

# Each wrk thread numbers its own requests; the version (thread, number) makes each unique.
# wrk reports what it saw in one line; statuses >= 400 count as `errors.status`, so for
# the deployment endpoint (whose only success is 202) accepted = requests - those.
WRK_DONE = r"""
function done(summary, latency, requests)
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"accepted":%d,"errors":%d,"seconds":%.3f,'
    .. '"p50_ms":%.3f,"p99_ms":%.3f}\n',
    summary.requests, summary.requests - summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
"""

# Each wrk thread numbers its own requests; the version (thread, number) makes each unique.
# No `response` hook: it would slow wrk down on this 2-core machine, unlike /healthz.
WRK_POST_SCRIPT = (
    r"""
local thread_count = 0
local counter = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  prefix = "t" .. thread_id .. "."
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"data":{"attributes":{"service":"svc-%d","env":"prod","team":"team-%d",'
    .. '"version":"%s%d","started_at":1700000000,"finished_at":%d,'
    .. '"custom_tags":["bench:yes"]}}}',
    counter % 10, counter % 3, prefix, counter, 1700000000 + counter)
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["DD-API-KEY"] = "__KEY__",
  }, body)
end
"""
    + WRK_DONE
)
WRK_GET_SCRIPT = WRK_DONE


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ensure_wrk() -> str | None:
    """`wrk` from PATH, installing the Debian package when missing (needs root)."""
    found = shutil.which("wrk")
    if found or not shutil.which("apt-get"):
        return found
    print("wrk is missing; installing it with apt-get ...", flush=True)
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        if subprocess.run(command, capture_output=True, check=False).returncode != 0:
            return None
    return shutil.which("wrk")


def start_api(
    workdir: Path, port: int, warehouse_url: str | None = None
) -> subprocess.Popen[bytes]:
    """`dora api` on `warehouse_url` (default: the embedded SQLite file in `workdir`)."""
    environment = {**os.environ, "DORA_API_KEYS": API_KEY}
    environment.pop("DORA_WAREHOUSE_URL", None)
    if warehouse_url is not None:
        environment["DORA_WAREHOUSE_URL"] = warehouse_url
    server = subprocess.Popen(
        [sys.executable, "-m", "connectors.cli", "api", "--port", str(port)],
        cwd=workdir,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "api.log", "wb"),  # noqa: SIM115 (lives as long as the server)
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"dora api exited early; see {workdir / 'api.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("dora api did not become healthy within 60 s")


def run_wrk(wrk: str, url: str, script: str, connections: int, seconds: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script.replace("__KEY__", API_KEY))
    try:
        output = subprocess.run(
            [
                wrk,
                f"-t{min(2, connections)}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                handle.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    line = next(line for line in output.splitlines() if line.startswith("WRK_RESULT "))
    return json.loads(line.removeprefix("WRK_RESULT "))


# --- fallback: several Python client processes --------------------------------------------


def _client_process(arguments: tuple[str, str, int, int, float]) -> tuple[int, list[float]]:
    base_url, path, worker, connections, seconds = arguments
    import asyncio

    async def main() -> tuple[int, list[float]]:
        accepted = 0
        latencies: list[float] = []
        deadline = time.monotonic() + seconds
        headers = {"DD-API-KEY": API_KEY}
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as client:

            async def connection(number: int) -> None:
                nonlocal accepted
                sequence = 0
                while time.monotonic() < deadline:
                    sequence += 1
                    started = time.perf_counter()
                    if path == DEPLOYMENT_PATH:
                        body = {
                            "data": {
                                "attributes": {
                                    "service": "svc",
                                    "id": f"py-{worker}-{number}-{sequence}",
                                    "started_at": 1700000000,
                                    "finished_at": 1700000000 + sequence,
                                }
                            }
                        }
                        response = await client.post(path, json=body)
                    else:
                        response = await client.get(path)
                    latencies.append((time.perf_counter() - started) * 1000)
                    accepted += response.status_code in (200, 202)

            await asyncio.gather(*(connection(number) for number in range(connections)))
        return accepted, latencies

    return asyncio.run(main())


def run_python_clients(
    base_url: str, path: str, connections: int, seconds: float
) -> dict[str, Any]:
    processes = max(2, os.cpu_count() or 2)
    per_process = max(1, connections // processes)
    jobs = [(base_url, path, worker, per_process, seconds) for worker in range(processes)]
    started = time.monotonic()
    with multiprocessing.Pool(processes) as pool:
        results = pool.map(_client_process, jobs)
    elapsed = time.monotonic() - started
    latencies = sorted(latency for _, worker_latencies in results for latency in worker_latencies)
    accepted = sum(count for count, _ in results)

    def percentile(fraction: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] if latencies else 0
        )

    return {
        "requests": len(latencies),
        "accepted": accepted,
        "errors": len(latencies) - accepted,
        "seconds": elapsed,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
    }


def stored_deployments(workdir: Path) -> int:
    with sqlite3.connect(workdir / ".dora" / "warehouse.db") as connection:
        return connection.execute("SELECT count(*) FROM api_deployments").fetchone()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s per phase (smoke test)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--connections", type=int, default=32)
    arguments = parser.parse_args()
    seconds = 2.0 if arguments.quick else arguments.duration
    connections = arguments.connections

    wrk = ensure_wrk()
    generator = "wrk" if wrk else "python client processes"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="dora-bench-") as directory:
        workdir = Path(directory)
        server = start_api(workdir, port)
        try:
            if wrk:
                healthz = run_wrk(wrk, f"{base_url}/healthz", WRK_GET_SCRIPT, connections, seconds)
                ingest = run_wrk(
                    wrk, f"{base_url}{DEPLOYMENT_PATH}", WRK_POST_SCRIPT, connections, seconds
                )
            else:
                healthz = run_python_clients(base_url, "/healthz", connections, seconds)
                ingest = run_python_clients(base_url, DEPLOYMENT_PATH, connections, seconds)
        finally:
            server.terminate()
            server.wait(timeout=30)
        stored = stored_deployments(workdir)

    healthz_per_s = healthz["requests"] / healthz["seconds"]
    events_per_s = ingest["accepted"] / ingest["seconds"]
    figures = {
        "events_per_s": round(events_per_s, 1),
        "p50_ms": round(ingest["p50_ms"], 2),
        "p99_ms": round(ingest["p99_ms"], 2),
        "clients": connections,
        "healthz_per_s": round(healthz_per_s, 1),
        "healthz_ratio": round(events_per_s / healthz_per_s, 3),
        "stored_events": stored,
        "sent_events": ingest["accepted"],
        "non_202": ingest["requests"] - ingest["accepted"],
        "seconds": round(ingest["seconds"], 2),
        "generator": generator,
    }
    print(f"dora api on SQLite (synchronous=FULL), {connections} connections, load by {generator}")
    print(
        f"  /healthz      {healthz_per_s:9.0f} req/s  "
        f"(p50 {healthz['p50_ms']:.2f} ms, p99 {healthz['p99_ms']:.2f} ms)"
    )
    print(
        f"  POST deploy   {events_per_s:9.0f} events/s "
        f"(p50 {ingest['p50_ms']:.2f} ms, p99 {ingest['p99_ms']:.2f} ms)"
    )
    print(
        f"  ingest / healthz = {figures['healthz_ratio']:.0%} (target >= 40%), "
        f"events/s vs 1,000 target = {events_per_s / 1000:.2f}x, "
        f"p99 vs 100 ms target = {ingest['p99_ms'] / 100:.2f}x"
    )
    print(
        f"  202s {ingest['accepted']}, rows stored {stored}, other answers "
        f"{figures['non_202']}"
        + ("" if stored >= ingest["accepted"] else "  <-- ACCEPTED EVENTS MISSING")
    )
    print(json.dumps(figures))
    # Rows may exceed 202s: wrk stops with requests in flight that the server still commits.
    return 0 if stored >= ingest["accepted"] else 1


if __name__ == "__main__":
    sys.exit(main())
