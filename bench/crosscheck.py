#!/usr/bin/env python3
"""Cross-check: trioapi measured by the reference harness behind the benchmark issue's figures.

    cp -r ../shared/bench /tmp/refbench && /tmp/refbench/setup.sh   # once: its venv and load generator
    python bench/crosscheck.py --harness /tmp/refbench --reps 5 --output docs/benchmarks.md
    python bench/crosscheck.py --from /tmp/refbench/results/crosscheck-A --from .../crosscheck-B \
        --output docs/benchmarks.md                                  # pool finished runs; run nothing

The reference harness is someone else's tool: its own C load generator and driver, its own bare
ASGI app, FastAPI app and trio-websocket server, pinned versions in its own virtualenv, one
server at a time. This script asks it to serve ``bench.servers.trioapi_echo`` (the seed's basic
example) on hypercorn and on trioapi's native server next to its built-in servers, with this
checkout on ``PYTHONPATH`` (nothing is installed into its virtualenv), then renders the ratios the
issue sets targets for, each the median of the repetitions' own ratios (the harness rotates the
server order every repetition, so both figures of a ratio come from the same few minutes), and
appends the harness's own ``summary.md`` untouched. Several finished runs given with ``--from``
are pooled: every repetition is paired within its own run, and each run's summary follows.
With ``--output`` the result replaces the ``crosscheck`` section of the doc.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (bench/run.py, after the path is set)

SECTION = "crosscheck"
TOOL = "bench/crosscheck.py"

#: trioapi's servers, in the harness's command syntax ({venv}, {python}, {port} are its own).
TRIOAPI_SERVERS = {
    "trioapi-hypercorn": (
        "{venv}/bin/hypercorn bench.servers.trioapi_echo:app --worker-class trio --bind 127.0.0.1:{port}"
    ),
    "trioapi-native": (
        "{python} -m trioapi run bench.servers.trioapi_echo:app --server native"
        " --host 127.0.0.1 --port {port}"
    ),
}

#: The harness's built-in servers that the ratios compare with.
BASELINES = "asgi-hypercorn-trio,trio-websocket-raw,fastapi-hypercorn-trio,fastapi-uvicorn-auto"

#: (column, scenario, where the figure is in one of the harness's records)
COLUMNS: list[tuple[str, str, tuple[str, ...]]] = [
    ("1c 64B msg/s", "echo1", ("loadgen", "msgs_per_s")),
    ("50c 64B msg/s", "echo50", ("loadgen", "msgs_per_s")),
    ("50c 16KiB msg/s", "echo50_16k", ("loadgen", "msgs_per_s")),
    ("bcast deliveries/s", "bcast50", ("loadgen", "deliveries_per_s")),
    ("conns/s", "connrate", ("loadgen", "conns_per_s")),
    ("KiB/conn", "idle", ("kib_per_conn",)),
]

#: (mine, base, what the issue asks of the ratio)
RATIOS = [
    ("trioapi-hypercorn", "asgi-hypercorn-trio", "≥ 0.95 (KiB/conn ≤ 1.1)"),
    ("trioapi-native", "trio-websocket-raw", "≥ 1.0 on echo and broadcast"),
    ("trioapi-hypercorn", "fastapi-hypercorn-trio", "none (what porting changes)"),
    ("trioapi-native", "fastapi-uvicorn-auto", "none (the figure to push towards)"),
]


def figure(record: dict[str, Any], where: tuple[str, ...]) -> float | None:
    """One figure of a harness record, or None when the run failed to produce it."""
    value: Any = record
    for key in where:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) and value > 0 else None


def results_of(
    records: list[dict[str, Any]], server: str, scenario: str, where: tuple[str, ...]
) -> list[dict[str, Any]]:
    """One server's figures in one scenario, as ``bench/run.py`` keeps results: ``rep`` and ``value``.

    ``rep`` is (run, repetition), so repetitions pair only within their own run.
    """
    out = []
    for r in records:
        if r.get("server") == server and r.get("scenario") == scenario:
            value = figure(r, where)
            if value is not None:
                out.append({"rep": (r["run"], int(r["rep"])), "value": value})
    return out


def ratio_cell(
    records: list[dict[str, Any]], mine: str, base: str, scenario: str, where: tuple[str, ...]
) -> str:
    """Median of the repetitions' own ratios mine/base, with their range; '-' if none."""
    ratios = sorted(
        bench.paired_ratios(
            results_of(records, mine, scenario, where), results_of(records, base, scenario, where), "value"
        )
    )
    if not ratios:
        return "-"
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}"
    return f"{statistics.median(ratios):.2f} ({ratios[0]:.2f} to {ratios[-1]:.2f})"


def versions_of(meta: dict[str, Any]) -> str:
    """The package versions a harness run recorded, as one line."""
    return ", ".join(
        v if str(v).lower().startswith(k.lower()) else f"{k} {v}" for k, v in meta.get("versions", {}).items()
    )


