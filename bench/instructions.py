"""The regression gate: CPU instructions per event of the record path, the fold and the batch's payload,
counted by valgrind.

python -m bench.instructions --measure   # count every row and print the table
python -m bench.instructions --check     # exit 1 if any row costs more than +15 % over its baseline
python -m bench.instructions --update    # count, and write bench/instructions_baseline.json

Timings on this shared 2-core machine move by more than the regressions worth catching; instruction
counts do not. Each row's fixed corpus (bench/corpus.py) is read and folded once to warm what a running
sidecar has warm, then once more inside `sys.call_tracing`, whose C function `_PyEval_CallTracing` is
what callgrind collects in (`--collect-atstart=no --toggle-collect`) and dumps after (`--dump-after`):
one dump per measured region, nothing else counted. The string hash seed is fixed, so dicts and sets
take the same shapes on every run. When a change is meant to cost more, move the baseline with
`--update` and commit the file with the change, saying why (docs/performance.md, "Regression gate").
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from core.compiled import hot_path, stale_reason

BASELINE = Path(__file__).resolve().parent / "instructions_baseline.json"
TOLERANCE = 0.15  # a row more than this over its baseline fails the check
PARTS = ("record path", "fold", "payload")  # the measured regions of each row, in the order the child runs them
REGION = "_PyEval_CallTracing"  # the C function behind sys.call_tracing: nothing else here calls it
_TOTAL = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)

Counts = dict[str, dict[str, float]]  # row -> part -> instructions per event


@dataclass
class Line:
    row: str
    part: str
    baseline: float | None  # None: the baseline has no such row
    now: float

    @property
    def ratio(self) -> float:
        return self.now / self.baseline if self.baseline else float("inf")

    def over(self, tolerance: float = TOLERANCE) -> bool:
        return self.ratio > 1 + tolerance


def compare(baseline: Counts, now: Counts) -> list[Line]:
    return [
        Line(row, part, baseline.get(row, {}).get(part), n) for row, parts in now.items() for part, n in parts.items()
    ]


def table(lines: list[Line], tolerance: float = TOLERANCE) -> str:
    out = [
        "| row | part | baseline instr/event | now | ratio | verdict |",
        "|---|---|---:|---:|---:|---|",
    ]
    for ln in lines:
        if ln.baseline is None:
            verdict, base, ratio = "no baseline: run --update", "—", "—"
        else:
            verdict = f"OVER +{tolerance:.0%}" if ln.over(tolerance) else "ok"
            base, ratio = f"{ln.baseline:,.0f}", f"{ln.ratio:.4f}"
        out.append(f"| {ln.row} | {ln.part} | {base} | {ln.now:,.0f} | {ratio} | {verdict} |")
    return "\n".join(out)


def failed(lines: list[Line], tolerance: float = TOLERANCE) -> list[Line]:
    return [ln for ln in lines if ln.baseline is None or ln.over(tolerance)]


def totals(dump_text: str) -> int:
    """The instructions a callgrind dump holds (its `totals:` or `summary:` line)."""
    found = _TOTAL.search(dump_text)
    if found is None:
        raise ValueError("no totals line in the callgrind dump")
    return int(found.group(1))


def measure(row_keys: str) -> Counts:
    """Every selected row's instructions per event, from one process under callgrind."""
    from bench.corpus import corpus  # the parent builds the corpus natively: under valgrind it takes minutes
    from bench.workload_rows import select

    corpora = [corpus(row) for row in select(row_keys)]
    with tempfile.TemporaryDirectory(prefix="ecomind-instr-") as tmp:
        corpus_path, out = Path(tmp) / "corpus.pickle", Path(tmp) / "callgrind.out"
        corpus_path.write_bytes(pickle.dumps(corpora))
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            f"--toggle-collect={REGION}",
            f"--dump-after={REGION}",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.instructions",
            "--child",
            str(corpus_path),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1200, check=False)
        if done.returncode != 0:
            raise SystemExit(f"valgrind failed ({done.returncode}):\n{done.stderr[-3000:]}")
        regions = json.loads(done.stdout.strip().splitlines()[-1])
        # One dump per measured region, numbered in the order the child ran them (callgrind.out.1, .2, ...).
        counts = [totals(Path(f"{out}.{i + 1}").read_text()) for i in range(len(regions))]
    result: Counts = {}
    for (row, part, events), instructions in zip(regions, counts, strict=True):
        result.setdefault(row, {})[part] = instructions / events
    return result


