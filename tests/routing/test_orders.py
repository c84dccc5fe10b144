"""The order state machine: every transition of the table, refused ones, and random event sequences."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordermesh.contract.wire import (
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderExpired,
    OrderFilled,
    OrderModified,
    OrderModifyRejected,
    OrderRejected,
    OrderStatus,
    OrderTriggered,
    Side,
)
from ordermesh.routing.orders import (
    OPEN,
    TERMINAL,
    TRANSITIONS,
    Applied,
    Ev,
    InvalidTransition,
    OrderRecord,
    next_status,
)

S = OrderStatus
D = Decimal
COMMON = dict(client_order_id="c1", intent_id="i1", strategy_id="s1", account="acc", broker_id="paper", symbol="EURUSD")

#: The whole table, written out: (from, event) -> to. ``None``: back to the status before the pending one.
EXPECTED = {
    (S.INITIALIZED, Ev.DENY): S.DENIED,
    (S.INITIALIZED, Ev.SUBMIT): S.SUBMITTED,
    (S.SUBMITTED, Ev.ACCEPT): S.ACCEPTED,
    (S.SUBMITTED, Ev.REJECT): S.REJECTED,
    (S.SUBMITTED, Ev.TRIGGER): S.TRIGGERED,
    (S.SUBMITTED, Ev.CANCEL): S.CANCELED,
    (S.SUBMITTED, Ev.EXPIRE): S.EXPIRED,
    (S.SUBMITTED, Ev.PENDING_UPDATE): S.PENDING_UPDATE,
    (S.SUBMITTED, Ev.PENDING_CANCEL): S.PENDING_CANCEL,
    (S.SUBMITTED, Ev.FILL_PARTIAL): S.PARTIALLY_FILLED,
    (S.SUBMITTED, Ev.FILL_FULL): S.FILLED,
    (S.PENDING_UPDATE, Ev.MODIFY): None,
    (S.PENDING_UPDATE, Ev.MODIFY_REJECT): None,
    (S.PENDING_UPDATE, Ev.ACCEPT): S.ACCEPTED,
    (S.PENDING_UPDATE, Ev.REJECT): S.REJECTED,
    (S.PENDING_UPDATE, Ev.TRIGGER): S.TRIGGERED,
    (S.PENDING_UPDATE, Ev.CANCEL): S.CANCELED,
    (S.PENDING_UPDATE, Ev.EXPIRE): S.EXPIRED,
    (S.PENDING_UPDATE, Ev.PENDING_UPDATE): S.PENDING_UPDATE,
    (S.PENDING_UPDATE, Ev.PENDING_CANCEL): S.PENDING_CANCEL,
    (S.PENDING_UPDATE, Ev.FILL_PARTIAL): S.PARTIALLY_FILLED,
    (S.PENDING_UPDATE, Ev.FILL_FULL): S.FILLED,
    (S.PENDING_CANCEL, Ev.CANCEL): S.CANCELED,
    (S.PENDING_CANCEL, Ev.CANCEL_REJECT): None,
    (S.PENDING_CANCEL, Ev.ACCEPT): S.ACCEPTED,
    (S.PENDING_CANCEL, Ev.REJECT): S.REJECTED,
    (S.PENDING_CANCEL, Ev.EXPIRE): S.EXPIRED,
    (S.PENDING_CANCEL, Ev.PENDING_CANCEL): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, Ev.FILL_PARTIAL): S.PARTIALLY_FILLED,
    (S.PENDING_CANCEL, Ev.FILL_FULL): S.FILLED,
    (S.CANCELED, Ev.FILL_PARTIAL): S.CANCELED,
    (S.CANCELED, Ev.FILL_FULL): S.FILLED,
    (S.EXPIRED, Ev.FILL_PARTIAL): S.EXPIRED,
    (S.EXPIRED, Ev.FILL_FULL): S.FILLED,
    (S.ACCEPTED, Ev.REJECT): S.REJECTED,
    (S.TRIGGERED, Ev.REJECT): S.REJECTED,
    (S.ACCEPTED, Ev.TRIGGER): S.TRIGGERED,
}
for _w in (S.ACCEPTED, S.TRIGGERED, S.PARTIALLY_FILLED):
    EXPECTED |= {
        (_w, Ev.CANCEL): S.CANCELED,
        (_w, Ev.EXPIRE): S.EXPIRED,
        (_w, Ev.PENDING_UPDATE): S.PENDING_UPDATE,
        (_w, Ev.PENDING_CANCEL): S.PENDING_CANCEL,
        (_w, Ev.FILL_PARTIAL): S.PARTIALLY_FILLED,
        (_w, Ev.FILL_FULL): S.FILLED,
        (_w, Ev.MODIFY): _w,
        (_w, Ev.CANCEL_REJECT): _w,
        (_w, Ev.MODIFY_REJECT): _w,
    }


def test_the_table_is_exactly_the_documented_one() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("status", "event"), sorted(EXPECTED, key=lambda k: (k[0].value, k[1].value)))
def test_every_allowed_transition(status: OrderStatus, event: Ev) -> None:
    expected = EXPECTED[(status, event)]
    assert next_status(status, event, S.PARTIALLY_FILLED) == (expected or S.PARTIALLY_FILLED)


@pytest.mark.parametrize(
    ("status", "event"),
    sorted(
        ((s, e) for s in S for e in Ev if (s, e) not in EXPECTED),
        key=lambda k: (k[0].value, k[1].value),
    ),
)
def test_every_other_transition_is_refused(status: OrderStatus, event: Ev) -> None:
    with pytest.raises(InvalidTransition) as err:
        next_status(status, event, None)
    assert str(err.value) == f"{event.value} is not valid for an order in {status.value}"


def test_terminal_states_accept_nothing_but_late_fills() -> None:
    for status in TERMINAL:
        allowed = {e for (s, e) in EXPECTED if s == status}
        assert allowed <= {Ev.FILL_PARTIAL, Ev.FILL_FULL}
    assert {s for (s, _e) in EXPECTED if s in TERMINAL} == {S.CANCELED, S.EXPIRED}
    assert set(S) == OPEN | TERMINAL and not OPEN & TERMINAL


# ------------------------------------------------------------------------------------------ record


def record(qty: str = "1.0") -> OrderRecord:
    rec = OrderRecord(
        client_order_id="c1", intent_id="i1", strategy_id="s1", account="acc", symbol="EURUSD",
        side=Side.BUY, quantity=D(qty), broker_id="paper",
    )  # fmt: skip
    rec.transition(Ev.SUBMIT)
    return rec


def fill(fill_id: str, qty: str, px: str = "1.1") -> OrderFilled:
    return OrderFilled(
        event_id=f"fill:{fill_id}", broker_order_id="B1", fill_id=fill_id, side=Side.BUY, last_qty=D(qty),
        last_px=D(px), cum_qty=D(qty), leaves_qty=D(0), order_qty=D(1), **COMMON,
    )  # fmt: skip


def test_partial_fills_average_price_and_duplicates() -> None:
    rec = record()
    assert rec.apply(OrderAccepted(event_id="a", broker_order_id="B1", **COMMON)) is Applied.APPLIED
    assert rec.apply(fill("f1", "0.4", "1.1")) is Applied.APPLIED
    assert rec.status is S.PARTIALLY_FILLED
    assert rec.apply(fill("f1", "0.4", "1.1")) is Applied.DUPLICATE
    assert rec.apply(fill("f2", "0.6", "1.2")) is Applied.APPLIED
    assert (rec.status, rec.filled_qty, rec.avg_px, rec.leaves_qty) == (S.FILLED, D("1.0"), D("1.16"), D(0))


def test_overfill_is_refused_and_changes_nothing() -> None:
    rec = record()
    rec.apply(fill("f1", "0.7"))
    with pytest.raises(InvalidTransition, match=r"fill of 0\.4 on 0\.7 filled of 1\.0"):
        rec.apply(fill("f2", "0.4"))
    assert (rec.status, rec.filled_qty, rec.fill_ids) == (S.PARTIALLY_FILLED, D("0.7"), ["f1"])


def test_fill_after_cancel_is_applied() -> None:
    rec = record()
    rec.apply(OrderCanceled(event_id="x", **COMMON))
    rec.apply(fill("late", "0.3"))
    assert (rec.status, rec.filled_qty) == (S.CANCELED, D("0.3"))
    rec.apply(fill("late2", "0.7"))
    assert rec.status is S.FILLED


def test_cancel_reject_restores_the_previous_state() -> None:
    rec = record()
    rec.apply(OrderAccepted(event_id="a", broker_order_id="B1", **COMMON))
    rec.apply(fill("f1", "0.5"))
    rec.transition(Ev.PENDING_CANCEL)
    assert (rec.status, rec.previous_status) == (S.PENDING_CANCEL, S.PARTIALLY_FILLED)
    rec.apply(OrderCancelRejected(event_id="cr", reason="too late", **COMMON))
    assert (rec.status, rec.previous_status, rec.reason) == (S.PARTIALLY_FILLED, None, "too late")


def test_modify_applies_new_quantity_and_price_and_restores() -> None:
    rec = record()
    rec.apply(OrderAccepted(event_id="a", broker_order_id="B1", **COMMON))
    rec.transition(Ev.PENDING_UPDATE)
    rec.apply(OrderModified(event_id="m", quantity=D("2.0"), limit_price=D("1.05"), **COMMON))
    assert (rec.status, rec.quantity, rec.limit_price) == (S.ACCEPTED, D("2.0"), D("1.05"))
    rec.transition(Ev.PENDING_UPDATE)
    rec.apply(OrderModifyRejected(event_id="mr", reason="off the tick", **COMMON))
    assert rec.status is S.ACCEPTED


def test_a_submit_timeout_is_not_a_reject() -> None:
    # No report arrives: the order stays SUBMITTED (unknown outcome) until a status report resolves it.
    rec = record()
    assert rec.status is S.SUBMITTED and rec.is_open
    rec.apply(fill("resolved", "1.0"))
    assert rec.status is S.FILLED


def test_invalid_event_leaves_the_record_untouched() -> None:
    rec = record()
    rec.apply(OrderRejected(event_id="r", category="BROKER", reason="BROKER: no", **COMMON))  # type: ignore[arg-type]
    before = rec.status
    with pytest.raises(InvalidTransition):
        rec.apply(OrderAccepted(event_id="a", broker_order_id="B1", **COMMON))
    assert rec.status is before is S.REJECTED and rec.broker_order_id is None


EVENTS = st.sampled_from(["accept", "reject", "trigger", "cancel", "expire", "modify", "cancel_rej", "modify_rej",
                          "pending_cancel", "pending_update", "fill"])  # fmt: skip


@settings(max_examples=300)
@given(st.lists(st.tuples(EVENTS, st.integers(1, 6)), max_size=40))
def test_random_event_sequences_stay_on_the_table(steps: list[tuple[str, int]]) -> None:
    rec = record("1.0")
    reachable = {S.SUBMITTED} | {to for to in EXPECTED.values() if to} | {S.ACCEPTED, S.TRIGGERED}
    for n, (kind, tenths) in enumerate(steps):
        before = (rec.status, rec.filled_qty, rec.previous_status)
        try:
            if kind == "pending_cancel":
                rec.transition(Ev.PENDING_CANCEL)
            elif kind == "pending_update":
                rec.transition(Ev.PENDING_UPDATE)
            elif kind == "fill":
                rec.apply(fill(f"f{n}", str(D(tenths) / 10)))
            else:
                event = {
                    "accept": OrderAccepted(event_id="e", broker_order_id="B", **COMMON),
                    "reject": OrderRejected(event_id="e", category="BROKER", reason="x", **COMMON),  # type: ignore[arg-type]
                    "trigger": OrderTriggered(event_id="e", **COMMON),
                    "cancel": OrderCanceled(event_id="e", **COMMON),
                    "expire": OrderExpired(event_id="e", **COMMON),
                    "modify": OrderModified(event_id="e", **COMMON),
                    "cancel_rej": OrderCancelRejected(event_id="e", reason="x", **COMMON),
                    "modify_rej": OrderModifyRejected(event_id="e", reason="x", **COMMON),
                }[kind]
                rec.apply(event)
        except InvalidTransition:
            assert (rec.status, rec.filled_qty, rec.previous_status) == before
        assert rec.status in reachable
        assert D(0) <= rec.filled_qty <= rec.quantity
        assert (rec.status is S.FILLED) == (rec.filled_qty == rec.quantity)
        assert (rec.previous_status is not None) == (rec.status in (S.PENDING_CANCEL, S.PENDING_UPDATE))
