"""The router's record of one order, keyed by client order id (walking-skeleton scope).

Events only move an order forward: a late or repeated event never drags it back to an earlier state.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from ordermesh.wire import (
    ExecEvent,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderRejected,
    OrderStatus,
    PlaceOrder,
    Side,
)

#: Rank of each status on the way to a terminal state; an event may only raise the rank.
_RANK = {
    OrderStatus.INITIALIZED: 0,
    OrderStatus.SUBMITTED: 1,
    OrderStatus.ACCEPTED: 2,
    OrderStatus.PENDING_UPDATE: 2,
    OrderStatus.PENDING_CANCEL: 2,
    OrderStatus.TRIGGERED: 2,
    OrderStatus.PARTIALLY_FILLED: 3,
    OrderStatus.DENIED: 9,
    OrderStatus.REJECTED: 9,
    OrderStatus.CANCELED: 9,
    OrderStatus.EXPIRED: 9,
    OrderStatus.FILLED: 10,
}


class OrderRecord(msgspec.Struct, kw_only=True):
    client_order_id: str
    intent_id: str
    strategy_id: str
    account: str
    symbol: str
    side: Side
    quantity: Decimal
    broker_id: str
    status: OrderStatus
    command_id: str = ""
    broker_order_id: str | None = None
    filled_qty: Decimal = Decimal(0)
    avg_px: Decimal | None = None
    reason: str = ""
    intent_ts_ns: int = 0
    updated_ns: int = 0
    fill_ids: list[str] = msgspec.field(default_factory=list)

    @classmethod
    def from_command(cls, cmd: PlaceOrder) -> OrderRecord:
        return cls(
            client_order_id=cmd.client_order_id,
            intent_id=cmd.intent_id,
            strategy_id=cmd.strategy_id,
            account=cmd.account,
            symbol=cmd.symbol,
            side=cmd.side,
            quantity=cmd.quantity,
            broker_id=cmd.broker_id,
            status=OrderStatus.INITIALIZED,
            command_id=cmd.command_id,
            intent_ts_ns=cmd.intent_ts_ns,
            updated_ns=cmd.ts_ns,
        )

    @property
    def is_open(self) -> bool:
        return _RANK[self.status] < 9

    def advance(self, status: OrderStatus) -> bool:
        if _RANK[status] <= _RANK[self.status]:
            return False
        self.status = status
        return True

    def apply(self, event: ExecEvent) -> bool:
        """Apply an execution report; returns False when it changed nothing (repeat or stale)."""
        self.updated_ns = max(self.updated_ns, event.ts_ns)
        if isinstance(event, OrderFilled):
            if event.fill_id in self.fill_ids:
                return False
            if self.filled_qty + event.last_qty > self.quantity:
                return False  # an over-fill is refused, never applied
            notional = (self.avg_px or Decimal(0)) * self.filled_qty + event.last_px * event.last_qty
            self.filled_qty += event.last_qty
            self.avg_px = notional / self.filled_qty
            self.fill_ids.append(event.fill_id)
            self.broker_order_id = event.broker_order_id
            filled = self.filled_qty == self.quantity
            # A fill after CANCELED is real (it happens at venues): quantity counts, status stays terminal.
            if self.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED) and not filled:
                return True
            self.status = OrderStatus.FILLED if filled else OrderStatus.PARTIALLY_FILLED
            return True
        if isinstance(event, OrderAccepted):
            self.broker_order_id = event.broker_order_id
            return self.advance(OrderStatus.ACCEPTED)
        if isinstance(event, OrderRejected):
            self.reason = event.reason
            return self.advance(OrderStatus.REJECTED)
        if isinstance(event, OrderCanceled):
            self.reason = event.reason
            return self.advance(OrderStatus.CANCELED)
        if isinstance(event, OrderExpired):
            return self.advance(OrderStatus.EXPIRED)
        if isinstance(event, OrderModified):
            if event.quantity is not None:
                self.quantity = event.quantity
            return True
        return False
