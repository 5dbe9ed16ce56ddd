#!/usr/bin/env python3
"""What keepalive pings over many idle connections cost one active client (native server).

    python bench/keepalive.py                              # 10,000 idle connections, pings every 1 s
    python bench/keepalive.py --conns 2000 --ping-interval 0.5 --duration 5

For each setting (keepalive off, then on) it starts ``trioapi run --server native``
on the bench echo app, pinned to CPU 0 with ``taskset`` when the machine has two
CPUs; opens ``--conns`` idle connections with the C load generator (which answers
every ping), and while they are held runs one echo client (one 64-byte message in
flight) for ``--duration`` seconds, both on CPU 1. The echo's p50/p99/max round
trip shows how long the server's event loop was held up: a keepalive round that
stalls the loop shows as the echo's max. Every ``--ping-interval`` all connections
are pinged, so a ``--duration`` of 10 s at 1 s holds ten rounds.

Not part of CI (it holds 10,000 sockets for a while). Only 127.0.0.1 is used; the
server's whole process group is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.run import (  # noqa: E402 - the bench folder is not a package users install
    REPO,
    SERVER_BY_NAME,
    _raise_nofile,
    build_loadgen,
    collect_loadgen,
    free_port,
    parse_loadgen,
    server_env,
    spawn_loadgen,
)


def start_server(port: int, ping_interval: float | None, pin: bool) -> subprocess.Popen[bytes]:
    """``bench/run.py``'s native server, with keepalive every ``ping_interval`` (``None``: off)."""
    argv = [*SERVER_BY_NAME["trioapi-native"].argv(port), "--ping-interval", str(ping_interval or 0)]
    if pin:
        argv = ["taskset", "-c", "0", *argv]
    return subprocess.Popen(
        argv,
        cwd=REPO,
        env=server_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_raise_nofile,
    )


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            continue


def measure(
    loadgen: Path, conns: int, ping_interval: float | None, duration: float, pin: bool
) -> dict[str, Any]:
    """Echo latency on one connection while ``conns`` idle ones are held (and pinged)."""
    port = free_port()
    server = start_server(port, ping_interval, pin)
    client = ["taskset", "-c", "1"] if pin else []
    try:
        for _ in range(100):  # until it answers an echo
            probe = collect_loadgen(
                spawn_loadgen(
                    [*client, str(loadgen), "--port", str(port), "--mode", "probe", "--path", "/ws"]
                ),
                10,
            )
            if probe.get("errors") == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the server did not answer")
        idle = subprocess.Popen(
            [
                *client,
                str(loadgen),
                "--port",
                str(port),
                "--mode",
                "idle",
                "--path",
                "/ws",
                "--conns",
                str(conns),
                "--hold",
                str(duration + 120),
                "--open-timeout",
                "120",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert idle.stdin is not None and idle.stdout is not None
        try:
            ready = idle.stdout.readline().strip()
            time.sleep(2 * (ping_interval or 1))  # the pings of freshly opened connections come due
            echo = collect_loadgen(
                spawn_loadgen(
                    [
                        *client,
                        str(loadgen),
                        "--port",
                        str(port),
                        "--mode",
                        "echo",
                        "--path",
                        "/ws",
                        "--conns",
                        "1",
                        "--size",
                        "64",
                        "--warmup",
                        "0.5",
                        "--duration",
                        str(duration),
                    ]
                ),
                duration + 60,
            )
            idle.stdin.write("\n")
            idle.stdin.flush()
            out, err = idle.communicate(timeout=60)
        except BaseException:
            idle.kill()
            idle.communicate()
            raise
        held = parse_loadgen(out, err, idle.returncode)
        return {"ready": ready, "echo": echo, "idle": held}
    finally:
        stop_server(server)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=10_000, help="idle connections held (default 10,000)")
    ap.add_argument("--ping-interval", type=float, default=1.0, help="seconds between pings (default 1)")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds of echo (default 10)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each setting")
    ap.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    opts = ap.parse_args()
    pin = not opts.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    loadgen = build_loadgen()
    print(
        f"native server, {opts.conns} idle connections, one echo client for {opts.duration} s "
        f"(64 bytes, one in flight); round trip in ms"
    )
    print("| keepalive | echo msg/s | p50 | p99 | max | idle errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for _ in range(opts.repeat):
        for interval in (None, opts.ping_interval):
            result = measure(loadgen, opts.conns, interval, opts.duration, pin)
            echo, idle = result["echo"], result["idle"]
            label = "off" if interval is None else f"every {interval:g} s"
            if echo.get("errors"):
                print(f"| {label} | error: {echo.get('first_error')} | | | | |")
                continue
            print(
                f"| {label} | {echo.get('msg_per_s', 0):,.0f} | {echo['p50_us'] / 1000:.2f} | "
                f"{echo['p99_us'] / 1000:.2f} | {echo['max_us'] / 1000:.2f} | {idle.get('errors', '?')} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
