"""The keeper's books as pure code: exact numbers for netting, hedging, commissions, swaps, marks; properties."""

from __future__ import annotations

import datetime
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordermesh.books.accounting import BookSnapshot, FillRefused, Ledger, Rules, drawdown, reconcile
from ordermesh.contract.wire import Liquidity, OrderFilled, PositionDiff, Side
from ordermesh.platform.config import AccountSettings, SwapRate
from ordermesh.sizing.instruments import load_instruments
from ordermesh.sizing.kelly import FLOOR

D = Decimal
SPECS = load_instruments("deploy/instruments.yaml")
MON = int(datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.UTC).timestamp() * 1e9)  # a Monday, noon UTC
DAY = 86_400 * 10**9


def rules(mode: str = "netting", **kw: object) -> Rules:
    return Rules(
        accounts={"acc": AccountSettings(currency="USD", deposit=D(100000), mode=mode)},  # type: ignore[arg-type]
        specs=SPECS,
        **kw,  # type: ignore[arg-type]
    )


def fill(
    fid: str,
    side: Side,
    qty: str,
    px: str,
    *,
    symbol: str = "EURUSD",
    strategy: str = "s1",
    commission: str = "0",
    asset: str | None = None,
    position_id: str | None = None,
    ts_ns: int = MON,
    broker: str = "paper",
) -> OrderFilled:
    return OrderFilled(
        event_id=f"fill:{fid}",
        client_order_id=f"c-{fid}",
        intent_id=f"i-{fid}",
        strategy_id=strategy,
        account="acc",
        broker_id=broker,
        symbol=symbol,
        broker_order_id=f"b-{fid}",
        fill_id=fid,
        side=side,
        last_qty=D(qty),
        last_px=D(px),
        cum_qty=D(qty),
        leaves_qty=D(0),
        order_qty=D(qty),
        commission=D(commission),
        commission_asset=asset,
        liquidity=Liquidity.TAKER,
        position_id=position_id,
        ts_ns=ts_ns,
    )


def quotes(**q: tuple[str, str]):  # type: ignore[no-untyped-def]
    table = {k: (D(b), D(a)) for k, (b, a) in q.items()}
    return table.get


# ------------------------------------------------------------------------------------------ netting


def test_netting_open_add_reduce_flip_close_in_account_money() -> None:
    book = Ledger(rules=rules())
    steps = [
        (fill("1", Side.BUY, "1.0", "1.1000"), D("1.0"), D("1.1000"), D("0")),  # open
        (fill("2", Side.BUY, "1.0", "1.1200"), D("2.0"), D("1.1100"), D("0")),  # add: average price
        (fill("3", Side.SELL, "0.5", "1.1300"), D("1.5"), D("1.1100"), D("1000")),  # reduce: 0.5 x 100000 x 0.02
        (fill("4", Side.SELL, "2.0", "1.1000"), D("-0.5"), D("1.1000"), D("-500")),  # flip: 1.5 x 100000 x -0.01
        (fill("5", Side.BUY, "0.5", "1.0900"), D("0"), D("0"), D("0")),  # close the short: 0.5 x 100000 x 0.01
    ]
    for seq, (f, qty, avg, realized) in enumerate(steps, 1):
        assert book.apply_fill(f, seq)
        p = book.position("acc", "EURUSD")
        assert p is not None
        assert (p.quantity, p.avg_price, p.realized_pnl) == (qty, avg, realized), f.fill_id
    assert book.applied_seq == 5 and book.fills_applied == 5
    state = book.account_state("acc", quotes(EURUSD=("1.0900", "1.0902")))
    assert (state.balance, state.equity, state.realized_pnl, state.unrealized_pnl) == (D(100000), D(100000), 0, 0)
    assert state.margin_used == 0 and state.free_margin == D(100000) and state.fills == 5


def test_flipping_fill_is_split_closing_part_realizes_the_rest_opens_at_the_fill_price() -> None:
    book = Ledger(rules=rules())
    book.apply_fill(fill("1", Side.BUY, "1", "60000", symbol="BTCUSD"), 1)
    book.apply_fill(fill("2", Side.SELL, "3", "61000", symbol="BTCUSD"), 2)
    p = book.position("acc", "BTCUSD")
    assert p is not None
    assert (p.quantity, p.avg_price, p.realized_pnl) == (D(-2), D(61000), D(1000))
    state = book.account_state("acc", quotes(BTCUSD=("60500", "60510")))
    # the short is marked at the ask: -2 x (60510 - 61000) = 980
    assert (state.realized_pnl, state.unrealized_pnl, state.balance, state.equity) == (
        D(1000),
        D(980),
        D(101000),
        D(101980),
    )


