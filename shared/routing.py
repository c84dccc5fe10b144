"""Routing decision (walking-skeleton scope): every order goes to the intent's broker or the default one."""

from __future__ import annotations

from collections.abc import Set

from ordermesh.config import RouterSettings
from ordermesh.ids import place_command_id
from ordermesh.wire import OrderDenied, OrderRequest, PlaceOrder, RejectCategory


def deny(req: OrderRequest, coid: str, category: RejectCategory, detail: str) -> OrderDenied:
    i = req.intent
    return OrderDenied(
        intent_id=i.intent_id,
        client_order_id=coid,
        strategy_id=i.strategy_id,
        account=i.account,
        symbol=i.symbol,
        category=category,
        reason=f"{category.value}: {detail}",
        intent_ts_ns=i.ts_ns,
    )


def decide(
    req: OrderRequest, coid: str, settings: RouterSettings, brokers: Set[str], now_ns: int
) -> PlaceOrder | OrderDenied:
    i = req.intent
    if req.quantity <= 0:
        return deny(req, coid, RejectCategory.INVALID, f"quantity must be positive, got {req.quantity}")
    broker_id = i.broker_id or settings.default_broker
    if broker_id not in brokers:
        return deny(req, coid, RejectCategory.ROUTING, f"no gateway is configured for broker {broker_id!r}")
    return PlaceOrder(
        command_id=place_command_id(coid),
        client_order_id=coid,
        intent_id=i.intent_id,
        strategy_id=i.strategy_id,
        account=i.account,
        broker_id=broker_id,
        symbol=i.symbol,
        side=i.side,
        order_type=i.order_type,
        quantity=req.quantity,
        limit_price=i.limit_price,
        stop_price=i.stop_price,
        time_in_force=i.time_in_force,
        expire_at_ns=i.expire_at_ns,
        reduce_only=i.reduce_only,
        stop_loss=i.stop_loss,
        take_profit=i.take_profit,
        reference_price=i.reference_price,
        intent_ts_ns=i.ts_ns,
        command_expires_ns=now_ns + int(settings.command_ttl_s * 1e9),
        ts_ns=now_ns,
    )
