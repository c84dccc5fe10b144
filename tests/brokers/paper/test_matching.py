"""Matching against a book (pure): the book walk, IOC/FOK, resting limits, stops, slippage, expiry."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from ordermesh.brokers.model import BookLevel, OrderBook
from ordermesh.brokers.paper.matching import (
    Execution,
    SlippageModel,
    available,
    expiry_ns,
    match_arriving,
    match_resting,
    slippage_bps,
    stop_triggered,
    take,
    vwap,
    with_extra_slippage,
)
from ordermesh.contract.wire import Liquidity, OrderType, Side, TimeInForce

T = Liquidity.TAKER
# mid 1.09995; three levels a side, 6 lots each side in all
BOOK = OrderBook(
    symbol="EURUSD",
    bids=[BookLevel(D("1.09990"), D("1")), BookLevel(D("1.09988"), D("2")), BookLevel(D("1.09986"), D("3"))],
    asks=[BookLevel(D("1.10000"), D("1")), BookLevel(D("1.10002"), D("2")), BookLevel(D("1.10004"), D("3"))],
    ts_ns=1,
)
MID = D("1.09995")


def test_market_buy_walks_three_levels_at_a_vwap_with_its_slippage() -> None:
    out = match_arriving(BOOK, Side.BUY, D("5"), OrderType.MARKET, None, TimeInForce.GTC)
    assert out.executions == [
        Execution(D("1.10000"), D("1"), T),
        Execution(D("1.10002"), D("2"), T),
        Execution(D("1.10004"), D("2"), T),
    ]
    assert (out.leaves, out.rests, out.canceled) == (0, False, False)
    assert vwap(out.executions) == D("1.100024")
    assert [slippage_bps(Side.BUY, e.price, MID) for e in out.executions] == [D("0.4546"), D("0.6364"), D("0.8182")]
    assert slippage_bps(Side.BUY, vwap(out.executions), MID) == D("0.6728")


def test_market_sell_walks_the_bids() -> None:
    out = match_arriving(BOOK, Side.SELL, D("2.5"), OrderType.MARKET, None, TimeInForce.GTC)
    assert out.executions == [Execution(D("1.09990"), D("1"), T), Execution(D("1.09988"), D("1.5"), T)]
    assert vwap(out.executions) == D("1.099888")
    # a sell below the reference is a cost: positive bps
    assert slippage_bps(Side.SELL, D("1.099888"), MID) == D("0.5637")
    assert slippage_bps(Side.SELL, D("1.10000"), MID) == D("-0.4546")  # better than the mid: negative


def test_ioc_takes_the_whole_book_and_cancels_the_rest() -> None:
    out = match_arriving(BOOK, Side.BUY, D("8"), OrderType.MARKET, None, TimeInForce.IOC)
    assert [(e.price, e.quantity) for e in out.executions] == [
        (D("1.10000"), D("1")),
        (D("1.10002"), D("2")),
        (D("1.10004"), D("3")),
    ]
    assert vwap(out.executions) == D("1.100026666666666666666666667")
    assert (out.leaves, out.rests, out.canceled) == (D("2"), False, True)
    assert out.reason == "market order: not enough depth, the rest canceled"


def test_ioc_limit_takes_what_is_within_its_price() -> None:
    out = match_arriving(BOOK, Side.BUY, D("5"), OrderType.LIMIT, D("1.10002"), TimeInForce.IOC)
    assert [(e.price, e.quantity) for e in out.executions] == [(D("1.10000"), D("1")), (D("1.10002"), D("2"))]
    assert (out.leaves, out.canceled, out.reason) == (D("2"), True, "IOC: the rest canceled")


def test_fok_is_refused_when_depth_is_short() -> None:
    out = match_arriving(BOOK, Side.BUY, D("7"), OrderType.MARKET, None, TimeInForce.FOK)
    assert out.executions == []
    assert (out.leaves, out.rests, out.canceled) == (D("7"), False, True)
    assert out.reason == "FOK: the book holds 6 of 7"
    # within a limit the depth is smaller still
    out = match_arriving(BOOK, Side.BUY, D("4"), OrderType.LIMIT, D("1.10002"), TimeInForce.FOK)
    assert out.executions == [] and out.reason == "FOK: the book holds 3 of 4"


def test_fok_fills_all_when_depth_is_there() -> None:
    out = match_arriving(BOOK, Side.BUY, D("6"), OrderType.MARKET, None, TimeInForce.FOK)
    assert sum(e.quantity for e in out.executions) == D("6") and not out.canceled


def test_limit_gtc_takes_the_marketable_part_and_rests_the_rest() -> None:
    out = match_arriving(BOOK, Side.BUY, D("2"), OrderType.LIMIT, D("1.10000"), TimeInForce.GTC)
    assert out.executions == [Execution(D("1.10000"), D("1"), T)]
    assert (out.leaves, out.rests, out.canceled) == (D("1"), True, False)
    out = match_arriving(BOOK, Side.BUY, D("2"), OrderType.LIMIT, D("1.09995"), TimeInForce.DAY)
    assert (out.executions, out.leaves, out.rests) == ([], D("2"), True)


def test_resting_limit_fills_at_its_price_as_maker_up_to_the_size_through_it() -> None:
    assert match_resting(BOOK, Side.BUY, D("5"), D("1.09999")) is None
    assert match_resting(BOOK, Side.BUY, D("5"), D("1.10002")) == Execution(D("1.10002"), D("3"), Liquidity.MAKER)
    assert match_resting(BOOK, Side.SELL, D("0.5"), D("1.09980")) == Execution(D("1.09980"), D("0.5"), Liquidity.MAKER)


def test_available_and_take() -> None:
    assert available(BOOK, Side.BUY) == D("6")
    assert available(BOOK, Side.SELL, D("1.09988")) == D("3")
    assert take(BOOK, Side.SELL, D("0")) == []


def test_stops_trigger_on_the_quote() -> None:
    assert stop_triggered(BOOK, Side.BUY, D("1.10000"))  # ask reached
    assert not stop_triggered(BOOK, Side.BUY, D("1.10001"))
    assert stop_triggered(BOOK, Side.SELL, D("1.09990"))  # bid reached
    assert not stop_triggered(BOOK, Side.SELL, D("1.09989"))


def test_extra_slippage_fixed_and_by_depth() -> None:
    tick = D("0.00001")
    # 10 bp of 1.10000 = 0.00110
    assert with_extra_slippage(Side.BUY, D("1.10000"), D("10"), tick) == D("1.10110")
    assert with_extra_slippage(Side.SELL, D("1.10000"), D("10"), tick) == D("1.09890")
    # off the grid: rounded against the taker
    assert with_extra_slippage(Side.BUY, D("1.10000"), D("0.5"), tick) == D("1.10006")  # 1.100055 up
    assert with_extra_slippage(Side.SELL, D("1.10000"), D("0.5"), tick) == D("1.09994")  # 1.099945 down
    assert with_extra_slippage(Side.BUY, D("1.10000"), D("0"), tick) == D("1.10000")
    model = SlippageModel(fixed_bps=D("1"), depth_bps=D("6"))
    assert model.extra_bps(D("3"), D("6")) == D("4")  # 1 + 6 * 3/6
    assert SlippageModel().extra_bps(D("3"), D("6")) == 0
    with pytest.raises(ValueError, match="fixed_bps"):
        SlippageModel(fixed_bps=D("-1"))


def test_expiry() -> None:
    accepted = int(dt.datetime(2026, 3, 5, 15, 30, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    midnight = int(dt.datetime(2026, 3, 6, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    assert expiry_ns(TimeInForce.DAY, accepted, None) == midnight
    assert expiry_ns(TimeInForce.GTD, accepted, 42) == 42
    assert expiry_ns(TimeInForce.GTC, accepted, 42) is None
