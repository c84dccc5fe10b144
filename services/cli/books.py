"""What the position-keeper knows: ``positions``, the ``account`` and its ``equity`` curve."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ordermesh.platform.auth import OPERATOR
from ordermesh.platform.config import OrderMeshConfig
from services.cli.brokers import check_reconciliation
from services.cli.common import Command, quiet
from services.cli.display import Display, money


def register(sub: argparse._SubParsersAction) -> None:
    ps = sub.add_parser("positions", help="positions from the position-keeper")
    ps.add_argument("--account")
    ps.add_argument("--strategy")
    ps.add_argument("--by-strategy", action="store_true")
    ps.add_argument("--check", action="store_true", help="also compare with each gateway's broker (reconciliation)")

    ac = sub.add_parser("account", help="balance, equity, margin and free margin from the position-keeper")
    ac.add_argument("--account", default="paper-1")

    eq = sub.add_parser("equity", help="the equity curve (stream OM_EQUITY) as a terminal chart, or --png FILE")
    eq.add_argument("--account", default="paper-1")
    eq.add_argument("--png", help="render the equity curve with its drawdown to this PNG file")
    eq.add_argument("--width", type=int, default=72)
    eq.add_argument("--height", type=int, default=16)
    eq.add_argument("--last", type=int, default=0, help="only the last N points (0: all)")


def format_positions(positions: list[Any], display: Display) -> str:
    if not positions:
        return "no positions"
    header = f"{'account':<12} {'strategy':<16} {'symbol':<14} {'quantity':>14} {'avg price':>14} {'realized':>12}"
    lines = [header, "-" * len(header)]
    for p in positions:
        lines.append(
            f"{p.account:<12} {(p.strategy_id or '*'):<16} {p.symbol:<14} {display.qty(p.symbol, p.quantity):>14} "
            f"{display.price(p.symbol, p.avg_price):>14} {money(p.realized_pnl)!s:>12}"
        )
    return "\n".join(lines)


def cmd_positions(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    import nats.errors

    from ordermesh.sdk import OrderMeshClient

    quiet(config)

    async def go() -> int:
        om = OrderMeshClient("cli", config=config, identity=OPERATOR)
        await om.bus.connect()
        try:
            reply = await om.positions_reply(
                account=args.account, strategy_id=args.strategy, by_strategy=args.by_strategy
            )
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            print("no position-keeper answered (is `ordermesh keeper` running?)", file=sys.stderr)
            return 1
        finally:
            await om.bus.close()
        print(format_positions(reply.positions, Display(config)))
        print(f"(keeper at exec sequence {reply.applied_seq}, {reply.fills_applied} fills)")
        if args.check:
            return await check_reconciliation(config)
        return 0

    return asyncio.run(go())


def format_account(state: Any) -> str:
    rows = [
        ("account", f"{state.account} ({state.mode}, {state.currency})"),
        ("deposit", money(state.deposit)),
        ("realized PnL", money(state.realized_pnl)),
        ("commissions", money(state.commission)),
        ("swaps", money(state.swap)),
        ("balance", money(state.balance)),
        ("unrealized PnL", money(state.unrealized_pnl)),
        ("equity", money(state.equity)),
        ("margin used", money(state.margin_used)),
        ("free margin", money(state.free_margin)),
        ("fills", state.fills),
        ("exec sequence", state.applied_seq),
    ]
    lines = [f"{k:<16} {v!s:>18}" for k, v in rows]
    if state.unpriced:
        lines.append(f"not priced (no quote yet): {', '.join(state.unpriced)}")
    return "\n".join(lines)


def cmd_account(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    import nats.errors

    from ordermesh.sdk import OrderMeshClient, OrderMeshError

    quiet(config)

    async def go() -> int:
        om = OrderMeshClient("cli", config=config, account=args.account, identity=OPERATOR)
        await om.bus.connect()
        try:
            state = await om.account_state(args.account)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            print("no position-keeper answered (is `ordermesh keeper` running?)", file=sys.stderr)
            return 1
        except OrderMeshError as exc:
            print(f"ordermesh: {exc}", file=sys.stderr)
            return 1
        finally:
            await om.bus.close()
        print(format_account(state))
        return 0

    return asyncio.run(go())


async def read_equity(config: OrderMeshConfig, account: str, timeout: float = 10.0) -> list[Any]:
    """Every equity point of ``account`` in the OM_EQUITY stream, in order."""
    from nats.js.api import DeliverPolicy

    from ordermesh.contract.codec import EQUITY_CODEC, BadMessage
    from ordermesh.contract.subjects import EQUITY
    from ordermesh.platform.bus import Bus

    bus = Bus(config.nats, "cli:equity", identity=OPERATOR)
    await bus.connect()
    points: list[Any] = []
    try:
        subject = bus.subjects.equity(account)
        info = await bus.js.stream_info(EQUITY, subjects_filter=subject)
        total = sum((info.state.subjects or {}).values()) if info.state.subjects else 0
        if total == 0:
            return []
        done = asyncio.Event()
        seen = 0

        async def on(msg: Any) -> None:
            nonlocal seen
            seen += 1
            try:
                points.append(EQUITY_CODEC.decode(msg.data))
            except BadMessage:
                pass
            if seen >= total or msg.metadata.num_pending == 0:
                done.set()

        sub = await bus.js.subscribe(
            subject, stream=EQUITY, cb=on, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        try:
            await asyncio.wait_for(done.wait(), timeout)
        finally:
            await sub.unsubscribe()
    finally:
        await bus.close()
    return points


def text_chart(values: list[float], width: int = 72, height: int = 16) -> str:
    """A terminal line chart (statistics: floats): one column per bucket of points, its last value."""
    if not values:
        return "(no points)"
    if len(values) > width:
        step = len(values) / width
        values = [values[min(len(values) - 1, int((i + 1) * step) - 1)] for i in range(width)]
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    rows = [[" "] * len(values) for _ in range(height)]
    for x, v in enumerate(values):
        y = round((v - lo) / span * (height - 1))
        rows[height - 1 - y][x] = "*"
    out = []
    for i, row in enumerate(rows):
        label = hi - span * i / (height - 1) if height > 1 else hi
        out.append(f"{label:>14,.2f} |{''.join(row)}")
    out.append(" " * 15 + "+" + "-" * len(values))
    return "\n".join(out)


def render_png(points: list[Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import datetime

    import matplotlib.pyplot as plt

    from ordermesh.books.accounting import drawdown

    times = [datetime.datetime.fromtimestamp(p.ts_ns / 1e9) for p in points]
    equity = [float(p.equity) for p in points]
    dd = drawdown(equity)
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), gridspec_kw={"height_ratios": [3, 1]})
    top.plot(times, equity, color="tab:blue", label="equity")
    top.plot(times, [float(p.balance) for p in points], color="tab:gray", linewidth=0.8, label="balance")
    top.set_ylabel(f"equity ({points[0].currency})")
    top.set_title(f"{points[0].account}: equity curve ({len(points)} points)")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.fill_between(times, [-d for d in dd], 0, color="tab:red", alpha=0.4)
    bottom.set_ylabel("drawdown")
    bottom.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_equity(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.books.accounting import drawdown

    quiet(config)
    points = asyncio.run(read_equity(config, args.account))
    if args.last:
        points = points[-args.last :]
    if not points:
        print(f"no equity points for {args.account} (the keeper writes them on fills and every interval)")
        return 1
    equity = [float(p.equity) for p in points]
    dd = drawdown(equity)
    last = points[-1]
    print(f"{args.account} equity curve: {len(points)} points, {last.currency}")
    print(text_chart(equity, args.width, args.height))
    print(
        f"first {points[0].equity:,.2f}  last {last.equity:,.2f}  peak {max(equity):,.2f}  "
        f"max drawdown {max(dd):,.2f}  balance {last.balance:,.2f}  free margin {last.free_margin:,.2f}"
    )
    if args.png:
        render_png(points, args.png)
        print(f"wrote {args.png}")
    return 0


COMMANDS: dict[str, Command] = {"positions": cmd_positions, "account": cmd_account, "equity": cmd_equity}