def test_per_strategy_views_and_account_view() -> None:
    book = Ledger(rules=rules())
    book.apply_fill(fill("1", Side.BUY, "0.3", "1.1", strategy="a"), 1)
    book.apply_fill(fill("2", Side.SELL, "0.1", "1.2", strategy="b"), 2)
    account = book.positions("acc")
    assert [(p.strategy_id, p.quantity, p.avg_price) for p in account] == [(None, D("0.2"), D("1.1"))]
    assert account[0].realized_pnl == D(1000)  # 0.1 x 100000 x 0.1 at the account level
    per = book.positions("acc", by_strategy=True)
    assert [(p.strategy_id, p.quantity, p.realized_pnl) for p in per] == [("a", D("0.3"), 0), ("b", D("-0.1"), 0)]
    assert [p.strategy_id for p in book.positions("acc", strategy_id="b")] == ["b"]


# ------------------------------------------------------------------------------------------ hedging


def test_hedging_two_opposite_positions_then_close_one() -> None:
    book = Ledger(rules=rules("hedging"))
    book.apply_fill(fill("1", Side.BUY, "1", "1.1000", position_id="t1"), 1)
    book.apply_fill(fill("2", Side.SELL, "1", "1.2000", position_id="t2"), 2)
    open_ = book.positions("acc")
    assert [(p.position_id, p.quantity, p.avg_price) for p in open_] == [
        ("t1", D(1), D("1.1000")),
        ("t2", D(-1), D("1.2000")),
    ]
    q = quotes(EURUSD=("1.1499", "1.1501"))
    state = book.account_state("acc", q)
    # long at the bid: 100000 x 0.0499 = 4990; short at the ask: -100000 x (1.1501 - 1.2) = 4990
    assert state.unrealized_pnl == D(9980)
    # margin of both tickets: 2 lots x 100000 / 30 EUR at the EURUSD mid 1.15
    per_lot = FLOOR.multiply(FLOOR.divide(D(100000), D(30)), D("1.1500"))
    assert state.margin_used == FLOOR.multiply(D(1), per_lot) * 2
    # close t1 at 1.1500 (a fill naming the ticket)
    book.apply_fill(fill("3", Side.SELL, "1", "1.1500", position_id="t1"), 3)
    assert [(p.position_id, p.quantity) for p in book.positions("acc")] == [("t2", D(-1))]
    state = book.account_state("acc", q)
    assert (state.realized_pnl, state.unrealized_pnl, state.balance) == (D(5000), D(4990), D(105000))


def test_hedging_close_larger_than_the_ticket_opens_the_rest_as_a_new_ticket() -> None:
    book = Ledger(rules=rules("hedging"))
    book.apply_fill(fill("1", Side.BUY, "1", "1.1", position_id="t1"), 1)
    book.apply_fill(fill("2", Side.SELL, "1.5", "1.2", position_id="t1"), 2)
    assert [(p.position_id, p.quantity, p.avg_price) for p in book.positions("acc")] == [("t1:2", D("-0.5"), D("1.2"))]
    assert book.account_state("acc", quotes()).realized_pnl == D(10000)


# -------------------------------------------------------------------------------------- commissions


def test_commission_in_the_quote_asset_is_a_cost() -> None:
    book = Ledger(rules=rules())
    book.apply_fill(fill("1", Side.BUY, "1", "60000", symbol="BTCUSD", commission="30", asset="USD"), 1)
    book.apply_fill(fill("2", Side.SELL, "1", "61000", symbol="BTCUSD", commission="30.5", asset="USD"), 2)
    p = book.position("acc", "BTCUSD")
    assert p is not None and (p.quantity, p.realized_pnl, p.commission) == (0, D(1000), D("60.5"))
    state = book.account_state("acc", quotes())
    assert (state.balance, state.commission) == (D("100939.5"), D("60.5"))


