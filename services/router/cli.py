"""Operator commands served by the router: trading state, cancels, the broker registry."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import nats.errors

from ordermesh.brokers.registry import BrokerRegistry
from ordermesh.contract.codec import decode_any
from ordermesh.contract.wire import (
    CancelAll,
    CancelRequest,
    ControlReply,
    RegistryReload,
    SetTradingState,
    TradingState,
)
from ordermesh.platform.bus import Bus
from ordermesh.platform.config import OrderMeshConfig
from ordermesh.platform.log import setup_logging
from ordermesh.platform.runtime import install_uvloop


def add_parsers(sub: Any) -> None:
    for name, state in (("halt", "HALTED"), ("reduce", "REDUCING"), ("resume", "ACTIVE")):
        sp = sub.add_parser(name, help=f"set trading to {state} (global, or for one account or strategy)")
        sp.add_argument("--account", help="only this account")
        sp.add_argument("--strategy", help="only this strategy (needs --account)")
        sp.add_argument("--reason", default="", help="why (logged by the router)")
    ca = sub.add_parser("cancel-all", help="cancel every open order (of an account or a strategy)")
    ca.add_argument("--account")
    ca.add_argument("--strategy")
    cn = sub.add_parser("cancel", help="cancel one order by its intent id")
    cn.add_argument("intent_id")
    cn.add_argument("--account", default="paper-1")
    cn.add_argument("--strategy", default="cli")
    od = sub.add_parser("orders", help="open orders (the router's records); --unknown: what gateways could not resolve")
    od.add_argument("--all", action="store_true", help="finished orders too")
    od.add_argument("--unknown", action="store_true", help="tickets and orders gateways could not match, never guessed")
    br = sub.add_parser("brokers", help="list the broker registry (`brokers validate`: check it; `reload`: live)")
    br.add_argument("action", nargs="?", choices=["list", "validate", "reload"], default="list")


def _quiet(config: OrderMeshConfig) -> None:
    import msgspec

    setup_logging(msgspec.structs.replace(config.log, level="warning"))
    install_uvloop()


def _request(config: OrderMeshConfig, name: str, msg: Any) -> int:
    _quiet(config)

    async def go() -> int:
        bus = Bus(config.nats, "cli:ctl")
        await bus.connect()
        try:
            data = await bus.request(bus.subjects.ctl(name), msg, timeout=10.0)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            print("no router answered (is `ordermesh router` running?)", file=sys.stderr)
            return 1
        finally:
            await bus.close()
        reply = decode_any(data)
        assert isinstance(reply, ControlReply)
        print(reply.detail)
        return 0 if reply.ok else 1

    return asyncio.run(go())


def cmd_trading(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    state = {"halt": TradingState.HALTED, "reduce": TradingState.REDUCING, "resume": TradingState.ACTIVE}
    if args.strategy and not args.account:
        print("ordermesh: --strategy needs --account", file=sys.stderr)
        return 2
    msg = SetTradingState(
        state=state[args.command], account=args.account, strategy_id=args.strategy, reason=args.reason
    )
    return _request(config, "trading", msg)


def cmd_cancel_all(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    return _request(config, "cancel_all", CancelAll(account=args.account, strategy_id=args.strategy))


def cmd_cancel(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    msg = CancelRequest(account=args.account, strategy_id=args.strategy, intent_id=args.intent_id)
    return _request(config, "cancel", msg)


def cmd_brokers(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    if args.action == "reload":
        return _request(config, "registry.reload", RegistryReload())
    registry = BrokerRegistry(config.brokers)
    if args.action == "validate":
        problems = registry.validate()
        for line in problems:
            print(line)
        usable = registry.usable()
        print(f"{len(registry.ids)} broker(s), {len(usable)} usable: {', '.join(usable) or 'none'}")
        return 1 if any(line.startswith("error:") for line in problems) else 0
    for bid in registry.ids:
        row = registry.describe(bid)
        rest = "  ".join(
            f"{k}={v}" for k, v in row.items() if k not in ("broker_id", "type", "enabled", "status", "gateway")
        )
        print(f"{bid:<14} {row['type']:<14} {row['status']:<9} {rest}")
    return 0


def cmd_orders(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    import msgspec

    from ordermesh.contract.subjects import KV_ORDERS
    from ordermesh.contract.wire import UnresolvedQuery, UnresolvedReply
    from ordermesh.routing.orders import OrderRecord

    _quiet(config)

    async def go() -> int:
        bus = Bus(config.nats, "cli:orders")
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
        for r in rows:
            price = f" @ {r.avg_px.normalize()}" if r.avg_px is not None else ""
            limit = f" limit {r.limit_price}" if r.limit_price is not None else ""
            print(
                f"{r.client_order_id}  {r.account:<10} {r.strategy_id:<14} {r.broker_id:<8} {r.side.value:<4} "
                f"{r.quantity!s:>8} {r.symbol:<10}{limit:<16} {r.status.value:<16} filled {r.filled_qty}{price}"
            )
        print(f"{len(rows)} {'orders' if args.all else 'open orders'}")
        return 0

    return asyncio.run(go())


COMMANDS = {
    "halt": cmd_trading,
    "reduce": cmd_trading,
    "resume": cmd_trading,
    "cancel-all": cmd_cancel_all,
    "cancel": cmd_cancel,
    "brokers": cmd_brokers,
    "orders": cmd_orders,
}