def child(corpus_path: Path) -> None:
    """Run under callgrind: each row read and folded once to warm, then once counted per part."""
    from bench.corpus import default_calendar, fold, payload, read_records
    from streams.runtime import tune_gc

    corpora = pickle.loads(corpus_path.read_bytes())
    calendar = default_calendar()
    tune_gc()  # as the worker does at start (streams/runtime.py): the collector's work is part of the cost
    regions = []
    for c in corpora:
        # Warm: the calendar's days, msgspec's, aiokafka's and the store's first calls.
        payload(fold(calendar, *read_records(c)), *read_records(c))
        raw_parts, enriched_parts = sys.call_tracing(read_records, (c,))
        delta = sys.call_tracing(fold, (calendar, raw_parts, enriched_parts))
        sys.call_tracing(payload, (delta, raw_parts, enriched_parts))
        regions += [(c.key, part, c.events) for part in PARTS]
    print(json.dumps(regions))


def environment() -> dict[str, str]:
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    pkgs = {pkg: version(pkg) for pkg in ("aiokafka", "msgspec", "orjson")}
    # The child runs the same checkout: the compiled hot path (core/compiled.py) or the sources.
    built = {"hot_path": hot_path()}
    return {"python": platform.python_version(), "machine": platform.machine(), "valgrind": valgrind, **pkgs, **built}


def write_baseline(now: Counts, path: Path = BASELINE) -> None:
    from bench.corpus import RAW_EVENTS_PER_ROW

    # Rows not counted this time (--rows) keep their stored figures.
    rows = json.loads(path.read_text())["rows"] if path.exists() else {}
    rows |= {row: {part: round(n, 1) for part, n in parts.items()} for row, parts in now.items()}
    body = {
        "about": "instructions per event (raw + enriched) by row and part; python -m bench.instructions --update",
        "environment": environment(),
        "raw_events_per_row": RAW_EVENTS_PER_ROW,
        "rows": rows,
    }
    path.write_text(json.dumps(body, indent=2) + "\n")


def report(now: Counts, gate: bool, path: Path = BASELINE) -> int:
    """The table against the stored baseline; with `gate`, 1 when a row is over it (or has none)."""
    stored = json.loads(path.read_text()) if path.exists() else {"rows": {}}
    lines = compare(stored["rows"], now)
    print(table(lines))
    here = environment()
    counted_on = stored.get("environment", {}).get("hot_path")
    if gate and counted_on and counted_on != here["hot_path"]:
        # The compiled build executes a fraction of the sources' instructions: comparing one with the other
        # would pass anything or fail everything.
        print(f"the baseline was counted on the {counted_on} hot path and this run is on the {here['hot_path']} one:")
        print("  ./scripts/compile builds it (or ./scripts/compile --clean runs the sources), then check again")
        return 1
    if "environment" in stored and stored["environment"] != here:
        # Another Python, library or valgrind may execute other instructions: say so beside the verdict.
        print(f"note: the baseline was counted in another environment: {stored['environment']}")
    bad = failed(lines)
    if not bad:
        print(f"every row within +{TOLERANCE:.0%} of its baseline")
        return 0
    print(f"{len(bad)} row(s) over +{TOLERANCE:.0%} of the baseline, or without one. A cost that is meant moves it:")
    print("  .venv/bin/python -m bench.instructions --update   # then commit bench/instructions_baseline.json")
    return 1 if gate else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--measure", action="store_true", help="count, and print the table against the baseline")
    mode.add_argument("--check", action="store_true", help=f"the same; exit 1 over +{TOLERANCE * 100:.0f}%% on a row")
    mode.add_argument("--update", action="store_true", help=f"count, and write {BASELINE.name}")
    mode.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # the process valgrind runs
    p.add_argument("--rows", default="all", help="comma-separated rows (bench/workload_rows.py); all by default")
    args = p.parse_args()
    if args.child:
        child(args.child)
        return
    stale = stale_reason()
    if stale:  # counts of code that is not the checkout's would pass or move the baseline wrongly
        raise SystemExit(f"bench.instructions: {stale}")
    now = measure(args.rows)
    if args.update:
        write_baseline(now)
        print(f"wrote {BASELINE}")
    raise SystemExit(report(now, gate=args.check))


if __name__ == "__main__":
    main()
