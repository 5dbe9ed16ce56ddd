#!/usr/bin/env python3
"""What a server executes per connection, per message and per delivery: instruction counts.

    python bench/instructions.py                                  # trioapi vs the bare app, on hypercorn
    python bench/instructions.py --targets trio-websocket,trioapi-native --scenarios echo1,connrate
    python bench/instructions.py --scenarios bcast1000,bcast1000_hub --json /tmp/instructions.json

Wall-clock ratios on a shared machine move by 10-40% from one run to the next (see
``docs/benchmarks.md``); a count of executed instructions does not. Each target is served in a
process of its own under ``valgrind --tool=callgrind`` (the same in-process servers as
``bench/memprofile.py``), driven by the load generator twice, for a short and a long window,
and its instruction count is dumped after each (``callgrind_control -d``). Start-up, the
first echo and the connections a scenario opens are the same in both, so

    instructions per unit = (long count - short count) / (long units - short units)

where a unit is a completed connection (``connrate``), an echoed message (``echo1``, ``echo50``) or a
message written to one connection (``bcast1000``, the publisher's own copy included), counted
over the whole load generator run (``connections_all``, ``frames_in``), not only its measured
window: every unit the server worked for. Every run is a fresh process.

Instructions are not time: code that runs once per connection runs with cold caches, so its
share of the wall clock is larger than its share of the instructions. What the counts do say,
without noise, is how much work a framework adds to the server it runs on. Under valgrind a
server runs some 40 times slower; ``connrate`` uses 4 parallel loops (not 16) and the
broadcast rounds get a generous ``--round-timeout``. Needs valgrind (``apt-get install
valgrind``) and gcc.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import memprofile  # noqa: E402  (bench/memprofile.py, after the path is set)
import run as bench  # noqa: E402

#: scenario -> (load generator arguments, the unit's key in its report, the unit's name,
#: short and long measured seconds)
SCENARIOS: dict[str, tuple[list[str], str, str, float, float]] = {
    "connrate": (
        ["--mode", "connrate", "--path", "/ws", "--concurrency", "4"],
        "connections_all",
        "connection",
        5,
        25,
    ),
    "echo1": (["--mode", "echo", "--path", "/ws", "--conns", "1"], "frames_in", "message", 5, 25),
    "echo50": (["--mode", "echo", "--path", "/ws", "--conns", "50"], "frames_in", "message", 5, 25),
    "bcast1000": (
        ["--mode", "broadcast", "--path", "/broadcast", "--conns", "1000", "--round-timeout", "60"],
        "frames_in",
        "delivery",
        10,
        40,
    ),
    "bcast1000_hub": (
        ["--mode", "broadcast", "--path", "/broadcast-hub", "--conns", "1000", "--round-timeout", "60"],
        "frames_in",
        "delivery",
        10,
        40,
    ),
}
SECTION, TOOL = "instructions", "bench/instructions.py"
#: what each trioapi target is compared with: the same server without trioapi
BASELINES = {"trioapi-hypercorn": "asgi-hypercorn", "trioapi-native": "trio-websocket"}
HUB_TARGETS = ("trioapi-hypercorn", "trioapi-native")
SUMMARY = re.compile(rb"^summary:\s*(\d+)", re.MULTILINE)


def per_unit(short: tuple[int, int], long: tuple[int, int]) -> float:
    """Instructions per unit from two ``(instructions, units)`` runs of different lengths."""
    (i0, n0), (i1, n1) = short, long
    if n1 <= n0:
        raise ValueError(f"the long run completed no more units than the short one ({n1} <= {n0})")
    return (i1 - i0) / (n1 - n0)


def read_dump(base: Path) -> int:
    """The instruction count of the newest callgrind dump written for ``base``."""
    dumps = sorted(base.parent.glob(base.name + ".*"), key=lambda p: int(p.suffix[1:]))
    for dump in reversed(dumps):
        found = SUMMARY.search(dump.read_bytes())
        if found:
            return int(found.group(1))
    raise RuntimeError(f"no callgrind dump with a summary for {base}")


def wait_for_dump(base: Path, before: int, timeout: float = 120.0) -> None:
    """Wait until a dump newer than the ``before`` already there is complete."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dumps = list(base.parent.glob(base.name + ".*"))
        if len(dumps) > before and any(SUMMARY.search(d.read_bytes()) for d in dumps):
            return
        time.sleep(0.5)
    raise RuntimeError(f"callgrind wrote no dump for {base} within {timeout:.0f} s")


