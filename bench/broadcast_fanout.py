#!/usr/bin/env python3
"""Fan-out of published messages to 1,000 WebSockets on one server process.

    python bench/broadcast_fanout.py                    # memory:// and redis:// (if redis-server exists)
    python bench/broadcast_fanout.py --subscribers 200 --backends memory

The server (this module's ``app``: a ``ConnectionHub`` on a ``Broadcast``) runs in
its own hypercorn process, pinned to CPU 0 with ``taskset`` when available; the
1,000 trio-websocket clients run here (CPU 1). A publisher connection asks the
server to broadcast; the server stamps each message with ``time.monotonic()``
(one clock for every process on Linux) just before ``hub.broadcast``, so the
latency is from the broadcast call to the client having parsed the frame.

Two phases per backend:

* latency: one message at a time, the next once every subscriber has it;
  p50/p99 over every delivery;
* throughput: a burst published back to back; deliveries per second from the
  first publish to the last delivery of the burst.

The clients are Python too, so on a 2-core machine the figure is the whole
system's, client parsing included. Only 127.0.0.1 is used; every process this
script starts is stopped by killing its process group.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import trio

from trioapi import TrioAPI, WebSocket
from trioapi.broadcast import Broadcast, ConnectionHub

ROOT = Path(__file__).resolve().parent.parent

# -- the server side (imported by hypercorn in the server process) ----------------

broadcast = Broadcast(os.environ.get("BROADCAST_URL", "memory://"))
# Big enough outboxes that the throughput burst is measured, not shed.
hub = ConnectionHub(broadcast, max_backlog=4096, policy="disconnect")


@asynccontextmanager
async def lifespan(app: TrioAPI) -> AsyncIterator[None]:
    async with broadcast:
        yield


app = TrioAPI(lifespan=lifespan)


@app.websocket("/sub")
async def subscribe(websocket: WebSocket) -> None:
    await websocket.accept()
    await hub.join("bench", websocket)
    await hub.send_personal(websocket, "ready")
    await websocket.wait_disconnected()


@app.websocket("/pub")
async def publish(websocket: WebSocket) -> None:
    await websocket.accept()
    async for tag in websocket.iter_text():
        await hub.broadcast("bench", f"{tag} {time.monotonic()!r}")
        await websocket.send_text("ok")


# -- the driver ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


@contextmanager
def process_group(command: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    """Run ``command`` in its own session until the block ends, then kill the whole group."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process)
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def pinned(cpu: int, command: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu), *command]
    return command


def kernel_drop_counters() -> tuple[int, int]:
    """Packets the kernel dropped at the backlog queue, and TCP retransmission timeouts, so far.

    On loopback, a thousand sockets written in one burst can overflow
    ``net.core.netdev_max_backlog`` (1000 by default); each dropped packet then
    waits for a TCP retransmission timeout (200 ms and up), which shows as p99
    latency in seconds with idle CPUs. The table reports both, so such a run
    can be recognised.
    """
    try:
        drops = sum(
            int(line.split()[1], 16) for line in Path("/proc/net/softnet_stat").read_text().splitlines()
        )
        lines = Path("/proc/net/netstat").read_text().splitlines()
        names, values = lines[0].split(), lines[1].split()
        timeouts = int(values[names.index("TCPTimeouts")])
    except (OSError, ValueError, IndexError):
        return (0, 0)
    return drops, timeouts


