"""Sizing cost per call: the sizer's pure computation, in process (no bus), against the 20 µs target.

    python -m tests.bench.sizing [--calls 20000] [--repeat 5] [--no-write]

Each case sizes the same intent ``--calls`` times, ``--repeat`` times over; the cost per call is the fastest
repeat's mean (the least disturbed by the rest of the machine), with the median repeat and a p99 of single calls
timed one by one next to it. Writes its own section of BENCHMARKS.md (``make bench`` runs it too).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from ordermesh.contract.wire import Fixed, Intent, Kelly, OrderRequest, RiskPct, Side, SizingRequest
from ordermesh.sizing.engine import AccountView, Sizer
from ordermesh.sizing.instruments import PriceBook, load_instruments
from ordermesh.sizing.kelly import EnhancedKellyCalculator

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Sizing cost"
TARGET_US = 20.0
D = Decimal


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    call: Callable[[], object]


@dataclass(frozen=True)
class Result:
    case: Case
    best_us: float
    median_us: float
    p99_us: float


def cases() -> list[Case]:
    sizer = Sizer(None, load_instruments(ROOT / "deploy" / "instruments.yaml"))
    account = AccountView(balance=D(10000), free_margin=D(10000))
    prices = PriceBook()
    prices.update("EURUSD", D("1.08495"), D("1.08505"))
    prices.update("USDJPY", D("151.365"), D("151.375"))
    seed = Kelly(
        win_rate=0.55,
        avg_win=D(400),
        avg_loss=D(200),
        stop_loss_pips=D(20),
        current_atr=D("0.0012"),
        average_atr=D("0.0010"),
    )

    def intent(symbol: str, sizing: SizingRequest) -> Intent:
        return Intent(intent_id="bench", strategy_id="bench", account="paper-1", symbol=symbol, side=Side.BUY,
                      sizing=sizing)  # fmt: skip

    kelly = intent("EURUSD", seed)
    risk = intent("USDJPY", RiskPct(risk_pct=D("0.01"), stop_loss_pips=D(25)))
    fixed = intent("EURUSD", Fixed(qty=D("0.10")))
    for i in (kelly, risk, fixed):  # the benchmark must measure the path that makes an order
        assert isinstance(sizer.size(i, account, prices=prices), OrderRequest)
    engine = EnhancedKellyCalculator()
    args = (D(10000), 0.55, D(400), D(200), D("0.0012"), D("0.0010"), D(20), D(10))
    return [
        Case("kelly", "Kelly intent, EURUSD, seed case (0.83 lots), with margin",
             lambda: sizer.size(kelly, account, prices=prices)),
        Case("risk_pct", "RiskPct intent, USDJPY (JPY pip value converted to USD), with margin",
             lambda: sizer.size(risk, account, prices=prices)),
        Case("fixed", "Fixed intent, EURUSD, with margin", lambda: sizer.size(fixed, account, prices=prices)),
        Case("engine", "EnhancedKellyCalculator.calculate alone (seed case)", lambda: engine.calculate(*args)),
    ]  # fmt: skip


def measure(case: Case, calls: int, repeat: int) -> Result:
    for _ in range(min(calls, 2000)):  # warm caches (instrument lines, float conversions)
        case.call()
    means = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(calls):
            case.call()
        means.append((time.perf_counter_ns() - start) / calls / 1000)
    singles = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        case.call()
        singles.append(time.perf_counter_ns() - t0)
    singles.sort()
    p99 = singles[min(len(singles) - 1, int(len(singles) * 0.99))] / 1000
    return Result(case, min(means), statistics.median(means), p99)


def run(calls: int = 20000, repeat: int = 5) -> list[Result]:
    gc.collect()  # start clean; the collector stays on, as in the service
    return [measure(c, calls, repeat) for c in cases()]


def verdict(r: Result) -> str:
    return "meets" if r.best_us <= TARGET_US else "MISSES"


def text_table(results: list[Result]) -> str:
    lines = [f"{'case':<10} {'per call':>10} {'median':>10} {'p99':>10}  target {TARGET_US:g} us"]
    for r in results:
        lines.append(f"{r.case.name:<10} {r.best_us:>7.2f} us {r.median_us:>7.2f} us {r.p99_us:>7.2f} us  {verdict(r)}")
    return "\n".join(lines)


def section(results: list[Result], calls: int, repeat: int) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = "\n".join(
        f"| {r.case.name} | {r.case.what} | {r.best_us:.2f} µs | {r.median_us:.2f} µs | {r.p99_us:.2f} µs | "
        f"{verdict(r)} |"
        for r in results
    )
    sizer = next(r for r in results if r.case.name == "kelly")
    return f"""{SECTION}

Measured {now} on one machine:

- {cpus} CPUs, {platform.platform()}, load average before the run {load}
- Python {platform.python_version()}

**What.** The sizer's own work for one intent, in process, without the bus: `Sizer.size` (intent checks,
instrument spec, pip value in the account currency, the Enhanced Kelly engine or the risk-percentage sizing,
lot rounding, margin estimate, the audit with every step, the seed's validation of it) and, for reference, the
engine's `calculate` alone. Reading the account state from KV is a network round trip and is not part of
it (it shows in the order path above); instrument reports come from a local mirror.
Target: **{TARGET_US:g} µs per call**; the Kelly intent costs **{sizer.best_us:.2f} µs** ({verdict(sizer)} the
target).

**How.** `python -m tests.bench.sizing`: each case sizes the same intent {calls} times, {repeat} times over,
after a warm-up; *per call* is the fastest repeat's mean (the least disturbed by other processes), *median*
the median repeat's mean, *p99* the 99th percentile of {calls} calls timed one by one
(`time.perf_counter_ns()`; the timer's own cost is in it). The garbage collector stays on, as in the service.

| case | what | per call | median | p99 | target {TARGET_US:g} µs |
|---|---|--:|--:|--:|---|
{rows}
"""


def merge(existing: str | None, new_section: str) -> str:
    """Replace the section of BENCHMARKS.md headed like ``new_section`` (or append it), keeping every other
    section as it is. Shared by every bench module that writes a section."""
    if existing is None:
        return "# Benchmarks\n\n" + new_section
    heading = new_section.splitlines()[0].rstrip()
    lines = existing.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        return existing.rstrip("\n") + "\n\n" + new_section
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rest = "".join(lines[end:])
    return "".join(lines[:start]) + new_section + ("\n" + rest if rest else "")


def write(path: Path, new_section: str) -> None:
    path.write_text(merge(path.read_text() if path.exists() else None, new_section))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.sizing", description="sizing cost per call")
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    results = run(args.calls, args.repeat)
    print(text_table(results))
    if not args.no_write:
        write(args.output, section(results, args.calls, args.repeat))
        print(f"bench: wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
