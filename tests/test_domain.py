"""Pure domain code of the skeleton: ids, sizing validation, routing, order records, reports, position book."""

from __future__ import annotations

import re
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordermesh.books.positions import PositionBook
from ordermesh.brokers.model import BrokerFill, BrokerOrder, BrokerOrderState, InsufficientFundsError
from ordermesh.brokers.reports import attached_command, attached_parent, broker_rejection, reports_for
from ordermesh.contract.ids import client_order_id
from ordermesh.contract.wire import (
    Fixed,
    Intent,
    IntentRejected,
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    OrderType,
    PlaceOrder,
    RejectCategory,
    RiskPct,
    Side,
    TimeInForce,
)
from ordermesh.sizing.engine import size_intent

D = Decimal


def intent(**kw: object) -> Intent:
    base: dict[str, object] = dict(
        intent_id="i1", strategy_id="s1", account="acc", symbol="EURUSD", side=Side.BUY, sizing=Fixed(qty=D("0.5"))
    )
    base.update(kw)
    return Intent(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ ids


def test_client_order_id_is_deterministic_and_fits_binance_and_mt5() -> None:
    a = client_order_id("acc", "intent-1")
    assert a == client_order_id("acc", "intent-1")
    assert a != client_order_id("acc", "intent-2")
    assert a != client_order_id("acc2", "intent-1")
    assert len(a) == 31
    assert re.fullmatch(r"[A-Za-z0-9._:/-]{1,36}", a)


@given(st.text(min_size=1), st.text(min_size=1))
def test_client_order_id_charset_for_any_input(account: str, intent_id: str) -> None:
    assert re.fullmatch(r"om-[0-9a-f]{28}", client_order_id(account, intent_id))


# --------------------------------------------------------------------------------------- sizing


def test_fixed_sizing_gives_the_quantity_and_an_audit() -> None:
    out = size_intent(intent(), D("25000"))
    assert isinstance(out, OrderRequest)
    assert out.quantity == D("0.5")
    assert out.sizing_audit.account_balance == D("25000")
    assert out.sizing_audit.lot_size == D("0.5")
    assert out.sizing_audit.calculation_steps


def test_invalid_intents_are_rejected_with_reason() -> None:
    cases = {
        "INVALID: a LIMIT order needs limit_price": intent(order_type=OrderType.LIMIT),
        "INVALID: a STOP order needs stop_price": intent(order_type=OrderType.STOP),
        "INVALID: a GTD order needs expire_at_ns": intent(time_in_force=TimeInForce.GTD),
        "INVALID: limit_price must be a positive number, got -1": intent(order_type=OrderType.LIMIT, limit_price=D(-1)),
        "SIZING: fixed quantity must be positive, got 0": intent(sizing=Fixed(qty=D(0))),
        "INVALID: invalid: risk_pct must be in (0, 1], got 0": intent(
            sizing=RiskPct(risk_pct=D(0), stop_loss_pips=D(20))
        ),
    }
    for reason, bad in cases.items():
        out = size_intent(bad, D(1000))
        assert isinstance(out, IntentRejected), reason
        assert out.reason == reason
        assert out.category.value == reason.split(":")[0]
    with pytest.raises(ValueError, match="qty must be a finite number"):  # refused before: it cannot be built
        intent(sizing=Fixed(qty=D("NaN")))


# ------------------------------------------------------------------------------ reports + record


def place(qty: str = "1.0") -> PlaceOrder:
    return PlaceOrder(
        command_id="place:c1",
        client_order_id="c1",
        intent_id="i1",
        strategy_id="s1",
        account="acc",
        broker_id="paper",
        symbol="EURUSD",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        quantity=D(qty),
        reference_price=D("1.1000"),
    )


def broker_order(state: BrokerOrderState, *fills: tuple[str, str]) -> BrokerOrder:
    bf = [BrokerFill(fill_id=f"f{i}", quantity=D(q), price=D(p)) for i, (q, p) in enumerate(fills, 1)]
    return BrokerOrder(
        client_order_id="c1",
        broker_order_id="B1",
        symbol="EURUSD",
        side=Side.BUY,
        quantity=D("1.0"),
        state=state,
        filled_qty=sum((f.quantity for f in bf), D(0)),
        fills=bf,
    )


def test_reports_for_partial_fill_then_cancel() -> None:
    events = reports_for(place(), broker_order(BrokerOrderState.CANCELED, ("0.4", "1.1001"), ("0.2", "1.1002")))
    assert [type(e) for e in events] == [OrderAccepted, OrderFilled, OrderFilled, OrderCanceled]
    f1, f2 = events[1], events[2]
    assert isinstance(f1, OrderFilled) and isinstance(f2, OrderFilled)
    assert (f1.cum_qty, f1.leaves_qty, f2.cum_qty, f2.leaves_qty) == (D("0.4"), D("0.6"), D("0.6"), D("0.4"))
    assert f1.event_id == "fill:paper:f1" and f1.reference_price == D("1.1000")
    assert [e.event_id for e in events] == [
        e.event_id
        for e in reports_for(place(), broker_order(BrokerOrderState.CANCELED, ("0.4", "1.1001"), ("0.2", "1.1002")))
    ]


def test_broker_error_becomes_a_typed_rejection() -> None:
    rej = broker_rejection(place(), InsufficientFundsError("margin short by 12.50", code="10019"))
    assert isinstance(rej, OrderRejected)
    assert rej.category is RejectCategory.INSUFFICIENT_FUNDS
    assert rej.reason == "INSUFFICIENT_FUNDS: margin short by 12.50"
    assert rej.broker_code == "10019"


def test_attached_commands_name_their_parent() -> None:
    parent = msgspec.structs.replace(place(), client_order_id="om-a1-b2", stop_loss=D("1.09"), take_profit=D("1.12"))
    sl, tp = attached_command(parent, "sl", D("0.5")), attached_command(parent, "tp", D("0.5"))
    assert (sl.client_order_id, sl.order_type, sl.stop_price, sl.side, sl.reduce_only) == (
        "om-a1-b2-sl", OrderType.STOP, D("1.09"), parent.side.opposite, True,
    )  # fmt: skip
    assert (tp.client_order_id, tp.order_type, tp.limit_price) == ("om-a1-b2-tp", OrderType.LIMIT, D("1.12"))
    assert [attached_parent(c) for c in (sl, tp, parent)] == ["om-a1-b2", "om-a1-b2", None]


# --------------------------------------------------------------------------------- position book


def fill(fill_id: str, side: Side, qty: str, px: str, *, strategy: str = "s1", symbol: str = "EURUSD") -> OrderFilled:
    return OrderFilled(
        event_id=f"fill:paper:{fill_id}",
        client_order_id="c",
        intent_id="i",
        strategy_id=strategy,
        account="acc",
        broker_id="paper",
        symbol=symbol,
        broker_order_id="B",
        fill_id=fill_id,
        side=side,
        last_qty=D(qty),
        last_px=D(px),
        cum_qty=D(qty),
        leaves_qty=D(0),
        order_qty=D(qty),
        liquidity=Liquidity.TAKER,
    )


def test_netting_open_add_reduce_flip_close() -> None:
    book = PositionBook()
    steps = [
        (fill("1", Side.BUY, "1.0", "1.1000"), D("1.0"), D("1.1000"), D("0")),  # open
        (fill("2", Side.BUY, "1.0", "1.1200"), D("2.0"), D("1.1100"), D("0")),  # add: average
        (fill("3", Side.SELL, "0.5", "1.1300"), D("1.5"), D("1.1100"), D("0.0100")),  # reduce: 0.5 x 0.02
        (fill("4", Side.SELL, "2.0", "1.1000"), D("-0.5"), D("1.1000"), D("-0.0050")),  # flip: 1.5 x -0.01
        (fill("5", Side.BUY, "0.5", "1.0900"), D("0"), D("0"), D("0.0000")),  # close short: 0.5 x 0.01
    ]
    for seq, (f, qty, avg, realized) in enumerate(steps, 1):
        assert book.apply_fill(f, seq)
        p = book.position("acc", "EURUSD")
        assert (p.quantity, p.avg_price, p.realized_pnl) == (qty, avg, realized), f.fill_id
    assert book.applied_seq == 5 and book.fills_applied == 5


def test_same_fill_is_never_applied_twice_and_snapshot_round_trips() -> None:
    book = PositionBook()
    assert book.apply_fill(fill("a", Side.BUY, "2", "10"), 1)
    assert not book.apply_fill(fill("a", Side.BUY, "2", "10"), 2)
    assert book.position("acc", "EURUSD").quantity == D(2)
    restored = PositionBook(book.snapshot())
    assert not restored.apply_fill(fill("a", Side.BUY, "2", "10"), 3)
    assert restored.positions() == book.positions()
    assert restored.applied_seq == 3


@given(
    st.lists(
        st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 500), st.integers(9000, 11000)),
        min_size=1,
        max_size=60,
    )
)
def test_position_is_the_signed_sum_and_replay_equals_incremental(trades: list[tuple[Side, int, int]]) -> None:
    fills = [fill(str(i), side, str(D(q) / 100), str(D(px) / 10000)) for i, (side, q, px) in enumerate(trades)]
    book = PositionBook()
    for seq, f in enumerate(fills, 1):
        book.apply_fill(f, seq)
    assert book.position("acc", "EURUSD").quantity == sum((f.last_qty * f.side.sign for f in fills), D(0))
    # snapshot at any point + the rest == all at once
    cut = len(fills) // 2
    first = PositionBook()
    for seq, f in enumerate(fills[:cut], 1):
        first.apply_fill(f, seq)
    resumed = PositionBook(first.snapshot())
    for seq, f in enumerate(fills, 1):
        if seq > resumed.applied_seq:
            resumed.apply_fill(f, seq)
    assert resumed.snapshot() == book.snapshot()
