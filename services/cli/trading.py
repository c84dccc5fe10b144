"""Order commands: ``submit`` one intent, ``cancel`` one order, list the ``orders``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ordermesh.contract.wire import OrderType, Side
from ordermesh.platform.auth import OPERATOR
from ordermesh.platform.config import OrderMeshConfig
from services.cli.common import Command, decimal, quiet, request_ctl
from services.cli.display import Display, table


def register(sub: argparse._SubParsersAction) -> None:
    sm = sub.add_parser("submit", help="send one intent, wait for its outcome and print it")
    sm.add_argument("side", type=str.upper, choices=[s.value for s in Side])
    sm.add_argument("symbol")
    sm.add_argument("qty", type=decimal)
    sm.add_argument("--limit", type=decimal, help="limit price (makes it a LIMIT order)")
    sm.add_argument("--strategy", default="cli")
    sm.add_argument("--account", default="paper-1")
    sm.add_argument("--broker", help="route to this broker id")
    sm.add_argument("--intent-id", help="explicit intent id (sending it again is deduplicated)")
    sm.add_argument("--timeout", type=float, default=15.0)

    cn = sub.add_parser("cancel", help="cancel one order by its intent id")
    cn.add_argument("intent_id")
    cn.add_argument("--account", default="paper-1")
    cn.add_argument("--strategy", default="cli")

    od = sub.add_parser("orders", help="open orders (the router's records); --unknown: what gateways could not resolve")
    od.add_argument("--all", action="store_true", help="finished orders too")
    od.add_argument("--unknown", action="store_true", help="tickets and orders gateways could not match, never guessed")


#: After its OrderAccepted, a limit order that has not filled within this long is reported as resting.
REST_GRACE_S = 1.0


def cmd_submit(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.contract.wire import OrderAccepted, OrderFilled, Report
    from ordermesh.sdk import OrderMeshClient, OrderMeshError

    quiet(config)
    watched: dict[str, asyncio.Event] = {}

    def on_report(report: Report) -> None:
        if isinstance(report, OrderAccepted) and report.intent_id in watched:
            watched[report.intent_id].set()

    async def go() -> int:
        async with OrderMeshClient(
            args.strategy, account=args.account, config=config, identity=OPERATOR, on_report=on_report
        ) as om:
            limit = args.limit is not None
            intent = om.intent(
                Side(args.side),
                args.symbol,
                args.qty,
                order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                limit_price=args.limit,
                broker_id=args.broker,
                intent_id=args.intent_id,
            )
            accepted = watched[intent.intent_id] = asyncio.Event()
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
            price = f" limit {args.limit}" if limit else ""
            print(f"intent {intent.intent_id} sent: {args.side} {args.qty} {args.symbol}{price}")
            final = asyncio.ensure_future(om.wait(intent.intent_id, timeout=args.timeout))
            resting = asyncio.ensure_future(accepted.wait())
            try:
                await asyncio.wait({final, resting}, return_when=asyncio.FIRST_COMPLETED)
                if limit and not final.done():
                    # accepted: a marketable limit fills at once; one that does not is resting, as intended
                    await asyncio.wait({final}, timeout=REST_GRACE_S)
                    if not final.done():
                        rec = await om.order(intent.intent_id)
                        status = rec.status.value if rec is not None else "ACCEPTED"
                        filled = f", filled {rec.filled_qty} of {rec.quantity}" if rec is not None else ""
                        print(
                            f"resting: {status}{filled}; cancel with `ordermesh cancel {intent.intent_id}`"
                            + (f" --strategy {args.strategy}" if args.strategy != "cli" else "")
                        )
                        return 0
                outcome = await final
            except OrderMeshError as exc:
                print(f"no outcome: {exc}", file=sys.stderr)
                return 1
            finally:
                for task in (final, resting):
                    task.cancel()
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


def cmd_orders(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    import msgspec
    import nats.errors

    from ordermesh.brokers.registry import BrokerRegistry
    from ordermesh.contract.codec import decode_any
    from ordermesh.contract.subjects import KV_ORDERS
    from ordermesh.contract.wire import UnresolvedQuery, UnresolvedReply
    from ordermesh.platform.bus import Bus
    from ordermesh.routing.orders import OrderRecord

    quiet(config)

    async def go() -> int:
        bus = Bus(config.nats, "cli:orders", identity=OPERATOR)
        await bus.connect()
        try:
            if args.unknown:
                found = 0
                for broker_id in BrokerRegistry(config.brokers).usable():
                    try:
                        data = await bus.request(
                            bus.subjects.q(f"unresolved.{broker_id}"), UnresolvedQuery(), timeout=5
                        )
                    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                        print(f"{broker_id:<12} no gateway answered")
                        continue
                    reply = decode_any(data)
                    assert isinstance(reply, UnresolvedReply)
                    for key, tickets in sorted(reply.unresolved.items()):
                        print(f"{broker_id:<12} {key:<34} candidates: {', '.join(tickets) or 'none'}")
                        found += 1
                print(f"{found} unresolved")
                return 1 if found else 0
            watcher = await (await bus.kv(KV_ORDERS)).watchall(ignore_deletes=True)
            rows = []
            while (entry := await watcher.updates(timeout=10)) is not None:
                rec = msgspec.msgpack.decode(entry.value, type=OrderRecord)
                if args.all or rec.is_open:
                    rows.append(rec)
            await watcher.stop()
        finally:
            await bus.close()
        rows.sort(key=lambda r: r.updated_ns)
        display = Display(config)
        heads = ("client order id", "account", "strategy", "broker", "side", "quantity", "symbol", "limit", "status")
        table_rows = [
            (
                r.client_order_id, r.account, r.strategy_id, r.broker_id, r.side.value,
                display.qty(r.symbol, r.quantity), r.symbol,
                display.price(r.symbol, r.limit_price) if r.limit_price is not None else "market", r.status.value,
                display.qty(r.symbol, r.filled_qty), display.price(r.symbol, r.avg_px),
            )
            for r in rows
        ]  # fmt: skip
        if table_rows:
            print(table((*heads, "filled", "avg price"), table_rows, right={5, 7, 9, 10}))
        print(f"{len(rows)} {'orders' if args.all else 'open orders'}")
        return 0

    return asyncio.run(go())


def cmd_cancel(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    from ordermesh.contract.wire import CancelRequest

    msg = CancelRequest(account=args.account, strategy_id=args.strategy, intent_id=args.intent_id)
    return request_ctl(config, "cancel", msg)


COMMANDS: dict[str, Command] = {"submit": cmd_submit, "cancel": cmd_cancel, "orders": cmd_orders}
