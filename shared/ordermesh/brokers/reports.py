"""Execution reports from the broker's view of an order (pure).

Each report's ``event_id`` is deterministic (the fill's is the broker's trade id), so reporting an order again
after a redelivery or a reconnect publishes nothing new: JetStream drops the repeats by ``Nats-Msg-Id``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

from ordermesh.brokers.model import BrokerError, BrokerOrder, BrokerOrderState
from ordermesh.contract.ids import fill_event_id, order_event_id
from ordermesh.contract.wire import (
    CancelOrder,
    ExecEvent,
    ModifyOrder,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderModifyRejected,
    OrderRejected,
    OrderType,
    PlaceOrder,
    RejectCategory,
    TimeInForce,
)


def attached_command(parent: PlaceOrder, kind: Literal["sl", "tp"], quantity: Decimal) -> PlaceOrder:
    """The command a venue-side stop-loss (``sl``) or take-profit (``tp``) of ``parent`` stands for: client order
    id ``<parent>-sl`` / ``<parent>-tp``, the opposite side, reduce-only, for ``quantity``. Its reports carry the
    parent's id (``parent_client_order_id``), so the router records it as the parent's child."""
    coid = f"{parent.client_order_id}-{kind}"
    price = parent.stop_loss if kind == "sl" else parent.take_profit
    return PlaceOrder(
        command_id=f"attached:{coid}",
        client_order_id=coid,
        intent_id=f"{parent.intent_id}-{kind}",
        strategy_id=parent.strategy_id,
        account=parent.account,
        broker_id=parent.broker_id,
        symbol=parent.symbol,
        side=parent.side.opposite,
        order_type=OrderType.STOP if kind == "sl" else OrderType.LIMIT,
        quantity=quantity,
        stop_price=price if kind == "sl" else None,
        limit_price=price if kind == "tp" else None,
        time_in_force=TimeInForce.GTC,
        reduce_only=True,
        intent_ts_ns=parent.intent_ts_ns,
        position_id=parent.position_id,
    )


def attached_parent(cmd: PlaceOrder) -> str | None:
    """The client order id of the order ``cmd`` protects, when :func:`attached_command` built it; else None."""
    if not cmd.command_id.startswith("attached:"):
        return None
    return cmd.client_order_id.rsplit("-", 1)[0]


def child_reports(events: list[ExecEvent], parent_client_order_id: str | None) -> list[ExecEvent]:
    """Reports of an attached order, marked with the order it protects."""
    if parent_client_order_id is None:
        return events
    return [msgspec.structs.replace(e, parent_client_order_id=parent_client_order_id) for e in events]


def _common(cmd: PlaceOrder) -> dict[str, object]:
    return dict(
        client_order_id=cmd.client_order_id,
        intent_id=cmd.intent_id,
        strategy_id=cmd.strategy_id,
        account=cmd.account,
        broker_id=cmd.broker_id,
        symbol=cmd.symbol,
        intent_ts_ns=cmd.intent_ts_ns,
    )


def reports_for(cmd: PlaceOrder, order: BrokerOrder) -> list[ExecEvent]:
    """Every report the order has earned so far: accepted, one per fill, and its terminal state."""
    common = _common(cmd)
    coid = cmd.client_order_id
    out: list[ExecEvent] = []
    if order.state is BrokerOrderState.REJECTED:
        return [
            OrderRejected(
                event_id=order_event_id(coid, "rejected"),
                category=RejectCategory.BROKER,
                reason=f"BROKER: {order.reason}" if order.reason else "BROKER: rejected by the venue",
                **common,
            )
        ]
    out.append(
        OrderAccepted(event_id=order_event_id(coid, "accepted"), broker_order_id=order.broker_order_id, **common)
    )
    cum = Decimal(0)
    for fill in order.fills:
        cum += fill.quantity
        out.append(
            OrderFilled(
                event_id=fill_event_id(cmd.broker_id, fill.fill_id),
                broker_order_id=order.broker_order_id,
                fill_id=fill.fill_id,
                side=cmd.side,
                last_qty=fill.quantity,
                last_px=fill.price,
                cum_qty=cum,
                leaves_qty=order.quantity - cum,
                order_qty=order.quantity,
                commission=fill.commission,
                commission_asset=fill.commission_asset,
                liquidity=fill.liquidity,
                reference_price=cmd.reference_price,
                position_id=fill.position_id,
                **common,
            )
        )
    if order.state is BrokerOrderState.CANCELED:
        out.append(
            OrderCanceled(
                event_id=order_event_id(coid, "canceled"),
                broker_order_id=order.broker_order_id,
                reason=order.reason or ("canceled on request" if not cum else "unfilled quantity canceled"),
                **common,
            )
        )
    elif order.state is BrokerOrderState.EXPIRED:
        out.append(
            OrderExpired(event_id=order_event_id(coid, "expired"), broker_order_id=order.broker_order_id, **common)
        )
    return out


def _command_common(cmd: CancelOrder | ModifyOrder) -> dict[str, object]:
    return dict(
        client_order_id=cmd.client_order_id,
        intent_id=cmd.intent_id,
        strategy_id=cmd.strategy_id,
        account=cmd.account,
        broker_id=cmd.broker_id,
        symbol=cmd.symbol,
    )


def cancel_reports(cmd: CancelOrder, order: BrokerOrder) -> list[ExecEvent]:
    """What a cancel achieved: OrderCanceled, or OrderCancelRejected when the order had already finished."""
    if order.state is BrokerOrderState.CANCELED:
        return [
            OrderCanceled(
                event_id=order_event_id(cmd.client_order_id, "canceled"),
                broker_order_id=order.broker_order_id,
                reason="canceled on request",
                **_command_common(cmd),
            )
        ]
    return [cancel_rejected(cmd, f"order is {order.state.value}")]


def cancel_rejected(cmd: CancelOrder, reason: str) -> OrderCancelRejected:
    return OrderCancelRejected(
        event_id=order_event_id(cmd.client_order_id, "cancel_rejected", cmd.command_id),
        reason=reason,
        **_command_common(cmd),
    )


def modify_reports(cmd: ModifyOrder, order: BrokerOrder) -> list[ExecEvent]:
    return [
        OrderModified(
            event_id=order_event_id(cmd.client_order_id, "modified", cmd.command_id),
            broker_order_id=order.broker_order_id,
            quantity=order.quantity,
            limit_price=order.limit_price,
            **_command_common(cmd),
        )
    ]


def modify_rejected(cmd: ModifyOrder, reason: str) -> OrderModifyRejected:
    return OrderModifyRejected(
        event_id=order_event_id(cmd.client_order_id, "modify_rejected", cmd.command_id),
        reason=reason,
        **_command_common(cmd),
    )


def rejection(cmd: PlaceOrder, category: RejectCategory, detail: str, code: str | None = None) -> OrderRejected:
    return OrderRejected(
        event_id=order_event_id(cmd.client_order_id, "rejected"),
        category=category,
        reason=f"{category.value}: {detail}",
        broker_code=code,
        **_common(cmd),
    )


def broker_rejection(cmd: PlaceOrder, err: BrokerError) -> OrderRejected:
    return rejection(cmd, err.category, err.message, err.code)
