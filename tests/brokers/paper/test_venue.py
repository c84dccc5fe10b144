"""The paper venue, to the digit: feeds, the book walk, IOC/FOK, maker fills, stops, SL/TP, expiry, commissions,
slippage, margin, tickets across a restart, determinism for a seed."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path

import pytest

from ordermesh.brokers.model import (
    BookLevel,
    BrokerOrderState,
    BrokerPosition,
    InsufficientFundsError,
    ModificationError,
    OrderError,
    OrderNotFoundError,
    SymbolNotFoundError,
)
from ordermesh.brokers.paper.commissions import CommissionModel
from ordermesh.brokers.paper.feed import DepthProfile, ReplayFeed, SyntheticFeed, _levels, load_book_csv
from ordermesh.brokers.paper.matching import SlippageModel
from ordermesh.brokers.paper.settings import PaperSettings
from ordermesh.brokers.paper.store import MemoryPaperStore
from ordermesh.brokers.paper.venue import PaperBroker, paper_reports
from ordermesh.brokers.registry import ADAPTER_TYPES
from ordermesh.contract.wire import (
    Liquidity,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderTriggered,
    OrderType,
    PlaceOrder,
    RejectCategory,
    Side,
    TimeInForce,
)
from ordermesh.platform.config import ConfigError, FeedSymbol
from ordermesh.sizing.instruments import load_instruments

ROOT = Path(__file__).resolve().parents[3]
INSTRUMENTS = load_instruments(ROOT / "deploy" / "instruments.yaml")
SPECS = {
    "EURUSD": FeedSymbol(initial_price=D("1.08500"), spread=D("0.00010"), tick_size=D("0.00001")),
    "BTCUSD": FeedSymbol(
        initial_price=D("65000.00"), spread=D("5.00"), tick_size=D("0.01"), volatility_ticks=500, size=D("50")
    ),
}
EUR = {"EURUSD": SPECS["EURUSD"]}
# The book of most tests: mid 1.09995, three levels a side (6 lots a side).
BOOK_1 = ("1.09990@1 1.09988@2 1.09986@3", "1.10000@1 1.10002@2 1.10004@3")
FX = {"*": CommissionModel(per_lot=D("3.50"))}


class Clock:
    def __init__(self, now: int = 1_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _steps(*books: tuple[str, str], symbol: str = "EURUSD") -> list:
    return [{symbol: (_levels(b, "test"), _levels(a, "test"))} for b, a in books]


def _venue(
    *books: tuple[str, str],
    clock: Clock | None = None,
    store: MemoryPaperStore | None = None,
    **kw: object,
) -> PaperBroker:
    clock = clock or Clock()
    feed = ReplayFeed("paper", EUR, _steps(*(books or (BOOK_1,))), clock=clock)
    kw.setdefault("instruments", INSTRUMENTS)
    kw.setdefault("commissions", FX)
    return PaperBroker("paper", feed, store=store, clock=clock, **kw)  # type: ignore[arg-type]


def _order(
    coid: str,
    side: Side,
    qty: str,
    order_type: OrderType = OrderType.MARKET,
    *,
    limit: str | None = None,
    stop: str | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    symbol: str = "EURUSD",
    **kw: object,
) -> PlaceOrder:
    return PlaceOrder(
        command_id=f"cmd-{coid}",
        client_order_id=coid,
        intent_id=f"i-{coid}",
        strategy_id="s1",
        account="paper-1",
        broker_id="paper",
        symbol=symbol,
        side=side,
        order_type=order_type,
        quantity=D(qty),
        limit_price=None if limit is None else D(limit),
        stop_price=None if stop is None else D(stop),
        time_in_force=tif,
        **kw,  # type: ignore[arg-type]
    )


def _fills(broker: PaperBroker, coid: str) -> list[tuple[str, D, D, Liquidity, D, D, D]]:
    return [
        (f.deal_id, f.price, f.quantity, f.liquidity, f.commission, f.reference_price, f.slippage_bps)
        for f in broker.order(coid).fills
    ]


# ------------------------------------------------------------------------------------------- feeds


def test_synthetic_initial_book_and_depth_profile() -> None:
    profile = DepthProfile(levels=3, step_ticks=2, sizes=[D(1), D(4)])
    feed = SyntheticFeed("paper", SPECS, 7, {"EUR*": profile}, clock=Clock(123))
    eur = feed.book("EURUSD")
    assert eur.bids == [BookLevel(D("1.08495"), D(1)), BookLevel(D("1.08493"), D(4)), BookLevel(D("1.08491"), D(4))]
    assert eur.asks == [BookLevel(D("1.08505"), D(1)), BookLevel(D("1.08507"), D(4)), BookLevel(D("1.08509"), D(4))]
    q = feed.quote("EURUSD")
    assert (q.bid, q.ask, q.bid_size, q.ask_size, q.ts_ns) == (D("1.08495"), D("1.08505"), D(1), D(1), 123)
    btc = feed.book("BTCUSD")  # no profile: one level of the symbol's size
    assert btc.bids == [BookLevel(D("64997.50"), D("50"))] and btc.asks == [BookLevel(D("65002.50"), D("50"))]


def test_odd_spread_keeps_the_exact_spread_on_the_tick_grid() -> None:
    spec = FeedSymbol(initial_price=D("1.27000"), spread=D("0.00015"), tick_size=D("0.00001"))
    q = SyntheticFeed("paper", {"GBPUSD": spec}, 1).quote("GBPUSD")
    assert (str(q.bid), str(q.ask)) == ("1.26992", "1.27007")


def _touch(books: list) -> list[tuple[str, str, str]]:
    return [(b.symbol, str(b.bids[0].price), str(b.asks[0].price)) for b in books]


def test_seed_7_walk_exact() -> None:
    feed = SyntheticFeed("paper", SPECS, 7)
    assert _touch(feed.step()) == [("BTCUSD", "64995.81", "65000.81"), ("EURUSD", "1.08493", "1.08503")]
    assert _touch(feed.step()) == [("BTCUSD", "64994.85", "64999.85"), ("EURUSD", "1.08495", "1.08505")]
    assert _touch(feed.step()) == [("BTCUSD", "64990.34", "64995.34"), ("EURUSD", "1.08492", "1.08502")]
    assert feed.steps == 3


def test_same_seed_same_books_other_seed_other_books() -> None:
    a, b, c = (SyntheticFeed("paper", SPECS, s) for s in (42, 42, 43))
    seq = [[_touch(f.step()) for _ in range(100)] for f in (a, b, c)]
    assert seq[0] == seq[1] != seq[2]


def test_walk_never_goes_below_its_floor() -> None:
    spec = FeedSymbol(initial_price=D("0.00005"), spread=D("0.00002"), tick_size=D("0.00001"), volatility_ticks=50)
    feed = SyntheticFeed("paper", {"PENNY": spec}, 5)
    bids = [feed.step()[0].bids[0].price for _ in range(200)]
    assert min(bids) == D("0.00003")
    assert all(b > 0 for b in bids)


def test_shipped_replay_file_loads_and_wraps() -> None:
    symbols = PaperSettings().symbols
    steps = load_book_csv(ROOT / "deploy" / "paper_books.csv", symbols)
    assert len(steps) == 5
    feed = ReplayFeed("paper", symbols, steps, PaperSettings().depth, clock=Clock())
    eur = feed.book("EURUSD")
    assert eur.asks == [BookLevel(D("1.08505"), D(1)), BookLevel(D("1.08507"), D(2)), BookLevel(D("1.08509"), D(5))]
    # a quote row is extended by the depth profile (GBPUSD: 5 levels 2 ticks apart)
    gbp = feed.book("GBPUSD")
    assert [lv.price for lv in gbp.bids] == [D("1.26992"), D("1.26990"), D("1.26988"), D("1.26986"), D("1.26984")]
    assert [lv.size for lv in gbp.bids] == [D(1), D(2), D(5), D(10), D(20)]
    for _ in range(5):
        feed.step()
    assert feed.book("EURUSD").asks == eur.asks  # back at the first seq


def test_bad_replay_files(tmp_path: Path) -> None:
    bad = tmp_path / "b.csv"
    bad.write_text("seq,symbol,bids,asks\n1,XAUUSD,1@1,2@1\n")
    with pytest.raises(ConfigError, match="line 2: symbol 'XAUUSD' is not configured"):
        load_book_csv(bad, SPECS)
    bad.write_text("seq,symbol,bids,asks\n1,EURUSD,1.2@1,1.1@1\n")
    with pytest.raises(ConfigError, match="crossed book"):
        load_book_csv(bad, SPECS)
    bad.write_text("seq,symbol,bids,asks\n1,EURUSD,abc,1.1@1\n")
    with pytest.raises(ConfigError, match="bad level 'abc'"):
        load_book_csv(bad, SPECS)
    with pytest.raises(ConfigError, match="cannot read replay file"):
        load_book_csv(tmp_path / "missing.csv", SPECS)


# ------------------------------------------------------------------------------------ market orders


async def test_market_order_walks_three_levels_with_vwap_slippage_and_ioc_cancel() -> None:
    broker = _venue()
    view = await broker.place_order(_order("m", Side.BUY, "8", tif=TimeInForce.IOC))
    assert view.state is BrokerOrderState.CANCELED
    assert view.filled_qty == D("6")
    ref = D("1.09995")  # the mid at the decision time
    assert _fills(broker, "m") == [
        ("1", D("1.10000"), D("1"), Liquidity.TAKER, D("3.50"), ref, D("0.4546")),
        ("2", D("1.10002"), D("2"), Liquidity.TAKER, D("7.00"), ref, D("0.6364")),
        ("3", D("1.10004"), D("3"), Liquidity.TAKER, D("10.50"), ref, D("0.8182")),
    ]
    events = paper_reports(broker.order("m"))
    assert [type(e) for e in events] == [OrderAccepted, OrderFilled, OrderFilled, OrderFilled, OrderCanceled]
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert [e.event_id for e in fills] == ["fill:paper:1", "fill:paper:2", "fill:paper:3"]
    assert [(e.cum_qty, e.leaves_qty) for e in fills] == [(D(1), D(7)), (D(3), D(5)), (D(6), D(2))]
    assert [(e.commission, e.commission_asset, e.slippage_bps) for e in fills] == [
        (D("3.50"), "USD", D("0.4546")),
        (D("7.00"), "USD", D("0.6364")),
        (D("10.50"), "USD", D("0.8182")),
    ]
    assert all(e.reference_price == ref and e.position_id == "1" for e in fills)
    assert events[-1].reason == "market order: not enough depth, the rest canceled"  # type: ignore[union-attr]
    (pos,) = await broker.get_positions()
    assert (pos.quantity, pos.avg_price, pos.position_id) == (D(6), D("1.100026666666666666666666666"), "1")
    assert (await broker.get_balance()).balance == D("99979.00")  # 21 USD commission


async def test_fok_refused_when_depth_is_short() -> None:
    broker = _venue()
    view = await broker.place_order(_order("f", Side.BUY, "7", tif=TimeInForce.FOK))
    assert (view.state, view.fills) == (BrokerOrderState.CANCELED, [])
    events = paper_reports(broker.order("f"))
    assert [type(e) for e in events] == [OrderAccepted, OrderCanceled]
    assert events[1].reason == "FOK: the book holds 6 of 7"  # type: ignore[union-attr]
    assert await broker.get_positions() == []
    ok = await broker.place_order(_order("f2", Side.SELL, "6", tif=TimeInForce.FOK))
    assert ok.state is BrokerOrderState.FILLED and [f.price for f in ok.fills] == [
        D("1.09990"),
        D("1.09988"),
        D("1.09986"),
    ]


async def test_intent_reference_price_wins() -> None:
    broker = _venue()
    await broker.place_order(_order("r", Side.BUY, "1", reference_price=D("1.09990")))
    # (1.10000 - 1.09990) / 1.09990 = 0.9092 bp
    assert _fills(broker, "r")[0][5:] == (D("1.09990"), D("0.9092"))


@pytest.mark.parametrize("reference", ["1e-999999", "1e-12"])
async def test_a_reference_no_slippage_can_be_measured_against_fills_without_one(reference: str) -> None:
    broker = _venue()
    order = await broker.place_order(_order("r", Side.BUY, "1", reference_price=D(reference)))
    assert order.state is BrokerOrderState.FILLED
    assert _fills(broker, "r")[0][1:3] == (D("1.10000"), D(1))
    assert _fills(broker, "r")[0][6] is None  # 1.1 against 1e-999999 overflowed here, mid-fill
    [fill] = [e for e in paper_reports(broker.order("r")) if isinstance(e, OrderFilled)]
    assert fill.slippage_bps is None


async def test_an_extreme_quantity_is_refused_with_the_margin_it_would_need() -> None:
    with pytest.raises(InsufficientFundsError, match=r"needed for 99999999999999\.9 EURUSD"):
        await _venue().place_order(_order("x", Side.BUY, "99999999999999.9"))


async def test_reference_is_the_book_at_the_intents_decision_time() -> None:
    clock = Clock(1_000)
    broker = _venue(BOOK_1, ("1.10010@1", "1.10020@1"), clock=clock)
    clock.now = 2_000
    broker.feed.step()  # now mid 1.10015; at t=1500 the mid was 1.09995
    await broker.place_order(_order("d", Side.BUY, "1", intent_ts_ns=1_500))
    (fill,) = _fills(broker, "d")
    assert (fill[1], fill[5], fill[6]) == (D("1.10020"), D("1.09995"), D("2.2728"))


async def test_extra_slippage_model_moves_taker_prices() -> None:
    broker = _venue(slippage={"EUR*": SlippageModel(fixed_bps=D("1"), depth_bps=D("6"))})
    await broker.place_order(_order("x", Side.BUY, "3"))
    # extra = 1 + 6 * 3/6 = 4 bp: 1.10000 -> 1.10044, 1.10002 -> 1.100460008 -> 1.10047 (up)
    assert [(f[1], f[2]) for f in _fills(broker, "x")] == [(D("1.10044"), D(1)), (D("1.10047"), D(2))]


async def test_base_asset_commission_on_btc() -> None:
    feed = ReplayFeed(
        "paper",
        {"BTCUSD": SPECS["BTCUSD"]},
        _steps(("64990.00@1", "65000.00@1"), symbol="BTCUSD"),
        clock=Clock(),
    )
    broker = PaperBroker(
        "paper", feed, instruments=INSTRUMENTS, commissions={"BTC*": CommissionModel(taker_bps=D(10), asset="base")}
    )
    await broker.place_order(_order("b", Side.BUY, "0.5", symbol="BTCUSD"))
    (f,) = broker.order("b").fills
    assert (f.commission, f.commission_asset) == (D("0.0005"), "BTC")  # 10 bp of 0.5 BTC
    assert (await broker.get_balance()).balance == D("99967.5")  # 0.0005 BTC at 65000 = 32.5 USD


# ------------------------------------------------------------------------------------- limit orders


async def test_resting_limit_fills_on_cross_as_maker() -> None:
    maker_taker = {"*": CommissionModel(maker_bps=D("0.2"), taker_bps=D("0.5"))}
    broker = _venue(BOOK_1, ("1.09980@1", "1.09990@1 1.09996@2"), commissions=maker_taker)
    view = await broker.place_order(_order("L", Side.BUY, "2", OrderType.LIMIT, limit="1.09996"))
    assert (view.state, view.fills) == (BrokerOrderState.NEW, [])
    (book,) = broker.feed.step()
    (changed,) = await broker.on_book(book)
    assert changed.state is BrokerOrderState.FILLED
    # 2 lots * 100000 * 1.09996 = 219992 USD notional; maker 0.2 bp = 4.39984
    assert _fills(broker, "L") == [
        ("1", D("1.09996"), D("2"), Liquidity.MAKER, D("4.39984"), D("1.09995"), D("0.0909"))
    ]
    assert await broker.on_book(book) == []  # filled: nothing more


async def test_marketable_limit_takes_then_rests_the_rest() -> None:
    broker = _venue()
    view = await broker.place_order(_order("L", Side.BUY, "2", OrderType.LIMIT, limit="1.10000"))
    assert (view.state, view.filled_qty) == (BrokerOrderState.PARTIALLY_FILLED, D(1))
    assert broker.order("L").fills[0].liquidity is Liquidity.TAKER


# ------------------------------------------------------------------------------------------- stops


async def test_stop_triggers_on_the_quote_and_fills_as_market() -> None:
    broker = _venue(BOOK_1, ("1.09978@1 1.09970@5", "1.09988@1"))
    view = await broker.place_order(_order("S", Side.SELL, "2", OrderType.STOP, stop="1.09980"))
    assert view.state is BrokerOrderState.NEW and not broker.order("S").triggered
    (book,) = broker.feed.step()
    await broker.on_book(book)
    o = broker.order("S")
    assert o.triggered and o.state is BrokerOrderState.FILLED
    # reference: the mid of the triggering book (1.09983); the sell walks two bid levels
    assert [(f[1], f[2], f[5], f[6]) for f in _fills(broker, "S")] == [
        (D("1.09978"), D("1"), D("1.09983"), D("0.4546")),
        (D("1.09970"), D("1"), D("1.09983"), D("1.1820")),
    ]
    events = paper_reports(o)
    assert [type(e) for e in events] == [OrderAccepted, OrderTriggered, OrderFilled, OrderFilled]
    assert events[1].event_id == f"triggered:{o.coid}"


async def test_stop_limit_rests_as_a_limit_once_triggered() -> None:
    broker = _venue(BOOK_1, ("1.09990@1", "1.10005@1 1.10007@1"))
    await broker.place_order(_order("SL", Side.BUY, "3", OrderType.STOP_LIMIT, stop="1.10005", limit="1.10005"))
    (book,) = broker.feed.step()
    await broker.on_book(book)
    o = broker.order("SL")
    assert o.triggered and o.state is BrokerOrderState.PARTIALLY_FILLED and o.filled == D(1)


# ------------------------------------------------------------------------------------------- SL / TP


async def test_stop_loss_and_take_profit_become_working_orders_on_fill() -> None:
    broker = _venue(BOOK_1, ("1.10025@1", "1.10030@1"))
    await broker.place_order(_order("P", Side.BUY, "1", stop_loss=D("1.09950"), take_profit=D("1.10020")))
    sl, tp = broker.order("P-sl"), broker.order("P-tp")
    assert broker.order("P").children == ["P-sl", "P-tp"]
    assert (sl.cmd.order_type, sl.cmd.side, sl.cmd.stop_price, sl.cmd.quantity) == (
        OrderType.STOP,
        Side.SELL,
        D("1.09950"),
        D(1),
    )
    assert (tp.cmd.order_type, tp.cmd.limit_price, tp.cmd.reduce_only) == (OrderType.LIMIT, D("1.10020"), True)
    assert (sl.cmd.intent_id, sl.broker_order_id, tp.broker_order_id) == ("i-P-sl", "2", "3")
    assert [o.coid for o in broker.unreported()] == ["P", "P-sl", "P-tp"]
    (book,) = broker.feed.step()
    await broker.on_book(book)
    assert broker.order("P-tp").state is BrokerOrderState.FILLED
    assert _fills(broker, "P-tp")[0][1:4] == (D("1.10020"), D(1), Liquidity.MAKER)
    assert broker.order("P-sl").state is BrokerOrderState.CANCELED
    assert broker.order("P-sl").reason == "one-cancels-other: P-tp filled"
    assert await broker.get_positions() == []
    # 1 lot: +0.00020 * 100000 = 20 USD, minus 2 * 3.50 commission
    assert (await broker.get_balance()).balance == D("100013.00")


# ------------------------------------------------------------------------------------------- expiry


async def test_gtd_and_day_orders_expire() -> None:
    clock = Clock(1_000)
    broker = _venue(BOOK_1, BOOK_1, clock=clock)
    await broker.place_order(_order("G", Side.BUY, "1", OrderType.LIMIT, limit="1.09000", tif=TimeInForce.GTD,
                                    expire_at_ns=5_000))  # fmt: skip
    await broker.place_order(_order("D", Side.BUY, "1", OrderType.LIMIT, limit="1.09000", tif=TimeInForce.DAY))
    assert broker.order("D").expire_ns == 86_400 * 1_000_000_000  # midnight after 1970-01-01
    clock.now = 5_000
    (book,) = broker.feed.step()
    assert [o.coid for o in await broker.on_book(book)] == ["G"]
    events = paper_reports(broker.order("G"))
    assert isinstance(events[-1], OrderExpired) and broker.order("D").working
    with pytest.raises(OrderError, match="already passed"):
        await broker.place_order(_order("G2", Side.BUY, "1", tif=TimeInForce.GTD, expire_at_ns=10))


# -------------------------------------------------------------------------------------- account rules


async def test_margin_reject() -> None:
    broker = _venue(deposit=D("1000"))
    await broker.place_order(_order("a", Side.BUY, "0.25"))
    bal = await broker.get_balance()
    # 0.25 lots * 100000 / 30 EUR at EURUSD 1.09995 (floored): 916.62...; commission 0.875
    assert bal.margin_used == D("916.6249999999999999999999998")
    assert bal.balance == D("999.1250000")
    with pytest.raises(InsufficientFundsError) as info:
        await broker.place_order(_order("b", Side.BUY, "0.05"))
    assert str(info.value) == "margin 183.32 USD needed for 0.05 EURUSD, free margin 80.00 USD"
    assert info.value.category is RejectCategory.INSUFFICIENT_FUNDS
    with pytest.raises(OrderNotFoundError):
        await broker.get_order_status("b")
    # reducing needs no margin
    assert (await broker.place_order(_order("c", Side.SELL, "0.25"))).state is BrokerOrderState.FILLED


async def test_account_leverage_replaces_the_instruments() -> None:
    broker = _venue(deposit=D("1000"), leverage=D("500"))
    await broker.place_order(_order("a", Side.BUY, "1"))  # 100000 / 500 EUR = 219.99 USD
    assert (await broker.get_balance()).margin_used == D("219.990")


@pytest.mark.parametrize(
    ("order", "error", "text"),
    [
        (_order("x", Side.BUY, "1", symbol="XAUUSD"), SymbolNotFoundError, "XAUUSD"),
        (_order("x", Side.BUY, "0"), OrderError, "quantity must be positive"),
        (_order("x", Side.BUY, "1", OrderType.LIMIT), OrderError, "limit_price"),
        (_order("x", Side.BUY, "1", OrderType.STOP), OrderError, "stop_price"),
        (_order("x", Side.BUY, "1", tif=TimeInForce.GTD), OrderError, "expire_at_ns"),
        (_order("x", Side.SELL, "1", reduce_only=True), OrderError, "would not reduce"),
    ],
)
async def test_refusals(order: PlaceOrder, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        await _venue().place_order(order)


# ------------------------------------------------------------------------------- tickets and restarts


async def test_tickets_unique_across_a_restart_and_a_replayed_command_is_answered_from_the_store() -> None:
    store = MemoryPaperStore()
    first = _venue(BOOK_1, ("1.09980@1", "1.09985@5"), store=store)
    await first.connect()
    placed = await first.place_order(_order("A", Side.BUY, "3"))
    await first.place_order(_order("L", Side.BUY, "1", OrderType.LIMIT, limit="1.09985"))
    assert (first.tickets.order, first.tickets.deal, first.tickets.position) == (2, 2, 1)

    second = _venue(BOOK_1, ("1.09980@1", "1.09985@5"), store=store)  # a restarted gateway
    await second.connect()
    assert await second.place_order(_order("A", Side.BUY, "3")) == placed  # same fills, same ids
    assert await second.get_positions() == await first.get_positions()
    assert (await second.get_balance()).balance == (await first.get_balance()).balance
    new = await second.place_order(_order("B", Side.SELL, "1"))
    assert new.broker_order_id == "3" and [f.fill_id for f in new.fills] == ["3"]
    (book,) = second.feed.step()
    await second.on_book(book)  # the resting order survived the restart and fills with the next deal
    assert [f.fill_id for f in (await second.get_order_status("L")).fills] == ["4"]
    all_ids = [f.deal_id for o in (second.order(c) for c in "ALB") for f in o.fills]
    assert sorted(all_ids, key=int) == ["1", "2", "3", "4"]


async def test_same_client_order_id_twice_is_one_order() -> None:
    broker = _venue()
    first = await broker.place_order(_order("c", Side.BUY, "1"))
    assert await broker.place_order(_order("c", Side.SELL, "5")) == first
    assert len(broker.order("c").fills) == 1


async def test_same_seed_same_fills() -> None:
    async def run(seed: int) -> list[tuple[str, D, D, D, D]]:
        feed = SyntheticFeed("paper", SPECS, seed, PaperSettings().depth, clock=Clock())
        broker = PaperBroker("paper", feed, instruments=INSTRUMENTS, commissions=PaperSettings().commissions)
        for i in range(60):
            for book in feed.step():
                await broker.on_book(book)
            if i % 6 == 0:
                side = Side.BUY if i % 12 == 0 else Side.SELL
                await broker.place_order(_order(f"m{i}", side, "1.5", symbol="BTCUSD"))
                mid = feed.mid("EURUSD")
                assert mid is not None
                await broker.place_order(
                    _order(f"l{i}", side, "3", OrderType.LIMIT, limit=str(mid.quantize(D("0.0001"))))
                )
        return [
            (f.deal_id, f.price, f.quantity, f.commission, f.slippage_bps)
            for o in sorted(broker._orders.values(), key=lambda o: int(o.broker_order_id))
            for f in o.fills
        ]

    a, b, c = await run(42), await run(42), await run(43)
    assert len(a) > 20
    assert a == b
    assert a != c


# ------------------------------------------------------------------------------------------ requests


async def test_cancel_modify_status_book_and_positions() -> None:
    broker = _venue(BOOK_1, ("1.09980@1", "1.09990@1 1.09993@5"))
    await broker.place_order(_order("L", Side.BUY, "1", OrderType.LIMIT, limit="1.09980"))
    modified = await broker.modify_order("L", quantity=D("3"), limit_price=D("1.09993"))
    assert (modified.quantity, modified.limit_price, modified.state) == (D(3), D("1.09993"), BrokerOrderState.NEW)
    with pytest.raises(ModificationError, match="stop price"):
        await broker.modify_order("L", stop_price=D("1.2"))
    (book,) = broker.feed.step()
    await broker.on_book(book)
    status = await broker.get_order_status("unknown", "1")
    assert (status.client_order_id, status.filled_qty, status.state) == ("L", D(3), BrokerOrderState.FILLED)
    assert (await broker.cancel_order("L")).state is BrokerOrderState.FILLED
    with pytest.raises(ModificationError, match="FILLED"):
        await broker.modify_order("L", quantity=D(5))
    await broker.place_order(_order("R", Side.SELL, "1", OrderType.LIMIT, limit="1.20000"))
    canceled = await broker.cancel_order("R")
    assert canceled.state is BrokerOrderState.CANCELED
    assert broker.order("R").reason == "canceled on request"
    with pytest.raises(OrderNotFoundError):
        await broker.cancel_order("nope")
    book2 = await broker.get_order_book("EURUSD", depth=1)
    assert book2.asks == [BookLevel(D("1.09990"), D(1))]
    assert await broker.get_positions() == [
        BrokerPosition(symbol="EURUSD", quantity=D(3), avg_price=D("1.09993"), position_id="1")
    ]
    with pytest.raises(SymbolNotFoundError):
        await broker.get_order_book("XAUUSD")


async def test_default_settings_make_a_working_venue() -> None:
    broker = ADAPTER_TYPES["paper"].factory("paper", PaperSettings())
    assert isinstance(broker, PaperBroker)
    await broker.connect()
    assert await broker.validate_connection()
    view = await broker.place_order(_order("d", Side.BUY, "0.10"))
    (fill,) = view.fills
    assert (fill.price, fill.commission, fill.commission_asset) == (D("1.08505"), D("0.35"), "USD")
    btc = await broker.place_order(_order("b", Side.BUY, "0.010", symbol="BTCUSD"))
    # 0.010 * 65002.50 = 650.025 USD; taker 5 bp = 0.3250125
    assert btc.fills[0].commission == D("0.3250125")
    assert (await broker.get_balance()).balance == D("99999.3249875")


class _GatedStore(MemoryPaperStore):
    """A store whose writes wait for the test; a write that includes ``fail_with`` fails."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.fail_with: str | None = None

    async def save(self, tickets: bytes, orders: dict[str, bytes]) -> None:
        self.in_flight += 1
        await self.gate.wait()
        if self.fail_with in orders:
            raise ConnectionError("store unreachable")
        await super().save(tickets, orders)


