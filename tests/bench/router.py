"""Router decision cost: routing plus every risk rule for one order, in process, against the 50 µs target.

    python -m tests.bench.router [--calls 20000] [--repeat 5] [--no-write]

Uses the router's own RiskEngine and routing with every rule configured and exposure, quotes and an account
state in place, so each rule does its real work. Writes its own section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from decimal import Decimal
from pathlib import Path

import msgspec

from ordermesh.contract.wire import AccountState, Fixed, Intent, OrderType, Quote, Side
from ordermesh.routing.risk import RULES, OrderToCheck, Rate, RiskEngine, RiskLimits, RiskView, SymbolLimits
from ordermesh.routing.routes import Route, choose_broker
from ordermesh.sizing.instruments import load_instruments
from tests.bench.sizing import Case, Result, measure, write

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Router decision cost"
TARGET_US = 50.0
D = Decimal

LIMITS = RiskLimits(
    max_order_notional=D("10000000"),
    symbols={
        "EURUSD": SymbolLimits(
            max_order_notional=D("5000000"), max_net_position=D("1000"), max_gross_position=D("2000")
        )
    },
    strategies={"*": SymbolLimits(max_net_position=D("500"), max_gross_position=D("1000"))},
    max_open_orders=100_000,
    max_open_orders_per_strategy=100_000,
    submit_rate_per_strategy=Rate(per_second=1e9, burst=10**9),
    submit_rate_per_broker=Rate(per_second=1e9, burst=10**9),
    price_collar=D("0.05"),
    check_margin=True,
    daily_loss_limit=D("50000"),
)  # fmt: skip


def cases() -> list[Case]:
    specs = load_instruments(ROOT / "deploy" / "instruments.yaml")
    # a venue floor too, so the min_notional rule does its whole work (0.10 lots at 1.085 are 10,850 USD)
    specs["EURUSD"] = msgspec.structs.replace(specs["EURUSD"], min_notional=D("1000"))
    quote = Quote(broker_id="paper", symbol="EURUSD", bid=D("1.08495"), ask=D("1.08505"))
    state = AccountState(account="paper-1", balance=D(100000), equity=D(100000), free_margin=D(100000))
    view = RiskView(
        limits=lambda account: LIMITS,
        instrument=lambda broker, symbol: specs.get(symbol),
        tick_size=lambda broker, symbol: D("0.00001"),
        quote=lambda broker, symbol: quote,
        account_state=lambda account: state,
        margin_per_lot=lambda account, broker, symbol, price: D("3616.83"),
        to_account_ccy=lambda account, symbol, amount: amount,
        day_start_equity=lambda account: D(100000),
    )
    for n in range(20):  # other strategies and open orders, so the position rules have work to do
        view.exposure.add_fill("paper-1", f"s{n}", "EURUSD", D("0.5") * (1 if n % 2 else -1))
        view.exposure.add_open("paper-1", f"s{n}", "EURUSD", Side.BUY, D("0.1"), 1)
    engine = RiskEngine(view)
    routes = [Route(account="live-*", symbols="BTC*", broker="binance"), Route(symbols="*", broker="paper")]
    usable = ["paper", "binance"]
    intent = Intent(intent_id="b", strategy_id="s1", account="paper-1", symbol="EURUSD", side=Side.BUY,
                    sizing=Fixed(qty=D("0.10")), order_type=OrderType.LIMIT, limit_price=D("1.08500"))  # fmt: skip

    def decide() -> object:
        broker, _ = choose_broker(intent, routes, "paper", usable, lambda b: True)
        assert broker is not None
        order = OrderToCheck(
            account=intent.account, strategy_id=intent.strategy_id, broker_id=broker, symbol=intent.symbol,
            side=intent.side, quantity=D("0.10"), order_type=intent.order_type, limit_price=intent.limit_price,
        )  # fmt: skip
        return engine.check(order)

    assert decide() is None  # the benchmark must measure an order that passes every rule
    label = f"routing + all {len(RULES)} risk rules, LIMIT EURUSD, every limit configured"
    return [Case("decision", label, decide)]


def verdict(r: Result) -> str:
    return "meets" if r.best_us <= TARGET_US else "MISSES"


def run(calls: int = 20000, repeat: int = 5) -> list[Result]:
    return [measure(c, calls, repeat) for c in cases()]


def text_table(results: list[Result]) -> str:
    return "\n".join(
        f"{r.case.name:<10} {r.best_us:>7.2f} us per call, median {r.median_us:.2f} us, p99 {r.p99_us:.2f} us  "
        f"target {TARGET_US:g} us: {verdict(r)}"
        for r in results
    )


def section(results: list[Result], calls: int, repeat: int) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    (r,) = results
    return f"""{SECTION}

Measured {now} on one machine: {cpus} CPUs, {platform.platform()}, Python {platform.python_version()}.

**What.** The router's decision for one order, in process: routing (`choose_broker` over two rules) and the
`RiskEngine` with every rule on and every limit configured (trading state, daily loss, instrument, quantity, tick,
GTD expiry, reduce-only, notional per order and per instrument, net and gross position per symbol and per
strategy with 20 other strategies' positions and open orders, open orders, submit rate buckets, price collar,
margin). The order passes every rule, so none is skipped. KV writes and the publish are not part of it.
Target **{TARGET_US:g} µs p50**: **{r.median_us:.2f} µs** median per call ({verdict(r)}).

**How.** `python -m tests.bench.router`: {calls} calls, {repeat} times over, after a warm-up; *per call* is the
fastest repeat's mean, *median* the median repeat's mean, *p99* from {calls} calls timed one by one.

| case | what | per call | median | p99 | target |
|---|---|--:|--:|--:|---|
| {r.case.name} | {r.case.what} | {r.best_us:.2f} µs | {r.median_us:.2f} µs | {r.p99_us:.2f} µs | {verdict(r)} |
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.router", description="router decision cost")
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
