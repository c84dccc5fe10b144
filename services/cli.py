"""The ``ordermesh`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from ordermesh.contract.wire import OrderType, Side
from ordermesh.platform.config import ConfigError, OrderMeshConfig, load_config
from ordermesh.platform.log import setup_logging
from ordermesh.platform.runtime import install_uvloop, run_service
from services.router import cli as router_cli
from services.tca import cli as tca_cli
from tools.mt5sim.server import add_arguments as _mt5sim_add
from tools.mt5sim.server import run as _mt5sim_run


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ordermesh", description="ordermesh: a message-bus order router for trading")
    p.add_argument("--config", "-c", help="YAML config file (default: $ORDERMESH_CONFIG, else built-in defaults)")
    p.add_argument("--nats", help="NATS URL, overriding the config (e.g. nats://127.0.0.1:4222)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start NATS (if needed), every service and the demo strategies, with a live view")
    up.add_argument("--no-demo", action="store_true", help="do not start the demo strategies")
    up.add_argument("--duration", type=float, help="stop everything after this many seconds")
    up.add_argument("--no-view", action="store_true", help="print a status line now and then instead of the screen")
    up.add_argument(
        "--mt5-sim",
        action="store_true",
        help="also start the MT5 bridge simulator (for a config with an mt5 broker: deploy/mt5/ordermesh-mt5.yaml)",
    )

    for name, text in (
        ("sizer", "run the sizer"),
        ("router", "run the router"),
        ("keeper", "run the position-keeper"),
        ("demo", "run the demo strategies"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("--instance", help="instance name (default: host-pid; the keeper's default is 'keeper')")
        sp.add_argument("--http-port", type=int, help="port for /metrics and /healthz (0: any free port)")
        if name == "keeper":
            sp.add_argument("--replay", action="store_true", help="ignore the snapshot; rebuild from the stream")
    gw = sub.add_parser("gateway", help="run the gateway of one broker connection")
    gw.add_argument("broker_id")
    gw.add_argument("--instance")
    gw.add_argument("--http-port", type=int)

    sm = sub.add_parser("submit", help="send one intent, wait for its outcome and print it")
    sm.add_argument("side", type=str.upper, choices=[s.value for s in Side])
    sm.add_argument("symbol")
    sm.add_argument("qty", type=_decimal)
    sm.add_argument("--limit", type=_decimal, help="limit price (makes it a LIMIT order)")
    sm.add_argument("--strategy", default="cli")
    sm.add_argument("--account", default="paper-1")
    sm.add_argument("--broker", help="route to this broker id")
    sm.add_argument("--intent-id", help="explicit intent id (sending it again is deduplicated)")
    sm.add_argument("--timeout", type=float, default=15.0)

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

    ca = sub.add_parser("close-all", help="cancel open orders and close every open position (reduce-only)")
    ca.add_argument("--account", default="paper-1")
    ca.add_argument("--strategy", help="only this strategy's positions")
    ca.add_argument("--timeout", type=float, default=20.0)

    add_size_parser(sub)

    tl = sub.add_parser("tail", help="decode and print live messages on a subject (wildcards allowed)")
    tl.add_argument("subject", nargs="?", default=">", help="subject under the prefix, e.g. 'exec.>' (default: all)")
    tl.add_argument("--count", type=int, help="stop after this many messages")
    router_cli.add_parsers(sub)
    tca_cli.add_parser(sub)
    _mt5sim_add(sub.add_parser("mt5-sim", help="run the MT5 bridge simulator (the MQL5-JSON-API EA's sockets)"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        if args.nats:
            config = msgspec.structs.replace(config, nats=msgspec.structs.replace(config.nats, url=args.nats))
    except ConfigError as exc:
        print(f"ordermesh: config error: {exc}", file=sys.stderr)
        return 2
    return COMMANDS[args.command](config, args)


# ------------------------------------------------------------------------------------ services


def _service_kw(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if getattr(args, "instance", None):
        kw["instance"] = args.instance
    if getattr(args, "http_port", None) is not None:
        kw["http_port"] = args.http_port
    return kw


def cmd_sizer(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.sizer.service import SizerService

    return run_service(lambda: SizerService(config, **_service_kw(args)), config.log, service="sizer")


def cmd_router(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.router.service import RouterService

    return run_service(
        lambda: RouterService(config, config_path=args.config, **_service_kw(args)), config.log, service="router"
    )


def cmd_keeper(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.keeper.service import KeeperService

    return run_service(
        lambda: KeeperService(config, replay=args.replay, **_service_kw(args)), config.log, service="keeper"
    )


def cmd_gateway(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.gateway.service import GatewayService

    return run_service(
        lambda: GatewayService(config, args.broker_id, **_service_kw(args)),
        config.log,
        service="gateway",
        broker_id=args.broker_id,
    )


def cmd_demo(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.demo.strategy import main as demo_main

    setup_logging(config.log, service="demo")
    return demo_main(config)


def cmd_up(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from services.up import up

    return up(config, args)


# ------------------------------------------------------------------------------------ one-shot


def _quiet(config: OrderMeshConfig) -> None:
    setup_logging(msgspec.structs.replace(config.log, level="warning"))
    install_uvloop()


def _fmt(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def cmd_submit(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.contract.wire import OrderFilled
    from ordermesh.sdk import OrderMeshClient, OrderMeshError

    _quiet(config)

    async def go() -> int:
        async with OrderMeshClient(args.strategy, account=args.account, config=config) as om:
            intent = om.intent(
                Side(args.side),
                args.symbol,
                args.qty,
                order_type=OrderType.LIMIT if args.limit is not None else OrderType.MARKET,
                limit_price=args.limit,
                broker_id=args.broker,
                intent_id=args.intent_id,
            )
            ack = await om.publish_intent(intent)
            if ack.duplicate:
                # Deduplicated by the stream: report what became of the first submission instead of waiting.
                rec = await om.settled_order(intent.intent_id, timeout=args.timeout)
                if rec is None:
                    print(f"intent {intent.intent_id} was already submitted; no order was made from it")
                    return 1
                print(
                    f"intent {intent.intent_id} was already submitted: order {rec.client_order_id} is "
                    f"{rec.status.value}, filled {rec.filled_qty} of {rec.quantity}"
                    + (f" @ {rec.avg_px}" if rec.avg_px is not None else "")
                )
                return 0
            print(f"intent {intent.intent_id} sent: {args.side} {args.qty} {args.symbol}")
            try:
                outcome = await om.wait(intent.intent_id, timeout=args.timeout)
            except OrderMeshError as exc:
                print(f"no outcome: {exc}", file=sys.stderr)
                return 1
            kind = type(outcome).__name__
            if isinstance(outcome, OrderFilled):
                print(
                    f"{kind}: {outcome.side.value} {outcome.cum_qty} {outcome.symbol} @ {outcome.last_px} "
                    f"at {outcome.broker_id} (client order id {outcome.client_order_id}, fill {outcome.fill_id})"
                )
                return 0
            print(f"{kind}: {getattr(outcome, 'reason', '')}")
            return 1

    return asyncio.run(go())


def format_positions(positions: list[Any]) -> str:
    from services.up import money

    if not positions:
        return "no positions"
    header = f"{'account':<12} {'strategy':<16} {'symbol':<14} {'quantity':>14} {'avg price':>14} {'realized':>12}"
    lines = [header, "-" * len(header)]
    for p in positions:
        lines.append(
            f"{p.account:<12} {(p.strategy_id or '*'):<16} {p.symbol:<14} {p.quantity!s:>14} "
            f"{p.avg_price.normalize() if p.avg_price else 0!s:>14} {money(p.realized_pnl)!s:>12}"
        )
    return "\n".join(lines)


def cmd_positions(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    import nats.errors

    from ordermesh.sdk import OrderMeshClient

    _quiet(config)

    async def go() -> int:
        om = OrderMeshClient("cli", config=config)
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
        print(format_positions(reply.positions))
        print(f"(keeper at exec sequence {reply.applied_seq}, {reply.fills_applied} fills)")
        if args.check:
            return await _check(config)
        return 0

    return asyncio.run(go())


async def _check(config: OrderMeshConfig) -> int:
    import nats.errors

    from ordermesh.contract.codec import decode_any
    from ordermesh.contract.wire import ReconcileQuery, ReconciliationReport
    from ordermesh.platform.bus import Bus

    bus = Bus(config.nats, "cli:check")
    await bus.connect()
    try:
        reply = decode_any(await bus.request(bus.subjects.q("reconcile"), ReconcileQuery(), timeout=15.0))
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        print("no position-keeper answered the reconciliation request", file=sys.stderr)
        return 1
    finally:
        await bus.close()
    if not isinstance(reply, ReconciliationReport):
        print(f"reconciliation failed: {getattr(reply, 'reason', reply)}", file=sys.stderr)
        return 1
    print(format_reconciliation(reply))
    return 0 if not reply.diffs and not reply.errors else 1


def format_reconciliation(report: Any) -> str:
    lines = [f"reconciliation with the brokers ({', '.join(report.checked) or 'none answered'}):"]
    for broker, why in sorted(report.errors.items()):
        lines.append(f"  {broker}: not checked: {why}")
    if not report.diffs:
        lines.append("  no differences" if report.checked else "  nothing compared")
        return "\n".join(lines)
    header = f"  {'broker':<12} {'symbol':<14} {'keeper':>14} {'broker':>14} {'difference':>14}"
    lines += [header, "  " + "-" * (len(header) - 2)]
    for d in report.diffs:
        lines.append(
            f"  {d.broker_id:<12} {d.symbol:<14} {d.keeper_qty!s:>14} {d.broker_qty!s:>14} {d.difference!s:>14}"
        )
    lines.append(f"  {len(report.diffs)} difference(s)")
    return "\n".join(lines)


def format_account(state: Any) -> str:
    from services.up import money

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

    _quiet(config)

    async def go() -> int:
        om = OrderMeshClient("cli", config=config, account=args.account)
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

    bus = Bus(config.nats, "cli:equity")
    await bus.connect()
    points: list[Any] = []
    try:
        await bus.provision()
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

    _quiet(config)
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


def format_close_report(report: Any) -> str:
    lines = [f"close-all {report.account}" + (f" strategy {report.strategy_id}" if report.strategy_id else "")]
    lines.append(f"open orders: {report.cancel}")
    if not report.outcomes:
        lines.append("no open positions")
        return "\n".join(lines)
    header = f"{'symbol':<14} {'strategy':<16} {'quantity':>14} {'outcome':<8} {'remaining':>12}  reason"
    lines += [header, "-" * len(header)]
    for o in report.outcomes:
        lines.append(
            f"{o.symbol:<14} {(o.strategy_id or '*'):<16} {o.quantity!s:>14} {o.status:<8} {o.remaining!s:>12}  "
            f"{o.reason}"
        )
    closed = sum(1 for o in report.outcomes if o.status == "closed")
    lines.append(f"{closed} of {len(report.outcomes)} position(s) closed")
    return "\n".join(lines)


def cmd_close_all(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    import nats.errors

    from ordermesh.sdk import OrderMeshClient, OrderMeshError

    _quiet(config)

    async def go() -> int:
        async with OrderMeshClient("close-all", config=config, account=args.account) as om:
            try:
                report = await om.close_all_positions(args.account, args.strategy, timeout=args.timeout)
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError, OrderMeshError) as exc:
                print(f"close-all failed: {type(exc).__name__} {exc}", file=sys.stderr)
                return 1
        print(format_close_report(report))
        return 0 if report.flat else 1

    return asyncio.run(go())


def cmd_tail(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.contract.codec import BadMessage, decode_any
    from ordermesh.platform.bus import Bus

    _quiet(config)

    async def go() -> int:
        bus = Bus(config.nats, "cli:tail")
        await bus.connect()
        prefix = bus.subjects.prefix
        subject = args.subject if args.subject.startswith(prefix + ".") else f"{prefix}.{args.subject}"
        done = asyncio.Event()
        seen = 0

        async def on(msg: Any) -> None:
            nonlocal seen
            try:
                body = _fmt(decode_any(msg.data))
            except BadMessage as exc:
                body = f"<bad message: {exc}> {msg.data[:60]!r}"
            print(f"{msg.subject} {body}", flush=True)
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


# ------------------------------------------------------------------------------------------- size


def _price(text: str) -> tuple[str, Decimal]:
    symbol, sep, value = text.partition("=")
    if not sep or not symbol:
        raise argparse.ArgumentTypeError(f"expected SYMBOL=PRICE, got {text!r}")
    price = _decimal(value)
    if price <= 0:
        raise argparse.ArgumentTypeError(f"a price must be positive, got {text!r}")
    return symbol.upper(), price


def add_size_parser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("symbol", type=str.upper)
    common.add_argument("--balance", type=_decimal, help="account balance (default: sizer.fallback_balance)")
    common.add_argument("--free-margin", type=_decimal, help="free margin (default: unknown, margin not checked)")
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
    fx.add_argument("qty", type=_decimal)
    kl = methods.add_parser("kelly", parents=[common], help="the Enhanced Kelly engine")
    kl.add_argument("--win-rate", type=float, required=True)
    kl.add_argument("--avg-win", type=_decimal, required=True, help="average win in the account currency")
    kl.add_argument("--avg-loss", type=_decimal, required=True, help="average loss (positive)")
    kl.add_argument("--stop", type=_decimal, required=True, help="stop-loss distance in pips")
    kl.add_argument("--atr", type=_decimal, required=True, help="current ATR")
    kl.add_argument("--avg-atr", type=_decimal, required=True, help="average ATR")
    kl.add_argument("--regime-quality", type=float, default=1.0)
    kl.add_argument("--commission", type=_decimal, default=Decimal(0), help="commission per lot")
    kl.add_argument("--spread", type=_decimal, default=Decimal(0), help="spread in pips")
    kl.add_argument("--trades", type=int, help="trades behind the statistics (below min_trade_history: fallback)")
    rp = methods.add_parser("risk-pct", parents=[common], help="risk a fraction of the balance")
    rp.add_argument("--risk", type=_decimal, required=True, help="fraction of the balance, e.g. 0.01 for 1%%")
    rp.add_argument("--stop", type=_decimal, required=True, help="stop-loss distance in pips")


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


COMMANDS = {
    "up": cmd_up,
    "sizer": cmd_sizer,
    "router": cmd_router,
    "keeper": cmd_keeper,
    "gateway": cmd_gateway,
    "demo": cmd_demo,
    "submit": cmd_submit,
    "positions": cmd_positions,
    "account": cmd_account,
    "equity": cmd_equity,
    "close-all": cmd_close_all,
    "tail": cmd_tail,
    "size": cmd_size,
    **router_cli.COMMANDS,
    "tca": tca_cli.cmd_tca,
    "mt5-sim": lambda config, args: _mt5sim_run(args),
}

if __name__ == "__main__":
    sys.exit(main())