class Deliveries:
    """What the clients received, by phase."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {"L": [], "T": []}
        self.last_receive = 0.0
        self.expected = 0
        self.all_in = trio.Event()

    def record(self, message: str) -> None:
        now = time.monotonic()
        tag, stamp = message.split(" ")
        samples = self.latencies[tag[0]]
        samples.append(now - float(stamp))
        self.last_receive = now
        if len(samples) == self.expected:
            self.all_in.set()

    def expect(self, count: int) -> None:
        self.expected = count
        self.all_in = trio.Event()


async def run_client(
    url: str, connecting: trio.CapacityLimiter, ready: trio.Semaphore, deliveries: Deliveries
) -> None:
    from trio_websocket import connect_websocket_url

    async with trio.open_nursery() as nursery:
        # A few dozen handshakes at a time: 1,000 SYNs at once overflow the listen backlog.
        async with connecting:
            ws = await connect_websocket_url(nursery, url)
            assert await ws.get_message() == "ready"
        ready.release()
        try:
            while True:
                deliveries.record(str(await ws.get_message()))
        finally:
            nursery.cancel_scope.cancel()


async def measure(port: int, subscribers: int, latency_messages: int, burst: int) -> dict[str, float]:
    from trio_websocket import open_websocket_url

    deliveries = Deliveries()
    ready = trio.Semaphore(0, max_value=subscribers)
    connecting = trio.CapacityLimiter(32)
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            for _ in range(subscribers):
                nursery.start_soon(run_client, f"ws://127.0.0.1:{port}/sub", connecting, ready, deliveries)
            for _ in range(subscribers):
                await ready.acquire()
            async with open_websocket_url(f"ws://127.0.0.1:{port}/pub") as publisher:
                for n in range(latency_messages):
                    # One message in flight: the next goes once every subscriber has this one.
                    deliveries.expect((n + 1) * subscribers)
                    await publisher.send_message(f"L{n}")
                    await publisher.get_message()
                    with trio.move_on_after(30):
                        await deliveries.all_in.wait()

                deliveries.expect(burst * subscribers)
                started = time.monotonic()
                for n in range(burst):
                    await publisher.send_message(f"T{n}")
                for _ in range(burst):
                    await publisher.get_message()
                with trio.move_on_after(60):
                    await deliveries.all_in.wait()
                elapsed = deliveries.last_receive - started
            nursery.cancel_scope.cancel()
    latencies = sorted(deliveries.latencies["L"])
    delivered = len(deliveries.latencies["T"])
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "latency_deliveries": len(latencies),
        "throughput": delivered / elapsed if elapsed > 0 else 0.0,
        "burst_deliveries": delivered,
    }


SERVERS = {
    "hypercorn": [
        "-m",
        "hypercorn",
        "--worker-class",
        "trio",
        "-b",
        "127.0.0.1:{port}",
        "bench.broadcast_fanout:app",
    ],
    "native": [
        "-m",
        "trioapi",
        "run",
        "bench.broadcast_fanout:app",
        "--server",
        "native",
        "--port",
        "{port}",
    ],
    "trio-websocket": [
        "-m",
        "trioapi",
        "run",
        "bench.broadcast_fanout:app",
        "--server",
        "trio-websocket",
        "--port",
        "{port}",
    ],
}


def run_backend(
    name: str, server_kind: str, subscribers: int, latency_messages: int, burst: int
) -> dict[str, float]:
    port = free_port()
    server = pinned(0, [sys.executable, *(arg.format(port=port) for arg in SERVERS[server_kind])])
    if name == "memory":
        with process_group(server, port, {"BROADCAST_URL": "memory://"}):
            return trio.run(measure, port, subscribers, latency_messages, burst)
    redis_port = free_port()
    redis = [
        "redis-server",
        "--port",
        str(redis_port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    with (
        process_group(pinned(0, redis), redis_port),
        process_group(server, port, {"BROADCAST_URL": f"redis://127.0.0.1:{redis_port}/0"}),
    ):
        return trio.run(measure, port, subscribers, latency_messages, burst)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--latency-messages", type=int, default=50)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--backends", default="memory,redis")
    parser.add_argument(
        "--servers",
        default="hypercorn,native",
        help="any of hypercorn (ASGI), native (trioapi's engine), trio-websocket",
    )
    args = parser.parse_args()
    os.chdir(ROOT)

    rows = []
    for server_kind in args.servers.split(","):
        for name in args.backends.split(","):
            if name == "redis" and shutil.which("redis-server") is None:
                print("redis: skipped (redis-server is not installed)", file=sys.stderr)
                continue
            before = kernel_drop_counters()
            result = run_backend(name, server_kind, args.subscribers, args.latency_messages, args.burst)
            after = kernel_drop_counters()
            result["kernel_drops"] = after[0] - before[0]
            result["tcp_timeouts"] = after[1] - before[1]
            rows.append((f"{name} / {server_kind}", result))

    print(
        f"\nFan-out to {args.subscribers} WebSockets, one server process "
        f"({args.latency_messages} messages one at a time for latency, "
        f"a burst of {args.burst} for throughput)\n"
    )
    print(
        "| backend / server | deliveries/s (burst) | p50 latency | p99 latency "
        "| delivered (one at a time / burst) | kernel drops / TCP timeouts |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(
            f"| {name} | {r['throughput']:,.0f} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms "
            f"| {r['latency_deliveries']:,.0f} / {r['burst_deliveries']:,.0f} "
            f"| {r['kernel_drops']:,.0f} / {r['tcp_timeouts']:,.0f} |"
        )


if __name__ == "__main__":
    main()