async def test_an_order_whose_save_failed_is_written_by_the_next_save_even_when_another_save_succeeded() -> None:
    # Two saves, one after the other (one writer: the second waits for the first); the first succeeds, the second
    # (with b) fails. b must still be written later: a save that cleared every pending order after it succeeded
    # would have dropped b from the pending set for good.
    store = _GatedStore()
    store.fail_with = "b"
    venue = _venue(store=store)
    limit = dict(limit="1.00000")
    first = asyncio.ensure_future(venue.place_order(_order("a", Side.BUY, "0.10", OrderType.LIMIT, **limit)))
    second = asyncio.ensure_future(venue.place_order(_order("b", Side.BUY, "0.10", OrderType.LIMIT, **limit)))
    while store.in_flight < 1:
        await asyncio.sleep(0)  # the first save reaches the store (no time passes: the loop just runs it)
    store.gate.set()
    await asyncio.wait_for(first, 5)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(second, 5)
    assert sorted(store.orders) == ["a"]
    store.fail_with = None
    await venue.place_order(_order("c", Side.BUY, "0.10", OrderType.LIMIT, **limit))
    assert sorted(store.orders) == ["a", "b", "c"]


async def test_a_market_tick_looks_only_at_working_orders() -> None:
    # Every order ever held was scanned on each tick (18.8 ms a tick at 100,000 orders): only working ones are.
    broker = _venue(BOOK_1, ("1.09980@1", "1.09990@1 1.09996@2"))
    for i in range(2000):
        await broker.place_order(_order(f"M{i}", Side.BUY if i % 2 else Side.SELL, "0.01"))
    await broker.place_order(_order("L", Side.BUY, "2", OrderType.LIMIT, limit="1.09996"))
    assert {s: list(w) for s, w in broker._working.items() if w} == {"EURUSD": ["L"]}
    (book,) = broker.feed.step()
    (changed,) = await broker.on_book(book)
    assert (changed.coid, changed.state) == ("L", BrokerOrderState.FILLED)
    assert not any(broker._working.values())


