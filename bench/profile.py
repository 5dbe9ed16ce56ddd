#!/usr/bin/env python3
"""Profile a benchmark server under load with py-spy and summarise where its CPU goes.

    pip install py-spy
    python bench/profile.py --server trioapi-hypercorn --scenario echo50 --seconds 10
    python bench/profile.py --server asgi-hypercorn --scenario echo50 --raw /tmp/asgi.txt

The server is started exactly as ``bench/run.py`` starts it (pinned to CPU 0), the load generator
drives one scenario for ``--seconds`` (plus a warm-up), and py-spy samples the busiest process of
the server's tree meanwhile.  The summary gives self time by function and by package, and the
share of samples by *layer*: socket system calls and trio's scheduler first (by the leaf
frame), then the innermost frame that belongs to trioapi, the server (hypercorn /
trio-websocket / wsproto) or the app, walking out from the leaf; so "trioapi" counts time
spent in trioapi's own code and in the trio primitives it calls directly.
"""

from __future__ import annotations

import argparse
import collections
import linecache
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench

LAYERS = [
    ("trioapi", re.compile(r"trioapi/")),
    ("app", re.compile(r"bench/servers/")),
    ("hypercorn", re.compile(r"hypercorn/")),
    ("trio-websocket", re.compile(r"trio_websocket/")),
    ("wsproto/h11", re.compile(r"(wsproto|h11)/")),
    ("trio", re.compile(r"(trio|outcome)/|<attrs generated methods (trio|outcome)")),
]
FRAME = re.compile(r"(?P<fn>.*) \((?P<file>.*?):(?P<line>\d+)\)$")


def short_file(path: str) -> str:
    path = re.sub(r".*site-packages/", "", path)
    path = re.sub(r".*/lib/python3\.\d+/", "stdlib/", path)
    return re.sub(r".*/(trioapi|bench)/", r"\1/", path)


def parse_frame(frame: str) -> tuple[str, str]:
    m = FRAME.match(frame)
    if not m:
        return frame, frame
    file = short_file(m["file"])
    return f"{m['fn']} ({file})", file


SYSCALL_LEAVES = re.compile(r"_nonblocking_helper|_epoll_wait|socket\.accept|_SocketType\.(shutdown|close)")
#: trioapi's native transport calls the plain socket itself: a leaf on such a line is a system call.
SYSCALL_LINES = re.compile(r"\b(raw|listener)\.(recv|send|accept)\(")
OWNED = re.compile(r"^(trioapi|bench|hypercorn|trio_websocket|wsproto|h11)/")


def is_syscall_line(frame: str) -> bool:
    m = FRAME.match(frame)
    return bool(m) and bool(SYSCALL_LINES.search(linecache.getline(m["file"], int(m["line"]))))


def layer_of(stack: list[tuple[str, str]], leaf: str) -> str:
    leaf_fn = stack[-1][0]
    if SYSCALL_LEAVES.search(leaf_fn) or is_syscall_line(leaf):
        return "socket syscalls (trio/_socket.py, epoll, trioapi's own socket calls)"
    loop = max(
        (i for i, (fn, _) in enumerate(stack) if fn.startswith(("run (trio/", "unrolled_run"))), default=-1
    )
    if loop >= 0 and not any(OWNED.search(file) for _, file in stack[loop + 1 :]):
        return "trio scheduler / I/O manager"
    for fn, file in reversed(stack):
        for name, pattern in LAYERS:
            if pattern.search(file) or pattern.search(fn):
                if name == "trio":
                    break  # trio primitives count for whoever called them: keep walking out
                return name
    return "trio / other"


def summarise(raw: Path, top: int) -> str:
    self_fn: collections.Counter[str] = collections.Counter()
    self_pkg: collections.Counter[str] = collections.Counter()
    layers: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack_text, count_text = line.rsplit(" ", 1)
        n = int(count_text)
        frames = stack_text.split(";")
        stack = [parse_frame(f) for f in frames]
        total += n
        fn, file = stack[-1]
        self_fn[fn] += n
        self_pkg[file.split("/")[0] if "/" in file else file] += n
        layers[layer_of(stack, frames[-1])] += n
    out = [
        f"samples: {total}",
        "",
        "layer (innermost owner of the leaf, trio primitives charged to their caller):",
    ]
    out += [f"  {100 * v / total:5.1f}%  {k}" for k, v in layers.most_common()]
    out += ["", "self time by package / top-level folder:"]
    out += [f"  {100 * v / total:5.1f}%  {k}" for k, v in self_pkg.most_common(12)]
    out += ["", "self time by function:"]
    out += [f"  {100 * v / total:5.1f}%  {k}" for k, v in self_fn.most_common(top)]
    return "\n".join(out)


def busiest(pids: list[int]) -> int:
    def cpu(pid: int) -> int:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return -1
        fields = stat[stat.rindex(")") + 2 :].split()
        return int(fields[11]) + int(fields[12])

    return max(pids, key=cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default="trioapi-hypercorn", choices=list(bench.SERVER_BY_NAME))
    ap.add_argument(
        "--scenario",
        default="echo50",
        # Every scenario of the driver but "idle", which has no load to profile.
        choices=[scenario for scenario in bench.SCENARIOS if scenario != "idle"],
    )
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument(
        "--nonblocking", action="store_true", help="py-spy --nonblocking (no pauses; torn stacks)"
    )
    ap.add_argument("--raw", help="keep py-spy's collapsed stacks in this file")
    ap.add_argument("--top", type=int, default=25)
    opts = ap.parse_args()
    if not shutil.which("py-spy"):
        raise SystemExit("profile: py-spy is needed (pip install py-spy)")
    if not 1 <= opts.seconds <= 120:
        raise SystemExit("profile: --seconds must be in [1, 120]")
    run_opts = bench.parse_args(["--warmup", "1", "--duration", str(opts.seconds + 3)])
    harness = bench.Harness(run_opts, bench.build_loadgen())
    server = bench.SERVER_BY_NAME[opts.server]
    raw = Path(opts.raw) if opts.raw else Path(tempfile.mkstemp(suffix=".txt", prefix="pyspy-")[1])
    scenario = harness.loadgen_args(server, opts.scenario)
    if scenario is None:
        raise SystemExit(f"profile: {opts.server} has no route for {opts.scenario}")
    running = harness.start(server)
    try:
        load = subprocess.Popen(harness.loadgen_argv(running, scenario), stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        target = busiest(bench.session_pids(running.proc.pid))
        spy = ["py-spy", "record", "--pid", str(target), "--rate", str(opts.rate)]
        spy += ["--duration", str(int(opts.seconds)), "--format", "raw", "--output", str(raw)]
        if opts.nonblocking:
            spy.append("--nonblocking")
        subprocess.run(spy, check=True, timeout=opts.seconds + 60, capture_output=True)
        out, _ = load.communicate(timeout=opts.seconds + 60)
    finally:
        harness.stop(running)
    print(
        f"# {opts.server} / {opts.scenario}: py-spy {opts.rate} Hz for {opts.seconds:.0f} s on pid {target}"
    )
    print(f"loadgen (slowed by the sampling pauses): {out.strip()}")
    print(summarise(raw, opts.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