def test_commission_in_the_base_asset_adjusts_the_quantity() -> None:
    book = Ledger(rules=rules())
    book.apply_fill(fill("1", Side.BUY, "1", "60000", symbol="BTCUSD", commission="0.001", asset="BTC"), 1)
    p = book.position("acc", "BTCUSD")
    assert p is not None
    assert (p.quantity, p.avg_price, p.commission) == (D("0.999"), D(60000), D("60.000"))
    state = book.account_state("acc", quotes(BTCUSD=("61000", "61010")))
    assert state.balance == D("99940.000")
    assert state.unrealized_pnl == D("999.000")  # 0.999 x (61000 - 60000), at the bid
    assert state.equity == D("100939.000")  # = deposit - 60000 paid + 0.999 BTC at 61000
    # selling with the commission in base delivers more: the short side grows by it
    book.apply_fill(fill("2", Side.SELL, "0.999", "61000", symbol="BTCUSD", commission="0.001", asset="BTC"), 2)
    p = book.position("acc", "BTCUSD")
    assert p is not None and p.quantity == D("-0.001")
    assert book.brokers["paper"]["BTCUSD"] == D("-0.001")


def test_commission_without_an_asset_is_in_the_account_currency() -> None:
    book = Ledger(rules=rules())
    book.apply_fill(fill("1", Side.BUY, "0.1", "1.1", commission="3.5"), 1)
    assert book.account_state("acc", quotes()).balance == D("99996.5")


# -------------------------------------------------------------------------------------------- swaps


def test_swaps_are_charged_per_rollover_of_stream_time_with_the_triple_day() -> None:
    book = Ledger(rules=rules(swaps={"EURUSD": SwapRate(long=D("6.5"), short=D("-1.2"))}))
    book.apply_fill(fill("1", Side.BUY, "2", "1.1"), 1)  # Monday noon
    book.skip(2, MON + DAY)  # Tuesday noon: Monday 22:00 crossed -> 1 night x 2 lots x 6.5
    assert book.account_state("acc", quotes()).swap == D(13)
    book.skip(3, MON + 3 * DAY)  # Thursday noon: Tuesday (1) and Wednesday (3 nights)
    state = book.account_state("acc", quotes())
    assert state.swap == D(65) and state.balance == D(100000) - D(65)
    p = book.position("acc", "EURUSD")
    assert p is not None and p.swap == D(65)
    book.apply_fill(fill("2", Side.SELL, "3", "1.1", ts_ns=MON + 3 * DAY), 4)  # now short 1
    book.skip(5, MON + 4 * DAY)  # Thursday 22:00: short 1 lot credits 1.2
    assert book.account_state("acc", quotes()).swap == D("63.8")
    assert [p.swap for p in book.positions("acc", by_strategy=True)] == [D("63.8")]


# -------------------------------------------------------------------------------------------- marks


def test_unrealized_pnl_uses_the_bid_for_longs_and_the_ask_for_shorts() -> None:
    long_book = Ledger(rules=rules())
    long_book.apply_fill(fill("1", Side.BUY, "1", "1.1000"), 1)
    short_book = Ledger(rules=rules())
    short_book.apply_fill(fill("1", Side.SELL, "1", "1.1000"), 1)
    q = quotes(EURUSD=("1.1010", "1.1012"))
    assert long_book.account_state("acc", q).unrealized_pnl == D(100)  # (1.1010 - 1.1) x 100000
    assert short_book.account_state("acc", q).unrealized_pnl == D(-120)  # -(1.1012 - 1.1) x 100000
    (p,) = short_book.positions("acc", quote_of=q)
    assert (p.mark_price, p.unrealized_pnl) == (D("1.1012"), D(-120))
    state = long_book.account_state("acc", q)
    per_lot = FLOOR.multiply(FLOOR.divide(D(100000), D(30)), D("1.1011"))
    assert state.margin_used == per_lot and state.free_margin == state.equity - per_lot
    # no quote: the position is named as unpriced, not guessed
    assert long_book.account_state("acc", quotes()).unpriced == ["EURUSD"]


def test_quote_currency_pnl_is_converted_to_the_account_currency() -> None:
    book = Ledger(rules=rules())
    book.apply_fill(fill("1", Side.BUY, "1", "150.00", symbol="USDJPY"), 1)
    book.apply_fill(fill("2", Side.SELL, "1", "151.00", symbol="USDJPY"), 2)  # 100000 JPY
    state = book.account_state("acc", quotes(USDJPY=("159.99", "160.01")))
    assert state.realized_pnl == D(625)  # 100000 JPY at USDJPY 160


