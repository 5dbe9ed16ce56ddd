#!/usr/bin/env python3
"""What a large message arriving in small pieces costs the native server (Autobahn 9.5/9.6's shape).

    python bench/large_messages.py                 # 1 MiB text in 64-byte pieces, and more
    python bench/large_messages.py --size 4194304 --pieces 64,1024

Two measurements:

* the frame reader alone (``trioapi.protocol.FrameReader``, no I/O): the time to
  join one message fed in pieces of each size, as one frame and as fragments
  of that size. Linear assembly shows as a time per MiB that does not grow
  with the message;
* the server end to end: ``trioapi run --server native`` (pinned to CPU 0 when
  ``taskset`` is there) echoes a text message a client here writes in pieces,
  each write its own ``send()`` (TCP_NODELAY) after a pause of ``--pause`` s, as
  Autobahn's "chopped" cases do. It reports the server's CPU seconds per
  message (from ``/proc``): the server's own work, whatever the pace of the
  client.

Not part of CI. Only 127.0.0.1 is used; the server's process group is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.run import (  # noqa: E402 - the bench folder is not a package users install
    HOST,
    REPO,
    SERVER_BY_NAME,
    free_port,
    server_env,
    session_pids,
)
from trioapi.protocol import FrameReader  # noqa: E402

MASK = b"\x11\x22\x33\x44"


def masked_frame(first: int, payload: bytes) -> bytes:
    """A client frame (``first``: FIN, opcode) masked with MASK."""
    size = len(payload)
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 65536:
        header = bytes((first, 0x80 | 126)) + struct.pack("!H", size)
    else:
        header = bytes((first, 0x80 | 127)) + struct.pack("!Q", size)
    key = (MASK * (size // 4 + 1))[:size]
    body = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")
    return header + MASK + body


def fragments(payload: bytes, piece: int) -> bytes:
    """``payload`` as a text message in fragments of ``piece`` bytes."""
    parts = [payload[i : i + piece] for i in range(0, len(payload), piece)] or [b""]
    return b"".join(
        masked_frame((0x80 if n == len(parts) - 1 else 0) | (0x1 if n == 0 else 0x0), part)
        for n, part in enumerate(parts)
    )


def reader_seconds(wire: bytes, piece: int, size: int) -> float:
    """Seconds to feed ``wire`` to a FrameReader ``piece`` bytes at a time (best of three)."""
    best = float("inf")
    for _ in range(3):
        reader = FrameReader(size + 1)
        inbox: deque[str | bytes] = deque()
        start = time.perf_counter()
        for pos in range(0, len(wire), piece):
            reader.feed(wire[pos : pos + piece], inbox)
        best = min(best, time.perf_counter() - start)
        assert len(inbox) == 1 and len(inbox[0]) == size
    return best


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def handshake(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def end_to_end(size: int, pieces: list[int], pause: float, repeat: int) -> None:
    port = free_port()
    argv = [*SERVER_BY_NAME["trioapi-native"].argv(port), "--max-message-size", str(size + 1)]
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        argv = ["taskset", "-c", "0", *argv]
    server = subprocess.Popen(
        argv,
        cwd=REPO,
        env=server_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(100):
            try:
                handshake(port).close()
                break
            except OSError:
                time.sleep(0.1)
        pids = session_pids(server.pid)
        print(f"\nend to end: one {size:,}-byte text message, a write per piece, {pause * 1e6:g} µs between")
        print("| piece | writes | wall s | server CPU s |")
        print("|---:|---:|---:|---:|")
        payload = b"a" * size
        expected = len(masked_frame(0x81, payload)) - 4  # the echo: unmasked, same header size
        for piece in pieces:
            for _ in range(repeat):
                sock = handshake(port)
                wire = masked_frame(0x81, payload)
                cpu = cpu_seconds(pids)
                start = time.perf_counter()
                for pos in range(0, len(wire), piece):
                    sock.sendall(wire[pos : pos + piece])
                    if pause:
                        time.sleep(pause)
                got = 0
                while got < expected:
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        raise RuntimeError("the server closed the connection")
                    got += len(chunk)
                wall = time.perf_counter() - start
                used = cpu_seconds(pids) - cpu
                sock.close()
                print(f"| {piece} | {len(wire) // piece + 1:,} | {wall:.2f} | {used:.2f} |", flush=True)
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(server.pid, sig)
                server.wait(10)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1 << 20, help="message bytes (default 1 MiB)")
    ap.add_argument("--pieces", default="64,128,1024,65536", help="piece sizes, comma-separated")
    ap.add_argument("--pause", type=float, default=0.0001, help="seconds between writes end to end")
    ap.add_argument("--repeat", type=int, default=1, help="end-to-end runs per piece size")
    ap.add_argument("--no-server", action="store_true", help="only the frame reader")
    opts = ap.parse_args()
    pieces = [int(p) for p in opts.pieces.split(",")]
    payload = b"a" * opts.size
    print(f"frame reader alone: one {opts.size:,}-byte text message, ms (best of 3)")
    print("| piece | one frame, fed in pieces | fragments of that size |")
    print("|---:|---:|---:|")
    for piece in pieces:
        one = reader_seconds(masked_frame(0x81, payload), piece, opts.size)
        many = reader_seconds(fragments(payload, piece), 65536, opts.size)
        print(f"| {piece} | {one * 1000:.1f} | {many * 1000:.1f} |", flush=True)
    if not opts.no_server:
        end_to_end(opts.size, pieces, opts.pause, opts.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
