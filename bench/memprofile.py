#!/usr/bin/env python3
"""Where a server's memory per idle WebSocket connection goes (tracemalloc, in-process).

    python bench/memprofile.py trioapi-hypercorn --conns 1000
    python bench/memprofile.py asgi-hypercorn trio-websocket trioapi-native

Runs the server inside this process with ``tracemalloc`` on, makes one echo (so lazy imports
and first-use caches are paid), snapshots, opens ``--conns`` idle connections with the load
generator, waits, snapshots again, and prints the traced bytes per connection, the allocation
sites that grew most (per connection) and the object types that grew (per connection).
``bench/run.py``'s ``idle`` scenario measures RSS from outside; this says what it is made of.
"""

from __future__ import annotations

import argparse
import collections
import gc
import importlib
import logging
import subprocess
import sys
import tracemalloc
from functools import partial
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (bench/run.py, after the path is set)

TARGETS = [
    "asgi-hypercorn",
    "trioapi-hypercorn",
    "trio-websocket",
    "trioapi-native",
    "trioapi-trio-websocket",
]


async def serve_target(target: str, port: int, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    if target in ("asgi-hypercorn", "trioapi-hypercorn"):
        from hypercorn.config import Config
        from hypercorn.trio import serve

        module = "bench.servers.asgi_echo" if target == "asgi-hypercorn" else "bench.servers.trioapi_echo"
        config = Config()
        config.bind = [f"{bench.HOST}:{port}"]
        task_status.started()
        await serve(importlib.import_module(module).app, config)  # type: ignore[arg-type]
    elif target == "trio-websocket":
        from trio_websocket import serve_websocket

        from bench.servers.trio_websocket_echo import handler

        await serve_websocket(handler, bench.HOST, port, ssl_context=None, task_status=task_status)
    else:
        import trioapi
        from bench.servers.trioapi_echo import app

        kind = "trio-websocket" if target == "trioapi-trio-websocket" else "native"
        await trioapi.serve(app, host=bench.HOST, port=port, server=kind, task_status=task_status)


def type_counts() -> collections.Counter[str]:
    return collections.Counter(type(o).__name__ for o in gc.get_objects())


async def start_target(nursery: trio.Nursery, target: str, loadgen: Path) -> int:
    """Serve ``target`` in ``nursery`` and return its port once it has echoed one message."""
    port = bench.free_port()
    await nursery.start(partial(serve_target, target, port))
    for _ in range(50):  # hypercorn reports started before it listens
        probe = await trio.run_process(
            [str(loadgen), "--mode", "probe", "--port", str(port)], capture_stdout=True, check=False
        )
        if probe.returncode == 0:
            break
        await trio.sleep(0.1)
    return port


async def measure(target: str, conns: int, top: int, loadgen: Path) -> None:
    async with trio.open_nursery() as nursery:
        port = await start_target(nursery, target, loadgen)
        await trio.sleep(0.3)
        gc.collect()
        types0, snap0 = type_counts(), tracemalloc.take_snapshot()
        argv = [str(loadgen), "--mode", "idle", "--port", str(port), "--conns", str(conns), "--hold", "60"]
        proc = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdin is not None
        ready = b""
        with trio.fail_after(60):
            while b"\n" not in ready:
                chunk = await proc.stdout.receive_some()
                if not chunk:
                    break
                ready += chunk
        await trio.sleep(1.0)
        gc.collect()
        types1, snap1 = type_counts(), tracemalloc.take_snapshot()
        await proc.stdin.send_all(b"\n")
        await proc.wait()
        nursery.cancel_scope.cancel()
    stats = snap1.compare_to(snap0, "lineno")
    total = sum(s.size_diff for s in stats)
    per_conn = total / conns / 1024
    print(f"## {target}: {ready.decode().strip()}, traced Python memory {per_conn:.1f} KiB/connection")
    print("\ngrowth by allocation site (bytes, blocks per connection):")
    for s in stats[:top]:
        frame = s.traceback[0]
        where = f"{bench_path(frame.filename)}:{frame.lineno}"
        print(f"  {s.size_diff / conns:7.0f} B {s.count_diff / conns:5.1f}  {where}")
    grown = types1 - types0
    print("\nobjects per connection, by type:")
    print("  " + ", ".join(f"{k} {v / conns:.1f}" for k, v in grown.most_common(30)))
    print()


def each_in_own_process(script: str, targets: list[str], args: list[str]) -> bool:
    """With several targets, run ``script target *args`` once per target and return ``True``.

    Each target then starts from a clean heap; with one target, return ``False``
    and let the caller measure it in this process.
    """
    if len(targets) < 2:
        return False
    for target in targets:
        subprocess.run([sys.executable, script, target, *args], check=False, timeout=300)
    return True


def bench_path(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="+", choices=TARGETS)
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--top", type=int, default=25)
    opts = ap.parse_args()
    if not 10 <= opts.conns <= 5000:
        raise SystemExit("memprofile: --conns must be in [10, 5000]")
    logging.disable(logging.INFO)
    loadgen = bench.build_loadgen()
    if each_in_own_process(__file__, opts.targets, ["--conns", str(opts.conns), "--top", str(opts.top)]):
        return 0
    tracemalloc.start(1)
    trio.run(measure, opts.targets[0], opts.conns, opts.top, loadgen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