# ----------------------------------------------------------------------------------- exactly once


def test_same_fill_is_never_applied_twice_and_snapshot_round_trips() -> None:
    book = Ledger(rules=rules())
    assert book.apply_fill(fill("a", Side.BUY, "2", "10"), 1)
    assert not book.apply_fill(fill("a", Side.BUY, "2", "10"), 2)
    assert book.fills_applied == 1
    data = msgspec.msgpack.encode(book.snapshot())
    from ordermesh.books.accounting import BookSnapshot

    restored = Ledger(msgspec.msgpack.decode(data, type=BookSnapshot), rules())
    assert not restored.apply_fill(fill("a", Side.BUY, "2", "10"), 3)
    assert restored.positions() == book.positions()
    assert restored.applied_seq == 3


def test_reconcile_and_drawdown() -> None:
    assert reconcile("paper", {"EURUSD": D("0.2")}, [("EURUSD", D("0.2"))]) == []
    assert reconcile("paper", {"EURUSD": D("0.2")}, [("BTCUSD", D("0.01"))]) == [
        PositionDiff(broker_id="paper", symbol="BTCUSD", keeper_qty=D(0), broker_qty=D("0.01"), difference=D("-0.01")),
        PositionDiff(broker_id="paper", symbol="EURUSD", keeper_qty=D("0.2"), broker_qty=D(0), difference=D("0.2")),
    ]
    assert drawdown([100.0, 110.0, 99.0, 120.0]) == [0.0, 0.0, 11.0, 0.0]


# ------------------------------------------------------------------------------------- properties

TRADES = st.lists(
    st.tuples(
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(1, 500),  # lots / 1000
        st.integers(50000, 70000),  # price
        st.sampled_from([None, "USD", "BTC"]),  # commission asset
        st.integers(0, 30),  # commission
    ),
    min_size=1,
    max_size=50,
)


def _fills(trades: list[tuple[Side, int, int, str | None, int]]) -> list[OrderFilled]:
    out = []
    for i, (side, q, px, asset, c) in enumerate(trades):
        commission = "0" if asset is None else (str(D(c) / 100000) if asset == "BTC" else str(c))
        out.append(fill(str(i), side, str(D(q) / 1000), str(px), symbol="BTCUSD", commission=commission, asset=asset))
    return out


@settings(max_examples=150, deadline=None)
@given(TRADES, st.integers(50000, 70000), st.integers(0, 50))
def test_position_is_signed_sum_and_realized_plus_unrealized_is_mark_to_market(
    trades: list[tuple[Side, int, int, str | None, int]], bid: int, spread: int
) -> None:
    fills = _fills(trades)
    book = Ledger(rules=rules())
    for seq, f in enumerate(fills, 1):
        book.apply_fill(f, seq)
    base_commission = sum((f.commission for f in fills if f.commission_asset == "BTC"), D(0))
    expected_qty = sum((f.last_qty * f.side.sign for f in fills), D(0)) - base_commission
    p = book.position("acc", "BTCUSD")
    assert p is not None and p.quantity == expected_qty
    q = (D(bid), D(bid + spread))
    state = book.account_state("acc", {"BTCUSD": q}.get)
    # mark-to-market: every cash flow (trades and commissions) plus what is held, at the bid if long, ask if short
    cash = -sum((f.last_qty * f.side.sign * f.last_px for f in fills), D(0))
    cash -= sum((f.commission for f in fills if f.commission_asset == "USD"), D(0))
    mark = q[0] if expected_qty > 0 else q[1]
    mtm = cash + expected_qty * mark
    booked = state.realized_pnl + state.unrealized_pnl - state.commission
    assert abs(booked - mtm) < D("1e-15")  # only the 28-digit average price rounds
    assert abs(state.equity - state.deposit - booked) < D("1e-15")


