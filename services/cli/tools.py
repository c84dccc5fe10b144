"""Tools: ``size`` one intent here (no NATS), ``tail`` the live messages on a subject."""

from __future__ import annotations

import argparse
import asyncio
import sys
from decimal import Decimal
from typing import Any

from ordermesh.contract.wire import Side
from ordermesh.platform.auth import OPERATOR
from ordermesh.platform.config import ConfigError, OrderMeshConfig
from services.cli.common import Command, decimal, fmt, quiet


def _price(text: str) -> tuple[str, Decimal]:
    symbol, sep, value = text.partition("=")
    if not sep or not symbol:
        raise argparse.ArgumentTypeError(f"expected SYMBOL=PRICE, got {text!r}")
    price = decimal(value)
    if price <= 0:
        raise argparse.ArgumentTypeError(f"a price must be positive, got {text!r}")
    return symbol.upper(), price


def register(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("symbol", type=str.upper)
    common.add_argument("--balance", type=decimal, help="account balance (default: sizer.fallback_balance)")
    common.add_argument("--free-margin", type=decimal, help="free margin (default: unknown, margin not checked)")
    common.add_argument("--currency", help="account currency (default: the account's in the config, else USD)")
    common.add_argument("--account", default="paper-1")
    common.add_argument("--side", type=str.upper, choices=[s.value for s in Side], default="BUY")
    common.add_argument(
        "--price",
        type=_price,
        action="append",
        default=[],
        metavar="SYMBOL=PRICE",
        help="a price for conversions and margin, e.g. --price USDJPY=150 (repeatable)",
    )
    common.add_argument("--preset", help="Kelly preset (default: sizer.kelly_preset)")
    sz = sub.add_parser("size", help="size one intent here (no NATS needed) and print the audit and its summary")
    methods = sz.add_subparsers(dest="method", required=True, metavar="METHOD")
    fx = methods.add_parser("fixed", parents=[common], help="a fixed quantity")
    fx.add_argument("qty", type=decimal)
    kl = methods.add_parser("kelly", parents=[common], help="the Enhanced Kelly engine")
    kl.add_argument("--win-rate", type=float, required=True)
    kl.add_argument("--avg-win", type=decimal, required=True, help="average win in the account currency")
    kl.add_argument("--avg-loss", type=decimal, required=True, help="average loss (positive)")
    kl.add_argument("--stop", type=decimal, required=True, help="stop-loss distance in pips")
    kl.add_argument("--atr", type=decimal, required=True, help="current ATR")
    kl.add_argument("--avg-atr", type=decimal, required=True, help="average ATR")
    kl.add_argument("--regime-quality", type=float, default=1.0)
    kl.add_argument("--commission", type=decimal, default=Decimal(0), help="commission per lot")
    kl.add_argument("--spread", type=decimal, default=Decimal(0), help="spread in pips")
    kl.add_argument("--trades", type=int, help="trades behind the statistics (below min_trade_history: fallback)")
    rp = methods.add_parser("risk-pct", parents=[common], help="risk a fraction of the balance")
    rp.add_argument("--risk", type=decimal, required=True, help="fraction of the balance, e.g. 0.01 for 1%%")
    rp.add_argument("--stop", type=decimal, required=True, help="stop-loss distance in pips")

    tl = sub.add_parser("tail", help="decode and print live messages on a subject (wildcards allowed)")
    tl.add_argument("subject", nargs="?", default=">", help="subject under the prefix, e.g. 'exec.>' (default: all)")
    tl.add_argument("--count", type=int, help="stop after this many messages")
    tl.add_argument("--json", action="store_true", help="each message as JSON (as it is on the wire, in msgpack)")


def cmd_size(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.contract.wire import Fixed, Intent, Kelly, OrderRequest, RiskPct, SizingRequest
    from ordermesh.sizing.engine import AccountView, Sizer
    from ordermesh.sizing.instruments import load_instruments
    from ordermesh.sizing.kelly import preset

    try:
        instruments = load_instruments(config.sizer.instruments_file)
        kelly = preset(args.preset or config.sizer.kelly_preset)
    except (ConfigError, ValueError) as exc:
        print(f"ordermesh: config error: {exc}", file=sys.stderr)
        return 2
    sizing: SizingRequest
    if args.method == "fixed":
        sizing = Fixed(qty=args.qty)
    elif args.method == "kelly":
        sizing = Kelly(
            win_rate=args.win_rate,
            avg_win=args.avg_win,
            avg_loss=args.avg_loss,
            stop_loss_pips=args.stop,
            current_atr=args.atr,
            average_atr=args.avg_atr,
            regime_quality=args.regime_quality,
            commission_per_lot=args.commission,
            spread_pips=args.spread,
            trade_count=args.trades,
        )
    else:
        sizing = RiskPct(risk_pct=args.risk, stop_loss_pips=args.stop)
    settings = config.accounts.get(args.account)
    account = AccountView(
        balance=args.balance if args.balance is not None else config.sizer.fallback_balance,
        free_margin=args.free_margin,
        currency=args.currency or (settings.currency if settings else "USD"),
        source="given" if args.balance is not None else "sizer.fallback_balance",
    )
    intent = Intent(
        intent_id="cli-size", strategy_id="cli", account=args.account, symbol=args.symbol, side=Side(args.side),
        sizing=sizing,
    )  # fmt: skip
    outcome = Sizer(kelly, instruments).size(intent, account, prices=dict(args.price))
    if outcome.sizing_audit is not None:
        print(outcome.sizing_audit.get_calculation_summary())
        print("-" * 40)
    if isinstance(outcome, OrderRequest):
        print(f"ORDER: {intent.side.value} {outcome.quantity} {intent.symbol}")
        return 0
    print(f"REJECTED: {outcome.reason}")
    return 1


def cmd_tail(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.contract.codec import BadMessage, decode_any
    from ordermesh.platform.bus import Bus
    from services.cli.display import Display, message_line

    quiet(config)
    display = Display(config)

    async def go() -> int:
        bus = Bus(config.nats, "cli:tail", identity=OPERATOR)
        await bus.connect()
        prefix = bus.subjects.prefix
        subject = args.subject if args.subject.startswith(prefix + ".") else f"{prefix}.{args.subject}"
        done = asyncio.Event()
        seen = 0

        async def on(msg: Any) -> None:
            nonlocal seen
            if done.is_set():
                return
            try:
                decoded = decode_any(msg.data)
                body = fmt(decoded) if args.json else message_line(decoded, display)
            except BadMessage as exc:
                body = f"<bad message: {exc}> {msg.data[:60]!r}"
            try:
                print(f"{msg.subject} {body}", flush=True)
            except BrokenPipeError:  # the reader went away (`| head`): stop, quietly
                done.set()
                return
            seen += 1
            if args.count and seen >= args.count:
                done.set()

        await bus.subscribe(subject, on)
        print(f"tailing {subject} (Ctrl-C to stop)", file=sys.stderr)
        try:
            await done.wait()
        finally:
            await bus.close()
        return 0

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        return 0


COMMANDS: dict[str, Command] = {"size": cmd_size, "tail": cmd_tail}
