"""The order lifecycle: one explicit transition table, and the router's record of one order.

The table maps (status, event kind) to the next status. Anything not in it is an invalid event: the record
is left as it was and the caller logs and counts it (it is never fanned out). Two rules come from real
venues: a fill may arrive after the order was canceled or expired (it is applied; the order becomes FILLED
only if the fill completes it), and a broker timeout on submit leaves the order SUBMITTED (unknown outcome)
until a status report resolves it, never REJECTED by guess. An over-fill is refused.
"""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Final

import msgspec

from ordermesh.contract.wire import (
    ExecEvent,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderModifyRejected,
    OrderRejected,
    OrderStatus,
    OrderTriggered,
    PlaceOrder,
    RejectCategory,
    Side,
)


class Ev(enum.Enum):
    """What happens to an order: router decisions and broker reports."""

    DENY = "DENY"
    SUBMIT = "SUBMIT"
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    TRIGGER = "TRIGGER"
    PENDING_UPDATE = "PENDING_UPDATE"
    PENDING_CANCEL = "PENDING_CANCEL"
    MODIFY = "MODIFY"
    MODIFY_REJECT = "MODIFY_REJECT"
    CANCEL = "CANCEL"
    CANCEL_REJECT = "CANCEL_REJECT"
    EXPIRE = "EXPIRE"
    FILL_PARTIAL = "FILL_PARTIAL"
    FILL_FULL = "FILL_FULL"


#: Target meaning "back to the status before PENDING_UPDATE / PENDING_CANCEL".
RESTORE: Final = None

S = OrderStatus
_WORKING = (S.ACCEPTED, S.TRIGGERED, S.PARTIALLY_FILLED)


def _table() -> dict[tuple[OrderStatus, Ev], OrderStatus | None]:
    t: dict[tuple[OrderStatus, Ev], OrderStatus | None] = {
        (S.INITIALIZED, Ev.DENY): S.DENIED,
        (S.INITIALIZED, Ev.SUBMIT): S.SUBMITTED,
        # SUBMITTED: the broker has it, or may have it (unknown outcome)
        (S.SUBMITTED, Ev.ACCEPT): S.ACCEPTED,
        (S.SUBMITTED, Ev.REJECT): S.REJECTED,
        (S.SUBMITTED, Ev.TRIGGER): S.TRIGGERED,
        (S.SUBMITTED, Ev.CANCEL): S.CANCELED,
        (S.SUBMITTED, Ev.EXPIRE): S.EXPIRED,
        (S.SUBMITTED, Ev.PENDING_UPDATE): S.PENDING_UPDATE,
        (S.SUBMITTED, Ev.PENDING_CANCEL): S.PENDING_CANCEL,
        (S.SUBMITTED, Ev.FILL_PARTIAL): S.PARTIALLY_FILLED,  # some venues report the fill before the ack
        (S.SUBMITTED, Ev.FILL_FULL): S.FILLED,
        # PENDING_UPDATE: a modify is on its way
        (S.PENDING_UPDATE, Ev.MODIFY): RESTORE,
        (S.PENDING_UPDATE, Ev.MODIFY_REJECT): RESTORE,
        (S.PENDING_UPDATE, Ev.ACCEPT): S.ACCEPTED,
        (S.PENDING_UPDATE, Ev.REJECT): S.REJECTED,
        (S.PENDING_UPDATE, Ev.TRIGGER): S.TRIGGERED,
        (S.PENDING_UPDATE, Ev.CANCEL): S.CANCELED,
        (S.PENDING_UPDATE, Ev.EXPIRE): S.EXPIRED,
        (S.PENDING_UPDATE, Ev.PENDING_UPDATE): S.PENDING_UPDATE,
        (S.PENDING_UPDATE, Ev.PENDING_CANCEL): S.PENDING_CANCEL,
        (S.PENDING_UPDATE, Ev.FILL_PARTIAL): S.PARTIALLY_FILLED,
        (S.PENDING_UPDATE, Ev.FILL_FULL): S.FILLED,
        # PENDING_CANCEL: a cancel is on its way; fills can still beat it
        (S.PENDING_CANCEL, Ev.CANCEL): S.CANCELED,
        (S.PENDING_CANCEL, Ev.CANCEL_REJECT): RESTORE,
        (S.PENDING_CANCEL, Ev.ACCEPT): S.ACCEPTED,
        (S.PENDING_CANCEL, Ev.REJECT): S.REJECTED,
        (S.PENDING_CANCEL, Ev.EXPIRE): S.EXPIRED,
        (S.PENDING_CANCEL, Ev.PENDING_CANCEL): S.PENDING_CANCEL,
        (S.PENDING_CANCEL, Ev.FILL_PARTIAL): S.PARTIALLY_FILLED,
        (S.PENDING_CANCEL, Ev.FILL_FULL): S.FILLED,
        # after cancel/expiry: late fills are real
        (S.CANCELED, Ev.FILL_PARTIAL): S.CANCELED,
        (S.CANCELED, Ev.FILL_FULL): S.FILLED,
        (S.EXPIRED, Ev.FILL_PARTIAL): S.EXPIRED,
        (S.EXPIRED, Ev.FILL_FULL): S.FILLED,
    }
    for working in _WORKING:
        t.update(
            {
                (working, Ev.CANCEL): S.CANCELED,
                (working, Ev.EXPIRE): S.EXPIRED,
                (working, Ev.PENDING_UPDATE): S.PENDING_UPDATE,
                (working, Ev.PENDING_CANCEL): S.PENDING_CANCEL,
                (working, Ev.FILL_PARTIAL): S.PARTIALLY_FILLED,
                (working, Ev.FILL_FULL): S.FILLED,
                (working, Ev.MODIFY): working,  # an unsolicited amendment by the venue
                (working, Ev.CANCEL_REJECT): working,  # a late reject after the restore
                (working, Ev.MODIFY_REJECT): working,
            }
        )
    for working in (S.ACCEPTED, S.TRIGGERED):
        t[(working, Ev.REJECT)] = S.REJECTED
    t[(S.ACCEPTED, Ev.TRIGGER)] = S.TRIGGERED
    return t