@settings(max_examples=100, deadline=None)
@given(TRADES, st.data())
def test_replay_from_scratch_equals_incremental_state_with_restarts(
    trades: list[tuple[Side, int, int, str | None, int]], data: st.DataObject
) -> None:
    fills = _fills(trades)
    whole = Ledger(rules=rules("hedging" if len(fills) % 2 else "netting"))
    for seq, f in enumerate(fills, 1):
        whole.apply_fill(f, seq)
    # incremental: snapshots at random points, each restart resumes after its applied sequence, and the
    # stream redelivers some already-applied fills (which must change nothing)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(fills)), max_size=4)))
    book = Ledger(rules=whole.rules)
    done = 0
    for cut in [*cuts, len(fills)]:
        snap = msgspec.msgpack.decode(msgspec.msgpack.encode(book.snapshot()), type=type(book.snapshot()))
        book = Ledger(snap, whole.rules)
        for seq in range(max(1, done - 2), cut + 1):
            f = fills[seq - 1] if seq >= 1 else None
            if f is not None and seq > book.applied_seq:
                book.apply_fill(f, seq)
            elif f is not None:
                assert not book.apply_fill(f, book.applied_seq)  # a redelivery is a duplicate
        done = max(done, cut)
    assert msgspec.msgpack.encode(book.snapshot()) == msgspec.msgpack.encode(whole.snapshot())


# ------------------------------------------------------------------------------------- bounded state


def test_the_snapshot_stays_bounded_over_many_fills() -> None:
    # Past ~85,000 fills the snapshot of every fill id ever applied exceeded NATS's 1 MiB message limit.
    book = Ledger(rules=rules(), recent_fills=20_000)
    for i in range(120_000):
        book.apply_fill(fill(f"f{i}", Side.BUY if i % 2 else Side.SELL, "0.01", "1.08500"), seq=i + 1)
    size = len(msgspec.msgpack.encode(book.snapshot()))
    assert size < 512 * 1024, size
    assert book.fills_applied == 120_000
    # the recent ones are still recognised, after a restart from the snapshot too
    again = Ledger(msgspec.msgpack.decode(msgspec.msgpack.encode(book.snapshot()), type=BookSnapshot), rules())
    for b in (book, again):
        assert b.apply_fill(fill("f119999", Side.BUY, "0.01", "1.08500"), seq=200_000) is False
        assert b.apply_fill(fill("f100001", Side.BUY, "0.01", "1.08500"), seq=200_001) is False
    assert again.position("acc", "EURUSD") == book.position("acc", "EURUSD")


def test_an_older_snapshot_with_fill_keys_is_read() -> None:
    old = BookSnapshot(applied_seq=2, fills_applied=2, fill_keys=["paper\x1ff1", "paper\x1ff2"])
    book = Ledger(old, rules())
    assert book.apply_fill(fill("f2", Side.BUY, "0.01", "1.08500"), seq=3) is False
    assert book.apply_fill(fill("f3", Side.BUY, "0.01", "1.08500"), seq=4) is True
    assert book.snapshot().fill_keys == []


# ------------------------------------------------------------------------- hostile and extreme fills


def _state(book: Ledger) -> bytes:
    return msgspec.msgpack.encode(book.snapshot())


@pytest.mark.parametrize(
    ("qty", "px", "symbol", "reason"),
    [
        ("1e14", "1.08", "EURUSD", "out_of_bounds"),  # 1e14 lots of 100,000: a notional of 1e19
        ("999999999999999", "999999999999999", "XYZ", "out_of_bounds"),  # no spec: contract 1, still 1e30
        ("0", "1.08", "EURUSD", "bad_fill"),
        ("1", "0", "EURUSD", "bad_fill"),
    ],
)
def test_a_fill_that_would_make_the_books_absurd_is_refused_and_changes_nothing(
    qty: str, px: str, symbol: str, reason: str
) -> None:
    book = Ledger(rules=rules(brokers=frozenset({"paper"})))
    book.apply_fill(fill("1", Side.BUY, "0.5", "1.08"), seq=1)
    before = _state(book)
    with pytest.raises(FillRefused) as info:
        book.apply_fill(fill("2", Side.BUY, qty, px, symbol=symbol), seq=2)
    assert info.value.reason == reason
    assert book.applied_seq == 2  # the sequence moves on: the fill is not asked for again
    book.applied_seq = 1
    assert _state(book) == before  # positions, strategy views, cash, broker nets and the dedupe memory
    assert book.fills_applied == 1 and book.books["acc"].fills == 1


