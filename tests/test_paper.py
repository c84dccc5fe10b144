"""The paper venue: a deterministic random-walk feed and a broker that fills at the touch, to the digit."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from ordermesh.broker import (
    Balance,
    BookLevel,
    BrokerOrderState,
    BrokerPosition,
    ModificationError,
    OrderError,
    OrderNotFoundError,
    SymbolNotFoundError,
)
from ordermesh.config import FeedSymbol
from ordermesh.paper import PaperBroker, RandomWalkFeed
from ordermesh.wire import Liquidity, OrderType, PlaceOrder, Quote, RejectCategory, Side, TimeInForce

SPECS = {
    "EURUSD": FeedSymbol(initial_price=D("1.08500"), spread=D("0.00010"), tick_size=D("0.00001")),
    "BTCUSD": FeedSymbol(
        initial_price=D("65000.00"), spread=D("5.00"), tick_size=D("0.01"), volatility_ticks=500, size=D("50")
    ),
}
# Initial touch: EURUSD 1.08495 / 1.08505, BTCUSD 64997.50 / 65002.50.


def _feed(seed: int = 7, specs: dict[str, FeedSymbol] | None = None) -> RandomWalkFeed:
    return RandomWalkFeed("paper", SPECS if specs is None else specs, seed=seed)


def _broker(seed: int = 7) -> PaperBroker:
    return PaperBroker("paper", _feed(seed))


def _order(
    coid: str,
    side: Side,
    qty: str,
    order_type: OrderType = OrderType.MARKET,
    limit: str | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    symbol: str = "EURUSD",
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
        time_in_force=tif,
    )


def _limit(coid: str, side: Side, qty: str, limit: str, tif: TimeInForce = TimeInForce.GTC) -> PlaceOrder:
    return _order(coid, side, qty, OrderType.LIMIT, limit, tif)


def _quote(bid: str, ask: str, symbol: str = "EURUSD", ts_ns: int = 1_000) -> Quote:
    return Quote(broker_id="paper", symbol=symbol, bid=D(bid), ask=D(ask), ts_ns=ts_ns)


def _touch(quotes: list[Quote]) -> list[tuple[str, str, str]]:
    return [(q.symbol, str(q.bid), str(q.ask)) for q in quotes]


# ------------------------------------------------------------------------------------------ feed


def test_initial_quotes() -> None:
    feed = _feed()
    eur = feed.quote("EURUSD", ts_ns=123)
    assert (eur.broker_id, eur.symbol) == ("paper", "EURUSD")
    assert (eur.bid, eur.ask) == (D("1.08495"), D("1.08505"))
    assert (eur.bid_size, eur.ask_size) == (D("1000000"), D("1000000"))
    assert eur.ts_ns == 123
    btc = feed.quote("BTCUSD")
    assert (str(btc.bid), str(btc.ask)) == ("64997.50", "65002.50")
    assert (btc.bid_size, btc.ask_size) == (D("50"), D("50"))
    assert btc.ts_ns > 0
    assert feed.steps == 0


def test_odd_spread_keeps_the_exact_spread_on_the_tick_grid() -> None:
    spec = FeedSymbol(initial_price=D("1.27000"), spread=D("0.00015"), tick_size=D("0.00001"))
    q = _feed(specs={"GBPUSD": spec}).quote("GBPUSD")
    assert (str(q.bid), str(q.ask)) == ("1.26992", "1.27007")
    assert q.ask - q.bid == D("0.00015")


def test_seed_7_walk_exact() -> None:
    feed = _feed(7)
    assert _touch(feed.step()) == [("BTCUSD", "64995.81", "65000.81"), ("EURUSD", "1.08493", "1.08503")]
    assert _touch(feed.step()) == [("BTCUSD", "64994.85", "64999.85"), ("EURUSD", "1.08495", "1.08505")]
    assert _touch(feed.step()) == [("BTCUSD", "64990.34", "64995.34"), ("EURUSD", "1.08492", "1.08502")]
    assert feed.steps == 3
    # quote() reports the current walk position
    assert (str(feed.quote("EURUSD").bid), str(feed.quote("EURUSD").ask)) == ("1.08492", "1.08502")


def test_same_seed_same_quotes() -> None:
    a, b = _feed(42), _feed(42)
    seq_a = [_touch(a.step()) for _ in range(200)]
    seq_b = [_touch(b.step()) for _ in range(200)]
    assert seq_a == seq_b


def test_different_seeds_differ() -> None:
    a, b = _feed(1), _feed(2)
    seq_a = [_touch(a.step()) for _ in range(20)]
    seq_b = [_touch(b.step()) for _ in range(20)]
    assert seq_a != seq_b


def test_step_quotes_share_one_timestamp_in_symbol_order() -> None:
    quotes = _feed().step()
    assert [q.symbol for q in quotes] == ["BTCUSD", "EURUSD"]
    assert quotes[0].ts_ns == quotes[1].ts_ns > 0


def test_walk_moves_on_the_tick_grid_within_volatility_and_keeps_the_spread() -> None:
    feed = _feed(3)
    prev = {s: feed.quote(s) for s in SPECS}
    for _ in range(300):
        for q in feed.step():
            spec = SPECS[q.symbol]
            assert q.ask - q.bid == spec.spread
            move = q.bid - prev[q.symbol].bid
            assert abs(move) <= spec.tick_size * spec.volatility_ticks
            assert move % spec.tick_size == 0
            prev[q.symbol] = q


def test_walk_never_goes_below_its_floor() -> None:
    spec = FeedSymbol(initial_price=D("0.00005"), spread=D("0.00002"), tick_size=D("0.00001"), volatility_ticks=50)
    feed = _feed(5, {"PENNY": spec})
    floor = spec.tick_size * 2 + spec.spread  # smallest mid
    bids = [feed.step()[0].bid for _ in range(200)]
    assert min(bids) == floor - D("0.00001")  # half spread below the floor mid: hit, never crossed
    assert all(b > 0 for b in bids)


# ------------------------------------------------------------------------------------ market orders


async def test_market_buy_fills_at_the_ask() -> None:
    broker = _broker()
    order = await broker.place_order(_order("c-1", Side.BUY, "0.10"))
    assert order.client_order_id == "c-1"
    assert order.broker_order_id == "Pc-1"
    assert order.state is BrokerOrderState.FILLED
    assert order.quantity == D("0.10")
    assert order.filled_qty == D("0.10")
    assert order.leaves_qty == 0
    (fill,) = order.fills
    assert fill.fill_id == "Pc-1-1"
    assert fill.price == D("1.08505")
    assert fill.quantity == D("0.10")
    assert fill.liquidity is Liquidity.TAKER
    assert fill.commission == 0
    assert await broker.get_positions() == [BrokerPosition(symbol="EURUSD", quantity=D("0.10"), avg_price=D("1.08505"))]


async def test_market_sell_fills_at_the_bid() -> None:
    broker = _broker()
    order = await broker.place_order(_order("c-2", Side.SELL, "0.25"))
    assert order.state is BrokerOrderState.FILLED
    (fill,) = order.fills
    assert fill.price == D("1.08495")
    assert fill.liquidity is Liquidity.TAKER
    assert await broker.get_positions() == [
        BrokerPosition(symbol="EURUSD", quantity=D("-0.25"), avg_price=D("1.08495"))
    ]


async def test_market_order_fills_at_the_current_walk_position() -> None:
    broker = _broker(7)
    broker.feed.step()
    broker.feed.step()
    broker.feed.step()  # BTCUSD 64990.34 / 64995.34
    buy = await broker.place_order(_order("b", Side.BUY, "0.5", symbol="BTCUSD"))
    sell = await broker.place_order(_order("s", Side.SELL, "0.5", symbol="BTCUSD"))
    assert buy.fills[0].price == D("64995.34")
    assert sell.fills[0].price == D("64990.34")


async def test_same_client_order_id_twice_is_one_order_and_one_fill() -> None:
    broker = _broker()
    first = await broker.place_order(_order("c-1", Side.BUY, "0.10"))
    again = await broker.place_order(_order("c-1", Side.BUY, "0.10"))
    assert again == first
    assert len(again.fills) == 1
    # a replay with other content still returns the original order
    other = await broker.place_order(_order("c-1", Side.SELL, "5"))
    assert other == first
    status = await broker.get_order_status("c-1")
    assert status == first
    assert await broker.get_positions() == [BrokerPosition(symbol="EURUSD", quantity=D("0.10"), avg_price=D("1.08505"))]


async def test_idempotent_for_a_resting_order_too() -> None:
    broker = _broker()
    first = await broker.place_order(_limit("L", Side.BUY, "1", "1.08400"))
    again = await broker.place_order(_limit("L", Side.BUY, "1", "1.08400"))
    assert again == first
    assert again.state is BrokerOrderState.NEW
    broker.on_quote(_quote("1.08390", "1.08400"))
    replay = await broker.place_order(_limit("L", Side.BUY, "1", "1.08400"))
    assert replay.state is BrokerOrderState.FILLED
    assert len(replay.fills) == 1


# ------------------------------------------------------------------------------------- limit orders


async def test_limit_rests_until_a_quote_crosses_it() -> None:
    broker = _broker()
    placed = await broker.place_order(_limit("L", Side.BUY, "1", "1.08400"))
    assert placed.state is BrokerOrderState.NEW
    assert placed.fills == []
    assert placed.limit_price == D("1.08400")
    assert await broker.get_positions() == []

    assert broker.on_quote(_quote("1.08405", "1.08415")) == []  # ask above the limit
    assert broker.on_quote(_quote("1.08395", "1.08400", symbol="BTCUSD")) == []  # another symbol

    fills = broker.on_quote(_quote("1.08390", "1.08400", ts_ns=5_000))
    assert len(fills) == 1
    order, fill = fills[0]
    assert order.client_order_id == "L"
    assert order.state is BrokerOrderState.FILLED
    assert order.filled_qty == D("1")
    assert fill.fill_id == "PL-1"
    assert fill.price == D("1.08400")
    assert fill.quantity == D("1")
    assert fill.ts_ns == 5_000
    assert (await broker.get_order_status("L")).state is BrokerOrderState.FILLED
    assert await broker.get_positions() == [BrokerPosition(symbol="EURUSD", quantity=D("1"), avg_price=D("1.08400"))]
    # a filled order never fills again
    assert broker.on_quote(_quote("1.08300", "1.08310")) == []


async def test_resting_limit_fills_as_maker() -> None:
    broker = _broker()
    await broker.place_order(_limit("L", Side.BUY, "1", "1.08400"))
    ((_order_view, fill),) = broker.on_quote(_quote("1.08390", "1.08400"))
    assert fill.liquidity is Liquidity.MAKER  # it rested on the book: maker, not taker
    assert (await broker.get_order_status("L")).fills[0].liquidity is Liquidity.MAKER


async def test_resting_sell_limit_fills_when_the_bid_reaches_it() -> None:
    broker = _broker()
    await broker.place_order(_limit("S", Side.SELL, "2", "1.08600"))
    assert broker.on_quote(_quote("1.08599", "1.08609")) == []
    ((order, fill),) = broker.on_quote(_quote("1.08600", "1.08610"))
    assert order.state is BrokerOrderState.FILLED
    assert fill.price == D("1.08600")
    assert fill.quantity == D("2")
    assert await broker.get_positions() == [BrokerPosition(symbol="EURUSD", quantity=D("-2"), avg_price=D("1.08600"))]


async def test_marketable_limit_fills_at_once_at_the_touch_as_taker() -> None:
    broker = _broker()
    buy = await broker.place_order(_limit("B", Side.BUY, "1", "1.08600"))
    assert buy.state is BrokerOrderState.FILLED
    assert buy.fills[0].price == D("1.08505")  # the ask, better than the limit
    assert buy.fills[0].liquidity is Liquidity.TAKER
    sell = await broker.place_order(_limit("S", Side.SELL, "1", "1.08495"))  # exactly at the bid
    assert sell.state is BrokerOrderState.FILLED
    assert sell.fills[0].price == D("1.08495")


@pytest.mark.parametrize("tif", [TimeInForce.IOC, TimeInForce.FOK])
async def test_ioc_or_fok_limit_not_marketable_is_canceled(tif: TimeInForce) -> None:
    broker = _broker()
    order = await broker.place_order(_limit("X", Side.BUY, "1", "1.08400", tif))
    assert order.state is BrokerOrderState.CANCELED
    assert order.fills == []
    assert order.filled_qty == 0
    assert broker.on_quote(_quote("1.08300", "1.08310")) == []  # it does not rest
    assert (await broker.get_order_status("X")).state is BrokerOrderState.CANCELED
    assert await broker.get_positions() == []


async def test_ioc_limit_that_is_marketable_fills() -> None:
    broker = _broker()
    order = await broker.place_order(_limit("X", Side.SELL, "1", "1.08400", TimeInForce.IOC))
    assert order.state is BrokerOrderState.FILLED
    assert order.fills[0].price == D("1.08495")


async def test_cancel_a_resting_order() -> None:
    broker = _broker()
    await broker.place_order(_limit("L", Side.BUY, "1", "1.08400"))
    canceled = await broker.cancel_order("L")
    assert canceled.state is BrokerOrderState.CANCELED
    assert broker.on_quote(_quote("1.08300", "1.08310")) == []
    assert await broker.get_positions() == []
    # canceling again is harmless
    assert (await broker.cancel_order("L")).state is BrokerOrderState.CANCELED


async def test_cancel_a_filled_order_leaves_it_filled() -> None:
    broker = _broker()
    await broker.place_order(_order("M", Side.BUY, "1"))
    assert (await broker.cancel_order("M")).state is BrokerOrderState.FILLED


async def test_modify_a_resting_limit() -> None:
    broker = _broker()
    await broker.place_order(_limit("L", Side.BUY, "1", "1.08400"))
    modified = await broker.modify_order("L", quantity=D("3"), limit_price=D("1.08450"))
    assert modified.state is BrokerOrderState.NEW
    assert modified.quantity == D("3")
    assert modified.limit_price == D("1.08450")
    ((order, fill),) = broker.on_quote(_quote("1.08440", "1.08450"))
    assert order.state is BrokerOrderState.FILLED
    assert order.filled_qty == D("3")
    assert fill.quantity == D("3")
    assert fill.price == D("1.08450")
    with pytest.raises(ModificationError, match="FILLED"):
        await broker.modify_order("L", limit_price=D("1.08000"))


async def test_order_lookup() -> None:
    broker = _broker()
    await broker.place_order(_order("c-1", Side.BUY, "1"))
    assert (await broker.get_order_status("c-1")).broker_order_id == "Pc-1"
    assert (await broker.get_order_status("unknown-coid", "Pc-1")).client_order_id == "c-1"
    with pytest.raises(OrderNotFoundError, match="nope"):
        await broker.get_order_status("nope")
    with pytest.raises(OrderNotFoundError):
        await broker.get_order_status("nope", "Pnope")
    with pytest.raises(OrderNotFoundError):
        await broker.cancel_order("nope")
    with pytest.raises(OrderNotFoundError):
        await broker.modify_order("nope", quantity=D("1"))


# --------------------------------------------------------------------------------------- refusals


async def test_unknown_symbol() -> None:
    broker = _broker()
    with pytest.raises(SymbolNotFoundError, match="XAUUSD") as info:
        await broker.place_order(_order("c-1", Side.BUY, "1", symbol="XAUUSD"))
    assert info.value.category is RejectCategory.INSTRUMENT
    with pytest.raises(OrderNotFoundError):
        await broker.get_order_status("c-1")  # a refused order is not remembered
    with pytest.raises(SymbolNotFoundError):
        await broker.get_order_book("XAUUSD")


@pytest.mark.parametrize("qty", ["0", "-1"])
async def test_non_positive_quantity(qty: str) -> None:
    with pytest.raises(OrderError, match="quantity must be positive"):
        await _broker().place_order(_order("c-1", Side.BUY, qty))


@pytest.mark.parametrize("order_type", [OrderType.STOP, OrderType.STOP_LIMIT])
async def test_unsupported_order_types(order_type: OrderType) -> None:
    with pytest.raises(OrderError, match="not supported"):
        await _broker().place_order(_order("c-1", Side.BUY, "1", order_type, limit="1.08"))


async def test_limit_without_price() -> None:
    with pytest.raises(OrderError, match="limit_price"):
        await _broker().place_order(_order("c-1", Side.BUY, "1", OrderType.LIMIT))


# ------------------------------------------------------------------------------ positions and money


async def test_position_average_price_and_realized_pnl_on_a_reduce() -> None:
    broker = _broker()
    await broker.place_order(_order("m1", Side.BUY, "2"))  # 2 @ 1.08505
    await broker.place_order(_limit("l1", Side.BUY, "2", "1.08400"))
    broker.on_quote(_quote("1.08390", "1.08400"))  # 2 @ 1.08400
    assert await broker.get_positions() == [
        BrokerPosition(symbol="EURUSD", quantity=D("4"), avg_price=D("1.084525"))  # (2*1.08505 + 2*1.08400) / 4
    ]
    await broker.place_order(_limit("l2", Side.SELL, "3", "1.08600"))
    broker.on_quote(_quote("1.08600", "1.08610"))  # sell 3 @ 1.08600
    # reducing keeps the average price; realized = 3 * (1.08600 - 1.084525) = 0.004425
    assert await broker.get_positions() == [BrokerPosition(symbol="EURUSD", quantity=D("1"), avg_price=D("1.084525"))]
    balance = await broker.get_balance()
    assert balance.balance == D("100000.004425")
    # unrealized at the feed's bid 1.08495: (1.08495 - 1.084525) * 1 = 0.000425
    assert balance.equity == D("100000.004850")
    assert balance.free_margin == D("100000.004850")
    assert balance.currency == "USD"


async def test_short_reduce_realizes_pnl_with_the_right_sign() -> None:
    broker = _broker()
    await broker.place_order(_order("m1", Side.SELL, "2"))  # -2 @ 1.08495
    await broker.place_order(_limit("l1", Side.BUY, "1", "1.08400"))
    broker.on_quote(_quote("1.08390", "1.08400"))  # buy back 1 @ 1.08400
    assert await broker.get_positions() == [BrokerPosition(symbol="EURUSD", quantity=D("-1"), avg_price=D("1.08495"))]
    balance = await broker.get_balance()
    assert balance.balance == D("100000.00095")  # 1 * (1.08495 - 1.08400)
    # the short is marked at the feed's ask 1.08505: (1.08505 - 1.08495) * -1 = -0.00010
    assert balance.equity == D("100000.00085")


async def test_adding_to_a_short_averages() -> None:
    broker = _broker()
    await broker.place_order(_order("m1", Side.SELL, "1"))  # -1 @ 1.08495
    await broker.place_order(_limit("l1", Side.SELL, "3", "1.08600"))
    broker.on_quote(_quote("1.08600", "1.08610"))  # -3 @ 1.08600
    # (1 * 1.08495 + 3 * 1.08600) / 4 = 1.0857375
    assert await broker.get_positions() == [BrokerPosition(symbol="EURUSD", quantity=D("-4"), avg_price=D("1.0857375"))]
    assert (await broker.get_balance()).balance == D("100000")


async def test_flip_from_long_to_short_takes_the_fill_price() -> None:
    broker = _broker()
    await broker.place_order(_order("m1", Side.BUY, "1"))  # 1 @ 1.08505
    await broker.place_order(_limit("l1", Side.SELL, "3", "1.08600"))
    broker.on_quote(_quote("1.08600", "1.08610"))  # sell 3 @ 1.08600
    assert await broker.get_positions() == [BrokerPosition(symbol="EURUSD", quantity=D("-2"), avg_price=D("1.08600"))]
    assert (await broker.get_balance()).balance == D("100000.00095")  # 1 * (1.08600 - 1.08505)


async def test_round_trip_to_flat_drops_the_position() -> None:
    broker = _broker()
    await broker.place_order(_order("b", Side.BUY, "1"))  # @ 1.08505
    await broker.place_order(_order("s", Side.SELL, "1"))  # @ 1.08495
    assert await broker.get_positions() == []
    balance = await broker.get_balance()
    assert balance == Balance(
        currency="USD", balance=D("99999.99990"), equity=D("99999.99990"), free_margin=D("99999.99990")
    )


async def test_positions_are_per_symbol_and_sorted() -> None:
    broker = _broker()
    await broker.place_order(_order("e", Side.BUY, "1"))
    await broker.place_order(_order("b", Side.SELL, "0.5", symbol="BTCUSD"))
    assert await broker.get_positions() == [
        BrokerPosition(symbol="BTCUSD", quantity=D("-0.5"), avg_price=D("64997.50")),
        BrokerPosition(symbol="EURUSD", quantity=D("1"), avg_price=D("1.08505")),
    ]


async def test_fresh_account() -> None:
    broker = PaperBroker("paper", _feed(), currency="EUR", deposit=D("5000.00"))
    assert await broker.validate_connection() is True
    assert await broker.get_positions() == []
    assert await broker.get_balance() == Balance(
        currency="EUR", balance=D("5000.00"), equity=D("5000.00"), free_margin=D("5000.00")
    )


async def test_order_book_is_the_touch() -> None:
    broker = _broker()
    book = await broker.get_order_book("BTCUSD")
    assert book.symbol == "BTCUSD"
    assert book.bids == [BookLevel(D("64997.50"), D("50"))]
    assert book.asks == [BookLevel(D("65002.50"), D("50"))]
    assert book.ts_ns > 0
