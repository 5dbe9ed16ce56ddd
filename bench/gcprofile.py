#!/usr/bin/env python3
"""What the garbage collector does while a server works: collections, their time, and cyclic garbage.

    python bench/gcprofile.py trioapi-hypercorn --scenario bcast1000_hub
    python bench/gcprofile.py trioapi-hypercorn --scenario connrate --garbage
    python bench/gcprofile.py asgi-hypercorn trioapi-hypercorn --scenario connrate --threshold 700

Runs the server inside this process (as ``bench/memprofile.py`` does), makes one echo, then
collects, freezes the heap and sets generation 0's threshold (``--threshold``; trioapi's default
is ``trioapi.server._process.YOUNG_THRESHOLD``) and drives one scenario with the load generator while
``gc.callbacks`` count every collection and time it. The report gives the scenario's rate, the
collections by generation and the seconds spent in them, against the wall time of the run.

``--garbage`` instead turns automatic collection off for the run and, at the end, collects
with ``gc.DEBUG_SAVEALL``: what is left is exactly what only the collector could free (objects
in reference cycles), counted per completed connection and by type. A framework that leaves no
cycles behind adds nothing to the server's own.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import memprofile  # noqa: E402  (bench/memprofile.py, after the path is set)
import run as bench  # noqa: E402

from trioapi.server._process import YOUNG_THRESHOLD  # noqa: E402

#: scenario -> (load generator mode, path, extra arguments, the rate's key in its report)
SCENARIOS: dict[str, tuple[str, str, list[str], str]] = {
    "echo50": ("echo", "/ws", ["--conns", "50"], "msg_per_s"),
    "connrate": ("connrate", "/ws", [], "conn_per_s"),
    "bcast1000": ("broadcast", "/broadcast", ["--conns", "1000"], "deliveries_per_s"),
    "bcast1000_hub": ("broadcast", "/broadcast-hub", ["--conns", "1000"], "deliveries_per_s"),
}


class Collections:
    """A ``gc.callbacks`` entry counting collections by generation and the time they take."""

    def __init__(self) -> None:
        self.count: collections.Counter[int] = collections.Counter()
        self.seconds: collections.Counter[int] = collections.Counter()
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count[info["generation"]] += 1
            self.seconds[info["generation"]] += time.perf_counter() - self._started


async def measure(target: str, scenario: str, threshold: int, garbage: bool, loadgen: Path) -> None:
    mode, path, extra, rate_key = SCENARIOS[scenario]
    if scenario.endswith("_hub") and target not in ("trioapi-hypercorn", "trioapi-native"):
        raise SystemExit(f"gcprofile: {target} has no hub route")
    async with trio.open_nursery() as nursery:
        port = await memprofile.start_target(nursery, target, loadgen)
        gc.collect()
        gc.freeze()
        gc.set_threshold(threshold, 10, 10)
        argv = [str(loadgen), "--mode", mode, "--path", path, "--port", str(port)]
        argv += [*extra, "--warmup", "1", "--duration", "4"]
        seen = Collections()
        if garbage:
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
        else:
            gc.callbacks.append(seen)
        started = time.perf_counter()
        try:
            with trio.fail_after(120):
                done = await trio.run_process(argv, capture_stdout=True, check=False)
            wall = time.perf_counter() - started
            report = json.loads(done.stdout.decode().strip().splitlines()[-1])
            await trio.sleep(0.5)  # let the last connections finish closing
            if garbage:
                gc.collect()
                found = list(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
            if seen in gc.callbacks:
                gc.callbacks.remove(seen)
        nursery.cancel_scope.cancel()
    print(f"## {target} / {scenario}, generation-0 threshold {threshold}")
    print(f"{rate_key} = {report.get(rate_key, 0):,.0f}")
    if garbage:
        # Every connection opened, warm-up included: all of them may have left garbage.
        completed = report.get("opened") or report.get("connections") or 1
        kinds = collections.Counter(type(o).__name__ for o in found)
        print(f"cyclic garbage: {len(found):,} objects, {len(found) / completed:.0f} per connection")
        if kinds:
            print("  " + ", ".join(f"{k} {v / completed:.1f}" for k, v in kinds.most_common(15)))
    else:
        spent = sum(seen.seconds.values())
        by_gen = ", ".join(f"gen {g}: {seen.count[g]} in {seen.seconds[g]:.3f} s" for g in sorted(seen.count))
        print(f"collections: {by_gen or 'none'}; {spent:.2f} s of {wall:.1f} s ({100 * spent / wall:.1f}%)")
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="+", choices=memprofile.TARGETS)
    ap.add_argument("--scenario", choices=list(SCENARIOS), default="connrate")
    ap.add_argument("--threshold", type=int, default=YOUNG_THRESHOLD, help="generation 0's threshold")
    ap.add_argument("--garbage", action="store_true", help="count cyclic garbage instead of timing")
    opts = ap.parse_args()
    if not 100 <= opts.threshold <= 1_000_000:
        raise SystemExit("gcprofile: --threshold must be in [100, 1000000]")
    logging.disable(logging.INFO)
    loadgen = bench.build_loadgen()
    args = ["--scenario", opts.scenario, "--threshold", str(opts.threshold)]
    if memprofile.each_in_own_process(__file__, opts.targets, args + (["--garbage"] if opts.garbage else [])):
        return 0
    trio.run(measure, opts.targets[0], opts.scenario, opts.threshold, opts.garbage, loadgen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