def test_a_fill_whose_commission_would_make_cash_absurd_is_refused() -> None:
    book = Ledger(rules=rules())
    big = "999999999999999"
    book.apply_fill(fill("1", Side.BUY, "1", "1.08", commission=big, asset="GBP"), seq=1)
    before = _state(book)
    with pytest.raises(FillRefused, match="cash in GBP"):
        book.apply_fill(fill("2", Side.SELL, "1", "1.08", commission=big, asset="GBP"), seq=2)
    book.applied_seq = 1
    assert _state(book) == before


def test_a_refused_fill_is_not_remembered_and_a_hedging_account_is_left_as_it_was() -> None:
    book = Ledger(rules=rules("hedging"))
    book.apply_fill(fill("1", Side.BUY, "1", "1.08", position_id="T1"), seq=1)
    before = _state(book)
    with pytest.raises(FillRefused):  # closes T1 and would open 1e14 lots as a ticket of its own
        book.apply_fill(fill("2", Side.SELL, "1e14", "1.08", position_id="T1"), seq=2)
    book.applied_seq = 1
    assert _state(book) == before
    assert book.apply_fill(fill("2", Side.SELL, "1", "1.09", position_id="T1"), seq=3)  # the id is not burnt
    assert book.positions("acc") == []


def test_a_fill_from_a_broker_not_configured_is_refused() -> None:
    book = Ledger(rules=rules(brokers=frozenset({"paper"})))
    with pytest.raises(FillRefused) as info:
        book.apply_fill(fill("1", Side.BUY, "1", "1.08", broker="forged"), seq=1)
    assert info.value.reason == "unknown_broker"
    assert book.books == {} and book.brokers == {} and book.fills_applied == 0
    assert Ledger(rules=rules()).apply_fill(fill("1", Side.BUY, "1", "1.08", broker="forged"))  # None: not checked


def test_replay_refuses_the_same_fills_so_replay_and_incremental_agree() -> None:
    fills = [
        fill("1", Side.BUY, "1", "1.08"),
        fill("2", Side.BUY, "1e14", "1.08"),
        fill("3", Side.SELL, "0.5", "1.09"),
        fill("4", Side.BUY, "1", "1.1", broker="nobody"),
    ]
    r = rules(brokers=frozenset({"paper"}))

    def run(book: Ledger) -> Ledger:
        for seq, f in enumerate(fills, 1):
            try:
                book.apply_fill(f, seq)
            except FillRefused:
                book.skip(seq)
        return book

    first = run(Ledger(rules=r))
    again = run(Ledger(rules=r))
    assert _state(first) == _state(again)
    assert [(p.symbol, p.quantity) for p in first.positions("acc")] == [("EURUSD", D("0.5"))]


def test_a_poisoned_snapshot_is_recognised() -> None:
    book = Ledger(rules=rules())
    book.apply_fill(fill("1", Side.BUY, "1", "1.08"), seq=1)
    assert book.poisoned() == ""
    snap = book.snapshot()
    snap.accounts["acc"].positions["EURUSD"].avg_price = D("NaN")  # written by a keeper before fills were checked
    data = msgspec.msgpack.encode(snap)
    assert "avg_price of EURUSD is NaN" in Ledger(msgspec.msgpack.decode(data, type=BookSnapshot)).poisoned()
    snap.accounts["acc"].positions["EURUSD"].avg_price = D("1.08")
    snap.accounts["acc"].realized["USD"] = D("1e300")
    assert "realized in USD is 1E+300" in Ledger(snap).poisoned()


def test_views_never_raise_on_absurd_quotes_the_amount_is_left_out_and_named() -> None:
    book = Ledger(rules=rules())
    book.apply_fill(fill("1", Side.BUY, "10", "1.08"), seq=1)
    book.apply_fill(fill("2", Side.BUY, "1", "150", symbol="USDJPY"), seq=2)
    absurd = quotes(EURUSD=("999999999999999", "999999999999999"), USDJPY=("1e-30", "1e-30"))
    state = book.account_state("acc", absurd)
    assert state.unrealized_pnl == 0 and state.equity == state.balance == D(100000)
    assert {"EURUSD", "USDJPY"} <= set(state.unpriced)
    [eur, _] = book.positions("acc", quote_of=absurd)
    assert (eur.mark_price, eur.unrealized_pnl) == (None, 0)
    sane = book.account_state("acc", quotes(EURUSD=("1.09", "1.0901"), USDJPY=("151", "151.01")))
    assert sane.unpriced == [] and sane.unrealized_pnl > 0