def render(outdirs: list[Path], command: str) -> str:
    """The doc section for finished harness runs (their repetitions pooled, each paired within its run)."""
    records: list[dict[str, Any]] = []
    metas: list[dict[str, Any]] = []
    summaries: list[str] = []
    for run, outdir in enumerate(outdirs):
        raw = (outdir / "raw" / "runs.jsonl").read_text().splitlines()
        records += [{**json.loads(line), "run": run} for line in raw if line.strip()]
        metas.append(json.loads((outdir / "meta.json").read_text()))
        summaries.append((outdir / "summary.md").read_text().strip())
    servers = {name for meta in metas for name in meta.get("servers", [])}
    stamps = ", ".join(f"`{meta.get('stamp', '?')}`" for meta in metas)
    versions = {versions_of(meta) for meta in metas}
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    reps = sum(int(meta.get("reps", 0)) for meta in metas)
    lines = [
        bench.begin_mark(SECTION, TOOL),
        f"Generated by `{command}` on {stamp}, from the harness run{'s' if len(metas) > 1 else ''} {stamps} "
        f"({reps} repetitions; "
        + (f"versions: {versions.pop()})." if len(versions) == 1 else "versions differ: see each summary)."),
        "",
        "Ratios, each the median of the repetitions' own ratios (range in brackets):",
        "",
        "| ratio | " + " | ".join(c for c, _, _ in COLUMNS) + " | target |",
        "|---|" + "---:|" * len(COLUMNS) + "---|",
    ]
    for mine, base, target in RATIOS:
        if mine in servers and base in servers:
            cells = [ratio_cell(records, mine, base, scenario, where) for _, scenario, where in COLUMNS]
            lines.append(f"| {mine} / {base} | " + " | ".join(cells) + f" | {target} |")
    for meta, summary in zip(metas, summaries, strict=True):
        lines += [
            "",
            f'??? note "The harness\'s own summary of run {meta.get("stamp", "?")}, as it wrote it"',
            "",
        ]
        lines += [f"    {line}".rstrip() for line in summary.splitlines()]
    lines += [bench.end_mark(SECTION), ""]
    return "\n".join(lines)


def run_harness(harness: Path, opts: argparse.Namespace, outdir: Path) -> None:
    """Run the reference harness on trioapi's servers and its baselines, results into ``outdir``."""
    venv_python = harness / ".venv" / "bin" / "python"
    if not venv_python.exists():
        bench.log(f"{harness} has no .venv yet: running its setup.sh")
        subprocess.run([str(harness / "setup.sh")], check=True, timeout=900)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    probe = subprocess.run(
        [str(venv_python), "-c", "import trioapi, bench.servers.trioapi_echo"],
        env=env,
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        raise SystemExit(f"the harness's venv cannot import trioapi from {REPO}:\n{probe.stderr}")
    argv = [str(venv_python), str(harness / "run.py"), "--out", str(outdir), "--servers", opts.baselines]
    for name, command in TRIOAPI_SERVERS.items():
        argv += ["--server", command, "--name", name]
    argv += ["--quick"] if opts.quick else ["--reps", str(opts.reps)]
    if opts.scenarios:
        argv += ["--scenarios", opts.scenarios]
    bench.log("running " + shlex.join(argv))
    subprocess.run(argv, cwd=harness, env=env, check=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--harness", type=Path, help="a writable copy of the reference harness (to run it)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    ap.add_argument("--scenarios", help="the harness's scenario list (default: all of them)")
    ap.add_argument(
        "--baselines", default=BASELINES, help=f"its built-in servers to compare with (default {BASELINES})"
    )
    ap.add_argument("--quick", action="store_true", help="its smoke run (1 s scenarios, 1 repetition)")
    ap.add_argument("--out", type=Path, help="its results folder (default HARNESS/results/crosscheck-STAMP)")
    ap.add_argument(
        "--from",
        dest="sources",
        type=Path,
        action="append",
        help="a finished run's results (repeatable); run nothing",
    )
    ap.add_argument("--output", type=Path, help="replace the crosscheck section of this markdown file")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.sources:
        outdirs = [source.resolve() for source in opts.sources]
    else:
        if opts.harness is None:
            raise SystemExit(
                "give --harness (a copy of the reference harness to run) or --from (finished runs)"
            )
        harness = opts.harness.resolve()
        if not (harness / "run.py").exists():
            raise SystemExit(f"{harness} is not the reference harness (no run.py)")
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        outdirs = [(opts.out or harness / "results" / f"crosscheck-{stamp}").resolve()]
        run_harness(harness, opts, outdirs[0])
    command = "python bench/crosscheck.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    section = render(outdirs, command)
    if opts.output:
        bench.write_output(opts.output, section, SECTION, TOOL)
        bench.log(f"wrote the {SECTION} section of {opts.output}")
    else:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