TRANSITIONS: Final[dict[tuple[OrderStatus, Ev], OrderStatus | None]] = _table()

TERMINAL: Final = frozenset({S.DENIED, S.REJECTED, S.FILLED, S.CANCELED, S.EXPIRED})
#: Orders the broker may still fill (open orders for risk and cancel-all).
OPEN: Final = frozenset(set(S) - TERMINAL)


class InvalidTransition(Exception):
    def __init__(self, status: OrderStatus, event: Ev, detail: str = "") -> None:
        super().__init__(
            f"{event.value} is not valid for an order in {status.value}" + (f": {detail}" if detail else "")
        )
        self.status = status
        self.event = event


def next_status(status: OrderStatus, event: Ev, previous: OrderStatus | None) -> OrderStatus:
    """The status after ``event``; raises InvalidTransition when the table has no such transition."""
    key = (status, event)
    if key not in TRANSITIONS:
        raise InvalidTransition(status, event)
    target = TRANSITIONS[key]
    if target is RESTORE:
        return previous if previous is not None else S.ACCEPTED
    return target


class Applied(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # a fill already counted: nothing to do


class OrderRecord(msgspec.Struct, kw_only=True):
    client_order_id: str
    intent_id: str
    strategy_id: str
    account: str
    symbol: str
    side: Side
    quantity: Decimal
    broker_id: str
    status: OrderStatus = OrderStatus.INITIALIZED
    previous_status: OrderStatus | None = None
    command_id: str = ""
    broker_order_id: str | None = None
    limit_price: Decimal | None = None
    reduce_only: bool = False
    filled_qty: Decimal = Decimal(0)
    avg_px: Decimal | None = None
    reason: str = ""
    intent_ts_ns: int = 0
    updated_ns: int = 0
    fill_ids: list[str] = msgspec.field(default_factory=list)
    #: For an order the venue created for one of ours (attached stop-loss / take-profit): that order.
    parent_client_order_id: str | None = None

    @classmethod
    def child_of(cls, parent: OrderRecord, event: ExecEvent) -> OrderRecord:
        """The record of a venue-created order protecting ``parent`` (it closes what the parent filled)."""
        qty = event.order_qty if isinstance(event, OrderFilled) else parent.filled_qty
        rec = cls(
            client_order_id=event.client_order_id,
            intent_id=parent.intent_id,
            strategy_id=parent.strategy_id,
            account=parent.account,
            symbol=parent.symbol,
            side=parent.side.opposite,
            quantity=qty,
            broker_id=parent.broker_id,
            reduce_only=True,
            intent_ts_ns=parent.intent_ts_ns,
            updated_ns=event.ts_ns,
            parent_client_order_id=parent.client_order_id,
        )
        rec.transition(Ev.SUBMIT)
        return rec

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
            command_id=cmd.command_id,
            limit_price=cmd.limit_price,
            reduce_only=cmd.reduce_only,
            intent_ts_ns=cmd.intent_ts_ns,
            updated_ns=cmd.ts_ns,
        )

    @classmethod
    def denied(cls, denial: OrderDenied, side: Side, quantity: Decimal) -> OrderRecord:
        """The record of a router's denial: the decision is kept, so a redelivered request repeats it."""
        rec = cls(
            client_order_id=denial.client_order_id,
            intent_id=denial.intent_id,
            strategy_id=denial.strategy_id,
            account=denial.account,
            symbol=denial.symbol,
            side=side,
            quantity=quantity,
            broker_id="",
            reason=denial.reason,
            intent_ts_ns=denial.intent_ts_ns,
            updated_ns=denial.ts_ns,
        )
        rec.transition(Ev.DENY)
        return rec

    def denial(self) -> OrderDenied:
        """The denial this record keeps (its reason starts with the category: ``CATEGORY: detail``)."""
        head = self.reason.split(":", 1)[0]
        category = RejectCategory(head) if head in RejectCategory.__members__ else RejectCategory.RISK
        return OrderDenied(
            intent_id=self.intent_id,
            client_order_id=self.client_order_id,
            strategy_id=self.strategy_id,
            account=self.account,
            symbol=self.symbol,
            category=category,
            reason=self.reason,
            intent_ts_ns=self.intent_ts_ns,
        )

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def leaves_qty(self) -> Decimal:
        """Quantity the broker may still fill (zero once the order is finished)."""
        return self.quantity - self.filled_qty if self.is_open else Decimal(0)

    def transition(self, event: Ev) -> None:
        """Apply a router-side event (DENY, SUBMIT, PENDING_CANCEL, PENDING_UPDATE)."""
        self._move(next_status(self.status, event, self.previous_status))

    def _move(self, status: OrderStatus) -> None:
        if status in (S.PENDING_CANCEL, S.PENDING_UPDATE) and self.status not in (S.PENDING_CANCEL, S.PENDING_UPDATE):
            self.previous_status = self.status
        elif status not in (S.PENDING_CANCEL, S.PENDING_UPDATE):
            self.previous_status = None
        self.status = status

    def apply(self, event: ExecEvent) -> Applied:
        """Apply a broker report. Raises InvalidTransition (state unchanged) when the report is not valid here."""
        if isinstance(event, OrderFilled):
            return self._fill(event)
        kind = _KIND[type(event)]
        target = next_status(self.status, kind, self.previous_status)
        if isinstance(event, OrderAccepted):
            self.broker_order_id = event.broker_order_id
        elif isinstance(event, OrderRejected | OrderCanceled):
            self.reason = event.reason
        elif isinstance(event, OrderModified):
            if event.quantity is not None:
                if event.quantity < self.filled_qty:
                    raise InvalidTransition(self.status, kind, f"quantity {event.quantity} < filled {self.filled_qty}")
                self.quantity = event.quantity
            if event.limit_price is not None:
                self.limit_price = event.limit_price
        elif isinstance(event, OrderCancelRejected | OrderModifyRejected):
            self.reason = event.reason
        self._move(target)
        self.updated_ns = max(self.updated_ns, event.ts_ns)
        return Applied.APPLIED

    def _fill(self, fill: OrderFilled) -> Applied:
        if fill.fill_id in self.fill_ids:
            return Applied.DUPLICATE
        filled = self.filled_qty + fill.last_qty
        kind = Ev.FILL_FULL if filled == self.quantity else Ev.FILL_PARTIAL
        if fill.last_qty <= 0 or filled > self.quantity:
            raise InvalidTransition(
                self.status, kind, f"fill of {fill.last_qty} on {self.filled_qty} filled of {self.quantity}"
            )
        target = next_status(self.status, kind, self.previous_status)
        notional = (self.avg_px or Decimal(0)) * self.filled_qty + fill.last_px * fill.last_qty
        self.filled_qty = filled
        self.avg_px = notional / filled
        self.fill_ids.append(fill.fill_id)
        self.broker_order_id = fill.broker_order_id
        self._move(target)
        self.updated_ns = max(self.updated_ns, fill.ts_ns)
        return Applied.APPLIED


_KIND: Final[dict[type, Ev]] = {
    OrderAccepted: Ev.ACCEPT,
    OrderRejected: Ev.REJECT,
    OrderCanceled: Ev.CANCEL,
    OrderExpired: Ev.EXPIRE,
    OrderModified: Ev.MODIFY,
    OrderTriggered: Ev.TRIGGER,
    OrderCancelRejected: Ev.CANCEL_REJECT,
    OrderModifyRejected: Ev.MODIFY_REJECT,
}