# ------------------------------------------------------------------------- concurrent reporting


class _SlowStore(MemoryPaperStore):
    """A store whose saves wait until released: a placement in the middle of its save."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def save(self, tickets: bytes, orders: dict[str, bytes]) -> None:
        await self.release.wait()
        await super().save(tickets, orders)


async def test_concurrent_callers_never_take_the_same_change_twice() -> None:
    """Handlers running at once each publish the venue's changes; a change taken by one is not taken by another
    (each report used to be published once per concurrent handler: up to 17 times under load)."""
    broker = _venue(BOOK_1, ("1.09990@9 1.09988@2", "1.09992@9 1.10002@2"))
    await broker.connect()
    for coid in ("R1", "R2", "R3"):
        await broker.place_order(_order(coid, Side.BUY, "1", OrderType.LIMIT, limit="1.09995"))
        broker.take_reports(_order(coid, Side.BUY, "1"), broker.order(coid).view())
    for book in broker.feed.step():  # the market comes down to the three resting bids: each fills
        await broker.on_book(book)
    first = iter(broker.take_changes())
    one = next(first)
    second = list(broker.take_changes())  # another handler, while the first is still publishing its first change
    rest = list(first)
    taken = [c.cmd.client_order_id for c in (one, *second, *rest)]
    assert sorted(taken) == ["R1", "R2", "R3"]  # each exactly once


async def test_an_order_being_placed_is_reported_by_its_own_handler_only() -> None:
    store = _SlowStore()
    broker = _venue(store=store)
    store.release.set()
    await broker.connect()
    store.release.clear()
    cmd = _order("P1", Side.BUY, "1")
    placing = asyncio.ensure_future(broker.place_order(cmd))
    await asyncio.sleep(0)  # the placement now waits in its save
    assert not placing.done()
    assert [c.cmd.client_order_id for c in broker.take_changes()] == []  # not another handler's to publish
    store.release.set()
    order = await placing
    assert [type(e).__name__ for e in broker.take_reports(cmd, order)] == ["OrderAccepted", "OrderFilled"]
    assert list(broker.take_changes()) == []


async def test_prices_continue_from_where_they_were_after_a_restart() -> None:
    """A restarted venue used to start its market again from ``initial_price``: every mark jumped."""
    store = MemoryPaperStore()
    clock = Clock()
    first = PaperBroker("paper", SyntheticFeed("paper", SPECS, 7, clock=clock), store=store, clock=clock)
    await first.connect()
    for _ in range(200):
        first.feed.step()
    await first.save_marks()
    moved = {sym: first.feed.mid(sym) for sym in SPECS}
    assert moved["BTCUSD"] != SPECS["BTCUSD"].initial_price

    again = PaperBroker("paper", SyntheticFeed("paper", SPECS, 7, clock=clock), store=store, clock=clock)
    await again.connect()
    assert {sym: again.feed.mid(sym) for sym in SPECS} == moved


async def test_finished_orders_leave_memory_once_their_command_can_no_longer_arrive() -> None:
    """Memory does not grow with history: a finished order is forgotten once its command has expired (the gateway
    refuses an expired command before the venue sees it) and it is reported and saved; working orders stay."""
    clock = Clock(1_000_000_000)
    store = MemoryPaperStore()
    broker = _venue(BOOK_1, clock=clock, store=store)
    await broker.connect()
    expires = clock.now + 30_000_000_000
    for n in range(50):
        cmd = _order(f"M{n}", Side.BUY if n % 2 else Side.SELL, "0.01", command_expires_ns=expires)
        broker.take_reports(cmd, await broker.place_order(cmd))
    resting = _order("R", Side.BUY, "1", OrderType.LIMIT, limit="1.09000", command_expires_ns=expires)
    broker.take_reports(resting, await broker.place_order(resting))
    positions = await broker.get_positions()
    assert broker.prune_finished() == 0  # their commands could still be delivered
    clock.now = expires + 120_000_000_000
    assert broker.prune_finished() == 50
    assert list(broker._orders) == ["R"] and broker.order("R").working
    assert await broker.get_positions() == positions  # the books are not the orders
    assert len(store.orders) == 51  # the store keeps them (the account is rebuilt from their fills)


async def test_a_restart_does_not_bring_forgotten_orders_back_into_memory() -> None:
    clock = Clock(1_000_000_000)
    store = MemoryPaperStore()
    first = _venue(BOOK_1, clock=clock, store=store)
    await first.connect()
    for n in range(10):
        cmd = _order(f"M{n}", Side.BUY, "0.01", command_expires_ns=clock.now + 30_000_000_000)
        first.take_reports(cmd, await first.place_order(cmd))
    positions = await first.get_positions()
    clock.now += 200_000_000_000
    again = _venue(BOOK_1, clock=clock, store=store)
    await again.connect()  # the account is rebuilt from every stored fill, then the finished orders are forgotten
    assert await again.get_positions() == positions
    assert again._orders == {}


async def test_a_modify_that_grows_an_order_needs_the_margin_for_what_it_adds() -> None:
    # found by the fuzz test: a resting order grown to 1e14 lots took 1e18 of margin without a check
    broker = _venue()
    await broker.place_order(_order("g", Side.BUY, "1", OrderType.LIMIT, limit="1.00000"))
    with pytest.raises(ModificationError, match=r"needed for 99999999999999 EURUSD"):
        await broker.modify_order("g", quantity=D("1e14"))
    assert (await broker.get_order_status("g")).quantity == D("1")
    grown = await broker.modify_order("g", quantity=D("2"))  # within the free margin: allowed
    assert grown.quantity == D("2")


async def test_protection_on_the_wrong_side_of_the_entry_is_refused() -> None:
    # found by the fuzz test: a sell's take-profit at 999999999999999 became a buy limit that filled at that price
    broker = _venue()
    with pytest.raises(OrderError, match="invalid stops"):
        await broker.place_order(_order("tp", Side.SELL, "1", take_profit=D("999999999999999")))
    with pytest.raises(OrderError, match="invalid stops"):
        await broker.place_order(_order("sl", Side.BUY, "1", stop_loss=D("2.00000")))
    ok = await broker.place_order(_order("ok", Side.BUY, "1", stop_loss=D("1.00000"), take_profit=D("1.20000")))
    assert ok.filled_qty == D("1")