def measure_once(target: str, scenario: str, seconds: float, loadgen: Path, workdir: Path) -> tuple[int, int]:
    """Serve ``target`` under callgrind, drive ``scenario`` for ``seconds``: (instructions, units)."""
    args, unit_key, _, _, _ = SCENARIOS[scenario]
    port = bench.free_port()
    base = workdir / f"{target}.{scenario}.{seconds:g}.out"
    log = base.with_suffix(".log")
    with log.open("wb") as stderr:  # the child keeps its own descriptor
        server = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--trace-children=no",
                f"--callgrind-out-file={base}",
                sys.executable,
                __file__,
                "--serve",
                target,
                "--port",
                str(port),
            ],
            cwd=bench.REPO,
            env=bench.server_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        probe = [str(loadgen), "--mode", "probe", "--port", str(port), "--path", "/ws"]
        for _ in range(240):  # up to 2 minutes for the start-up under valgrind
            if server.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{target} exited with {server.returncode} before serving:\n{tail}")
            if subprocess.run(probe, capture_output=True, timeout=60, check=False).returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{target} never answered a probe")
        argv = [str(loadgen), "--port", str(port), *args, "--warmup", "0", "--duration", f"{seconds:g}"]
        argv += ["--open-timeout", "300", "--stall-timeout", "60"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 600, check=False)
        report = bench.parse_loadgen(proc.stdout, proc.stderr, proc.returncode)
        if report.get("errors") or report.get("error"):
            raise RuntimeError(f"{target} {scenario}: load generator reported {report}")
        before = len(list(workdir.glob(base.name + ".*")))
        subprocess.run(
            ["callgrind_control", "-d", str(server.pid)], capture_output=True, timeout=60, check=False
        )
        wait_for_dump(base, before)
        return read_dump(base), int(report[unit_key])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def measure(targets: list[str], scenarios: list[str], loadgen: Path) -> dict[str, dict[str, Any]]:
    """Instructions per unit for each target and scenario (targets without a hub route skip it)."""
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="trioapi-callgrind-") as tmp:
        for scenario in scenarios:
            _, _, unit, short_s, long_s = SCENARIOS[scenario]
            for target in targets:
                if scenario.endswith("_hub") and target not in HUB_TARGETS:
                    continue
                bench.log(f"{target} {scenario}: {short_s:g} s and {long_s:g} s under callgrind")
                short = measure_once(target, scenario, short_s, loadgen, Path(tmp))
                long = measure_once(target, scenario, long_s, loadgen, Path(tmp))
                value = per_unit(short, long)
                results.setdefault(target, {})[scenario] = {
                    "per_unit": value,
                    "unit": unit,
                    "runs": [short, long],
                }
                bench.log(f"  {value / 1000:,.1f} k instructions per {unit} ({short} -> {long})")
    return results


def render(results: dict[str, dict[str, Any]], scenarios: list[str]) -> str:
    """A Markdown table: thousands of instructions per unit, and each trioapi target over its baseline.

    The baseline of a scenario is the same scenario on the server trioapi runs on
    (``BASELINES``); for a ``_hub`` scenario it is the same target's naive loop.
    """
    targets = list(results)
    lines = [
        "| scenario | " + " | ".join(targets) + " |",
        "|---|" + "---:|" * len(targets),
    ]
    for scenario in scenarios:
        cells = []
        for target in targets:
            found = results[target].get(scenario)
            if found is None:
                cells.append("-")
                continue
            cell = f"{found['per_unit'] / 1000:,.1f} k"
            if scenario.endswith("_hub"):
                base = results[target].get(scenario.removesuffix("_hub"))
            else:
                base = results.get(BASELINES.get(target, ""), {}).get(scenario)
            if base is not None:
                cell += f" ({found['per_unit'] / base['per_unit']:.3f})"
            cells.append(cell)
        unit = SCENARIOS[scenario][2]
        lines.append(f"| {scenario} (per {unit}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def serve(target: str, port: int) -> None:
    """The ``--serve`` role: run one target in this process until killed."""
    import trio

    logging.disable(logging.INFO)
    trio.run(memprofile.serve_target, target, port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--targets", default="asgi-hypercorn,trioapi-hypercorn", help=", ".join(memprofile.TARGETS)
    )
    ap.add_argument(
        "--scenarios", default="connrate,echo1,echo50,bcast1000,bcast1000_hub", help=", ".join(SCENARIOS)
    )
    ap.add_argument("--json", type=Path, help="also write the raw counts here")
    ap.add_argument("--from-json", type=Path, help="render the table from a --json file instead of measuring")
    ap.add_argument(
        "--output", type=Path, help="write the table into this Markdown file, between its markers"
    )
    ap.add_argument("--serve", choices=memprofile.TARGETS, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if opts.serve:
        serve(opts.serve, opts.port)
        return 0
    targets = [t for t in opts.targets.split(",") if t]
    scenarios = [s for s in opts.scenarios.split(",") if s]
    unknown = [t for t in targets if t not in memprofile.TARGETS] + [
        s for s in scenarios if s not in SCENARIOS
    ]
    if unknown or not targets or not scenarios:
        ap.error(f"unknown or missing targets/scenarios: {unknown}")
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing and not opts.from_json:
        raise SystemExit(f"instructions: needs {' and '.join(missing)} (apt-get install valgrind)")
    if opts.from_json:
        results = json.loads(opts.from_json.read_text())
        scenarios = [s for s in SCENARIOS if any(s in found for found in results.values())]
    else:
        results = measure(targets, scenarios, bench.build_loadgen())
        if opts.json:
            opts.json.write_text(json.dumps(results, indent=1))
    table = render(results, scenarios)
    print(table)
    if opts.output:
        command = "python bench/instructions.py " + " ".join(argv if argv is not None else sys.argv[1:])
        section = "\n".join(
            [
                bench.begin_mark(SECTION, TOOL),
                "",
                f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.  ",
                f"Machine: {bench.machine_summary()}, {valgrind_version()}.",
                "",
                table,
                "",
                bench.end_mark(SECTION),
                "",
            ]
        )
        bench.write_output(opts.output, section, SECTION, TOOL)
    return 0


def valgrind_version() -> str:
    """``valgrind-3.19.0``, or what to install."""
    try:
        return subprocess.run(
            ["valgrind", "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except OSError:
        return "valgrind not installed"


if __name__ == "__main__":
    sys.exit(main())
