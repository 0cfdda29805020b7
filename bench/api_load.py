"""Load test of the HTTP API: invoice-issuing commands/s and latency at a fixed rate.

Starts ``arledger serve`` as a subprocess on a temporary SQLite store, creates a key and
registers customers, then drives it on loopback from this process with a minimal
keep-alive HTTP/1.1 client (asyncio streams, so the client costs little CPU next to the
server on the same machine):

1. throughput: ``--clients`` connections issue invoices back to back for ``--seconds``;
2. latency: an open-loop schedule of ``--rate`` requests/s (default 300); latency is
   measured from each request's *scheduled* time, so a stall is not hidden.

Every request is a distinct invoice with its own ``Idempotency-Key``, as a careful
client sends them. Server and client CPU seconds are printed next to the wall-clock
figures: on a shared machine they say more than the wall clock.

    python -m bench.api_load            # full run
    python -m bench.api_load --quick    # a few seconds

Targets (issue 7): >= 1,000 commands/s on SQLite; p99 < 50 ms at 300 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

CUSTOMERS = 200


class Connection:
    """One keep-alive HTTP/1.1 connection; requests are sent one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, key: str) -> None:
        self.reader, self.writer = reader, writer
        self.prefix = f"Host: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"

    @classmethod
    async def open(cls, host: str, port: int, key: str) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}", key)

    async def post(self, path: str, body: bytes, idempotency_key: str | None = None) -> tuple[int, bytes]:
        key = f"Idempotency-Key: {idempotency_key}\r\n" if idempotency_key else ""
        self.writer.write(f"POST {path} HTTP/1.1\r\n{self.prefix}{key}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        return status, await self.reader.readexactly(length)

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\n{self.prefix}\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        return int(head[9:12]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def commit_stats(port: int, key: str) -> tuple[float, float, float]:
    """(transactions, commands, seconds) the serving process reports in /metrics (with
    several workers: the one worker that answers)."""
    conn = await Connection.open("127.0.0.1", port, key)
    _, text = await conn.get("/metrics")
    conn.close()
    values = dict(re.findall(rb"^(arledger_store_commit\w*_total) (\S+)$", text, re.M))
    return tuple(float(values.get(name, 0)) for name in (b"arledger_store_commits_total", b"arledger_store_committed_commands_total", b"arledger_store_commit_seconds_total"))


def grouping(before: tuple[float, float, float], after: tuple[float, float, float], workers: int) -> str:
    if workers > 1:
        return "not shown with several workers (each keeps its own counters; /metrics answers from any)"
    commits, commands, seconds = (a - b for a, b in zip(after, before))
    if not commits:
        return "no commits reported"
    return f"{commands / commits:.1f} commands per commit, {seconds / commits * 1000:.2f} ms per commit"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children, from /proc (Linux)."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(cpu_seconds(int(child)) for child in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


@contextmanager
def server(log_format: str, data_root: str | None, workers: int = 1, log_file: str | None = None) -> Iterator[tuple[int, str, int]]:
    """A fresh store, a sales key, and `arledger serve` on a free port."""
    data = tempfile.mkdtemp(prefix="arledger-bench-", dir=data_root)
    env = {**os.environ, "ARLEDGER_DATA_DIR": data, "ARLEDGER_ENV": "production", "ARLEDGER_LOG_FORMAT": log_format}
    env.pop("ARLEDGER_DATABASE_URL", None)
    cli = [sys.executable, "-m", "services.cli"]
    created = subprocess.run([*cli, "keys", "create", "--role", "sales", "--name", "bench"], env=env, capture_output=True, text=True, check=True)
    key = json.loads(created.stdout)["key"]
    port = free_port()
    log = open(log_file, "w") if log_file else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*cli, "serve", "--port", str(port), "--workers", str(workers)], env=env, stderr=log, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port, key, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if log_file:
            log.close()
        shutil.rmtree(data, ignore_errors=True)


def invoice(n: int) -> bytes:
    return json.dumps({
        "customer_id": f"C{n % CUSTOMERS:04d}", "invoice_number": f"INV-{n:08d}", "currency": "EUR",
        "amount_minor": 10_000 + n % 977, "issue_date": "2026-01-15",
    }).encode()


async def register_customers(port: int, key: str) -> None:
    conn = await Connection.open("127.0.0.1", port, key)
    for i in range(CUSTOMERS):
        body = json.dumps({"customer_id": f"C{i:04d}", "name": f"Customer {i}", "currency": "EUR"}).encode()
        status, text = await conn.post("/v1/customers", body)
        assert status == 201, text
    conn.close()


async def throughput(port: int, key: str, clients: int, seconds: float, start: int) -> tuple[int, int, float]:
    """(commands recorded, errors, seconds) with `clients` connections back to back."""
    counter = iter(range(start, 10**9))
    ok = errors = 0
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal ok, errors
        conn = await Connection.open("127.0.0.1", port, key)
        while time.perf_counter() < stop_at:
            n = next(counter)
            status, _ = await conn.post("/v1/invoices", invoice(n), f"bench-{n}")
            if status == 201:
                ok += 1
            else:
                errors += 1
        conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return ok, errors, time.perf_counter() - began


async def fixed_rate(port: int, key: str, rate: float, seconds: float, start: int, pool: int = 64) -> tuple[list[float], int]:
    """Open-loop: request i is due at t0 + i/rate; latency counts from that moment."""
    conns: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(pool):
        conns.put_nowait(await Connection.open("127.0.0.1", port, key))
    latencies: list[float] = []
    errors = 0
    t0 = time.perf_counter() + 0.05

    async def one(i: int, due: float) -> None:
        nonlocal errors
        conn = await conns.get()
        status, _ = await conn.post("/v1/invoices", invoice(start + i), f"bench-{start + i}")
        latencies.append(time.perf_counter() - due)
        errors += status != 201
        conns.put_nowait(conn)

    tasks = []
    for i in range(int(rate * seconds)):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    print(f"  fixed-rate phase: {len(tasks):,} requests due over {len(tasks) / rate:.1f} s, all answered after {time.perf_counter() - t0:.1f} s")
    while not conns.empty():
        conns.get_nowait().close()
    return latencies, errors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace, port: int, key: str, pid: int) -> None:
    await register_customers(port, key)
    await throughput(port, key, args.clients, 1.0, start=0)  # warm-up: caches, connections
    stats = await commit_stats(port, key)
    cpu, client = cpu_seconds(pid), time.process_time()
    ok, errors, took = await throughput(port, key, args.clients, args.seconds, start=1_000_000)
    cpu, client = cpu_seconds(pid) - cpu, time.process_time() - client
    stats = grouping(stats, await commit_stats(port, key), args.workers)
    print(f"throughput: {ok / took:,.0f} invoice commands/s ({ok:,} recorded in {took:.1f} s, {args.clients} clients, {errors} errors)")
    print(f"  server CPU: {cpu / max(ok, 1) * 1000:.2f} ms per command ({cpu:.1f} s CPU over {took:.1f} s); "
          f"client CPU: {client / max(ok, 1) * 1000:.2f} ms per command ({client:.1f} s); load average {os.getloadavg()[0]:.1f}")
    print(f"  group commit: {stats}")
    stats = await commit_stats(port, key)
    cpu, client = cpu_seconds(pid), time.process_time()
    latencies, errors = await fixed_rate(port, key, args.rate, args.seconds, start=5_000_000)
    cpu, client = cpu_seconds(pid) - cpu, time.process_time() - client
    stats = grouping(stats, await commit_stats(port, key), args.workers)
    p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
    print(f"latency at {args.rate:.0f} requests/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms ({len(latencies):,} requests, {errors} errors)")
    print(f"  server CPU: {cpu:.1f} s, client CPU: {client:.1f} s over {args.seconds:.0f} s; load average {os.getloadavg()[0]:.1f}; group commit: {stats}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s phases instead of 15 s")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--log-format", choices=("json", "console"), default="json", help="server log format")
    parser.add_argument("--server-log", help="write the server's log lines to this file (default: /dev/null)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--data-root", help="where the temporary SQLite store lives (default: the system temp dir)")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (3.0 if args.quick else 15.0)
    print(f"arledger serve --workers {args.workers}, SQLite store in {args.data_root or tempfile.gettempdir()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with server(args.log_format, args.data_root, args.workers, args.server_log) as (port, key, pid):
        asyncio.run(run(args, port, key, pid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
