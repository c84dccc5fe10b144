"""Keeper replay speed: how many fills per second the keeper's per-message work applies, in process.

    python -m tests.bench.keeper [--fills 50000] [--repeat 3] [--no-write]

Each run decodes ``--fills`` pre-encoded ``OrderFilled`` messages with the exec codec and applies them to a fresh
``Ledger`` (netting, the shipped instrument specs, commissions in quote and base asset), as the keeper's
ordered-consumer callback does on a replay. Writes its own section of BENCHMARKS.md (``make bench`` runs it).
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
from dataclasses import dataclass
from pathlib import Path

from ordermesh.books.accounting import Ledger, Rules
from ordermesh.contract.codec import EXEC_CODEC, encode
from ordermesh.contract.wire import OrderFilled
from ordermesh.platform.config import AccountSettings
from ordermesh.sizing.instruments import load_instruments
from tests.bench.sizing import write
from tests.system.test_keeper import make_fills

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Keeper replay speed"
TARGET = 50_000.0


@dataclass(frozen=True)
class Result:
    fills: int
    best: float  # fills/s of the fastest run
    median: float
    apply_only: float  # fills/s without the decode


def run(fills: int = 50_000, repeat: int = 3) -> Result:
    messages = [encode(f) for f in make_fills(fills, seed=1)]
    rules = Rules(accounts={"paper-1": AccountSettings()}, specs=load_instruments(ROOT / "deploy/instruments.yaml"))
    decoded: list[OrderFilled] = [EXEC_CODEC.decode(m) for m in messages]  # type: ignore[misc]
    gc.collect()
    rates = []
    for _ in range(repeat):
        book = Ledger(rules=rules)
        start = time.perf_counter()
        for seq, data in enumerate(messages, 1):
            book.apply_fill(EXEC_CODEC.decode(data), seq)  # type: ignore[arg-type]
        rates.append(fills / (time.perf_counter() - start))
        assert book.fills_applied == fills
    apply_rates = []
    for _ in range(repeat):
        book = Ledger(rules=rules)
        start = time.perf_counter()
        for seq, f in enumerate(decoded, 1):
            book.apply_fill(f, seq)
        apply_rates.append(fills / (time.perf_counter() - start))
    return Result(fills, max(rates), statistics.median(rates), max(apply_rates))


def verdict(r: Result) -> str:
    return "meets" if r.best >= TARGET else "MISSES"


def text_table(r: Result) -> str:
    return (
        f"keeper replay: {r.best:,.0f} fills/s (median {r.median:,.0f}; apply alone {r.apply_only:,.0f}) "
        f"target {TARGET:,.0f}: {verdict(r)}"
    )


def section(r: Result, repeat: int) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"""{SECTION}

Measured {now} on one machine:

- {cpus} CPUs, {platform.platform()}, load average before the run {load}
- Python {platform.python_version()}

**What.** The keeper's work per exec message on a replay, in process: decode the `OrderFilled` (msgpack, the
exec codec) and apply it to the books (`ordermesh.books.accounting.Ledger.apply_fill`: dedupe by fill id, netting at
the account and strategy level, realized PnL, commissions in the quote or base asset, the per-broker net for
reconciliation). NATS delivery to the ordered consumer and the snapshot writes (one KV put every
`keeper.snapshot_every` fills) are not in it. Target: **{TARGET:,.0f} fills/s**; measured
**{r.best:,.0f} fills/s** ({verdict(r)} the target).

**How.** `python -m tests.bench.keeper`: {r.fills} fills over three symbols and three strategies (the fills
of the keeper's SIGKILL system test), applied {repeat} times to a fresh ledger; *best* is the fastest run.

| fills | best | median | apply alone (no decode) | target {TARGET:,.0f}/s |
|--:|--:|--:|--:|---|
| {r.fills} | {r.best:,.0f}/s | {r.median:,.0f}/s | {r.apply_only:,.0f}/s | {verdict(r)} |
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.keeper", description="keeper replay speed")
    p.add_argument("--fills", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    result = run(args.fills, args.repeat)
    print(text_table(result))
    if not args.no_write:
        write(args.output, section(result, args.repeat))
        print(f"bench: wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
