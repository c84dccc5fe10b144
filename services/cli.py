"""The ``ordermesh`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from ordermesh.config import ConfigError, OrderMeshConfig, load_config
from ordermesh.log import setup_logging
from ordermesh.runtime import install_uvloop, run_service
from ordermesh.wire import OrderType, Side
from services.router import cli as router_cli


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

    add_size_parser(sub)

    tl = sub.add_parser("tail", help="decode and print live messages on a subject (wildcards allowed)")
    tl.add_argument("subject", nargs="?", default=">", help="subject under the prefix, e.g. 'exec.>' (default: all)")
    tl.add_argument("--count", type=int, help="stop after this many messages")
    router_cli.add_parsers(sub)
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
    from ordermesh.sdk import OrderMeshClient, OrderMeshError
    from ordermesh.wire import OrderFilled

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
        return 0

    return asyncio.run(go())


def cmd_tail(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.bus import Bus
    from ordermesh.wire import BadMessage, decode_any

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
    from ordermesh.instruments import load_instruments
    from ordermesh.kelly import preset
    from ordermesh.sizing import AccountView, Sizer
    from ordermesh.wire import Fixed, Intent, Kelly, OrderRequest, RiskPct, SizingRequest

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
    "tail": cmd_tail,
    "size": cmd_size,
    **router_cli.COMMANDS,
}

if __name__ == "__main__":
    sys.exit(main())
