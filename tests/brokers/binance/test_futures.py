"""The Binance USD-M futures adapter through the real ccxt binanceusdm client against the local server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from ordermesh.brokers.binance.futures import BinanceFuturesAdapter
from ordermesh.brokers.model import (
    BookLevel,
    BrokerConnectionError,
    BrokerOrderState,
    BrokerPosition,
    InsufficientFundsError,
    ModificationError,
    OrderError,
    OrderNotFoundError,
    SymbolNotFoundError,
)
from ordermesh.brokers.registry import BrokerRegistry
from ordermesh.contract.ids import client_order_id
from ordermesh.contract.wire import Liquidity, OrderType, PlaceOrder, Side
from ordermesh.platform.config import ConfigError
from tools.binance_server import BinanceServer

D = Decimal
SYM = "BTC/USDT:USDT"


def place(
    n: int | str,
    side: Side = Side.BUY,
    qty: str = "0.1",
    order_type: OrderType = OrderType.MARKET,
    limit: str | None = None,
    reduce_only: bool = False,
) -> PlaceOrder:
    coid = client_order_id("fut-acct", f"intent-{n}")
    return PlaceOrder(
        command_id=f"place:{coid}", client_order_id=coid, intent_id=f"intent-{n}", strategy_id="s1",
        account="fut-acct", broker_id="usdm", symbol=SYM, side=side, order_type=order_type, quantity=D(qty),
        limit_price=D(limit) if limit else None, reduce_only=reduce_only,
    )  # fmt: skip


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    s = BinanceServer()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def make_adapter(server: BinanceServer, broker_id: str = "usdm", **kw: object) -> BinanceFuturesAdapter:
    args: dict[str, object] = {
        "api_key": server.api_key, "api_secret": server.api_secret, "base_url": server.url, "timeout_s": 1.0,
        "max_backoff_s": 5.0, "poll_interval_s": 0.01, "leverage": {SYM: 10}, "margin_type": "isolated",
    }  # fmt: skip
    args.update(kw)
    return BinanceFuturesAdapter(broker_id, **args)  # type: ignore[arg-type]


@pytest.fixture
async def adapter(server: BinanceServer) -> AsyncIterator[BinanceFuturesAdapter]:
    a = make_adapter(server)
    await a.connect()
    try:
        yield a
    finally:
        await a.close()


async def test_connect_loads_linear_markets_once_and_applies_settings(server: BinanceServer) -> None:
    a = make_adapter(server)
    try:
        assert all(url.startswith(server.url + "/") for url in a.exchange.urls["api"].values())
        await a.connect()
        assert server.requests == [
            ("GET", "fapi/v1/time"),  # the clock offset
            ("GET", "fapi/v1/exchangeInfo"),
            ("GET", "fapi/v1/openOrders"),
            ("GET", "fapi/v1/openAlgoOrders"),  # conditional orders waiting in the Algo Service
            ("POST", "fapi/v1/positionSide/dual"),
            ("POST", "fapi/v1/marginType"),
            ("POST", "fapi/v1/leverage"),
        ]
        assert (server.futures.leverage["BTCUSDT"], server.futures.margin_type["BTCUSDT"]) == (10, "ISOLATED")
        assert server.futures.dual_side is False
        await a.connect()  # again: "No need to change margin type / position side" are not errors
        assert server.futures.leverage["BTCUSDT"] == 10
    finally:
        await a.close()


async def test_futures_error_table_is_used_against_a_local_url(adapter: BinanceFuturesAdapter) -> None:
    url = adapter.base_url + "/fapi/v1/order"  # type: ignore[operator]
    exact = adapter.exchange.get_exceptions_by_url(url, "exact")
    assert exact["-2019"].__name__ == "InsufficientFunds" and exact["-4116"].__name__ == "InvalidOrder"


async def test_balance_book_and_empty_positions(adapter: BinanceFuturesAdapter) -> None:
    bal = await adapter.get_balance()
    assert (bal.currency, bal.balance, bal.equity, bal.free_margin, bal.margin_used) == (
        "USDT", D("10000"), D("10000"), D("10000"), D(0),
    )  # fmt: skip
    assert await adapter.get_positions() == []
    book = await adapter.get_order_book(SYM, depth=1)
    assert (book.bids, book.asks) == ([BookLevel(D("49999"), D("2"))], [BookLevel(D("50001"), D("2"))])
    with pytest.raises(SymbolNotFoundError):
        await adapter.get_order_book("DOGE/EUR:EUR")


async def test_open_then_reduce_only_close_with_fills_positions_and_pnl(
    adapter: BinanceFuturesAdapter, server: BinanceServer
) -> None:
    opened = await adapter.place_order(place(1, qty="0.1"))
    assert (opened.state, opened.filled_qty) == (BrokerOrderState.FILLED, D("0.1"))
    (fill,) = opened.fills  # from userTrades: futures answers carry no fills[]
    assert (fill.quantity, fill.price, fill.commission, fill.commission_asset, fill.liquidity) == (
        D("0.1"), D("50001"), D("2.00004"), "USDT", Liquidity.TAKER,
    )  # fmt: skip
    assert fill.fill_id == str(server.futures.trades[0]["id"])
    assert await adapter.get_positions() == [BrokerPosition(symbol=SYM, quantity=D("0.1"), avg_price=D("50001"))]
    bal = await adapter.get_balance()
    assert (bal.balance, bal.margin_used) == (D("10000") - D("2.00004"), D("500"))  # 0.1 * 50000 mark / 10x
    with pytest.raises(OrderError) as exc:  # reduce-only that would open the other way
        await adapter.place_order(place(2, side=Side.SELL, qty="0.2", reduce_only=True))
    assert (exc.value.code, exc.value.message) == ("-2022", "ReduceOnly Order is rejected.")
    closed = await adapter.place_order(place(3, side=Side.SELL, qty="0.1", reduce_only=True))
    assert closed.state is BrokerOrderState.FILLED and closed.fills[0].price == D("49999")
    assert await adapter.get_positions() == []
    assert server.futures.trades[-1]["realizedPnl"] == "-0.20000000"  # (49999 - 50001) * 0.1
    assert (await adapter.get_balance()).balance == D("10000") - D("2.00004") - D("1.99996") - D("0.2")


async def test_margin_insufficient(adapter: BinanceFuturesAdapter, server: BinanceServer) -> None:
    with pytest.raises(InsufficientFundsError) as exc:
        await adapter.place_order(place(4, qty="2.5", order_type=OrderType.LIMIT, limit="45000"))
    assert (exc.value.code, exc.value.message) == ("-2019", "Margin is insufficient.")
    assert server.futures.orders == {}


async def test_duplicate_client_order_id_answers_the_existing_order(
    adapter: BinanceFuturesAdapter, server: BinanceServer
) -> None:
    cmd = place(5, order_type=OrderType.LIMIT, limit="45000")
    first = await adapter.place_order(cmd)
    restarted = make_adapter(server)
    try:
        dup = await restarted.place_order(cmd)  # Binance answers -4116; the adapter answers the existing order
    finally:
        await restarted.close()
    assert dup.broker_order_id == first.broker_order_id
    assert len(server.futures.orders) == 1 and server.count_requests("POST", "fapi/v1/order") == 2


async def test_timeout_then_retry_yields_one_order(adapter: BinanceFuturesAdapter, server: BinanceServer) -> None:
    cmd = place(6, qty="0.1")
    server.hold_next("fapi/v1/order")
    with pytest.raises(BrokerConnectionError):
        await adapter.place_order(cmd)
    server.release()
    retried = await adapter.place_order(cmd)
    assert (retried.state, retried.filled_qty, len(retried.fills)) == (BrokerOrderState.FILLED, D("0.1"), 1)
    assert len(server.futures.orders) == 1 and server.count_requests("POST", "fapi/v1/order") == 1


async def test_rate_limit_back_off(adapter: BinanceFuturesAdapter, server: BinanceServer) -> None:
    server.rate_limit_next("fapi/v1/order", retry_after_s=1)
    order = await adapter.place_order(place(7, qty="0.1"))
    assert order.state is BrokerOrderState.FILLED and adapter.backoffs == [1.0]
    assert len(server.futures.orders) == 1


async def test_amend_partial_fills_and_cancel(adapter: BinanceFuturesAdapter, server: BinanceServer) -> None:
    order = await adapter.place_order(place(8, qty="0.2", order_type=OrderType.LIMIT, limit="49000"))
    amended = await adapter.modify_order(order.client_order_id, quantity=D("0.3"), limit_price=D("49500"))
    assert (amended.broker_order_id, amended.quantity, amended.limit_price) == (
        order.broker_order_id, D("0.3"), D("49500"),
    )  # fmt: skip
    assert len(server.futures.orders) == 1  # an amend, not a new order
    oid = int(order.broker_order_id)
    t1 = server.futures.fill(oid, D("0.1"))
    assert await adapter.poll_working() == [await adapter.get_order_status(order.client_order_id)]
    view = await adapter.get_order_status(order.client_order_id)
    assert (view.state, view.filled_qty) == (BrokerOrderState.PARTIALLY_FILLED, D("0.1"))
    assert [(f.fill_id, f.commission, f.liquidity) for f in view.fills] == [
        (str(t1["id"]), D("0.99"), Liquidity.MAKER)  # 0.1 * 49500 * 0.0002
    ]
    updates = adapter.order_updates()
    t2 = server.futures.fill(oid, D("0.05"))
    update = await asyncio.wait_for(anext(updates), 5)
    await updates.aclose()
    assert [f.fill_id for f in update.fills] == [str(t1["id"]), str(t2["id"])]
    assert await adapter.poll_working() == []
    canceled = await adapter.cancel_order(order.client_order_id)
    assert (canceled.state, canceled.filled_qty) == (BrokerOrderState.CANCELED, D("0.15"))
    with pytest.raises(ModificationError):
        await adapter.modify_order(order.client_order_id, quantity=D("0.4"))
    with pytest.raises(OrderNotFoundError):
        await adapter.cancel_order(order.client_order_id)
    assert await adapter.get_positions() == [BrokerPosition(symbol=SYM, quantity=D("0.15"), avg_price=D("49500"))]


def test_registry_entry() -> None:
    raw = {
        "usdm": {
            "type": "binance_usdm", "api_key": "${OM_F_KEY}", "api_secret": "${OM_F_SECRET}",
            "base_url": "http://127.0.0.1:1", "leverage": {SYM: 5}, "margin_type": "cross",
        },
        "bad": {"type": "binance_usdm", "margin_type": "portfolio"},
    }  # fmt: skip
    reg = BrokerRegistry(raw, env={"OM_F_KEY": "k", "OM_F_SECRET": "s"})
    # a bad setting is found by `brokers validate`, not only when a gateway starts
    assert reg.validate() == ["error: brokers.bad: Invalid enum value 'portfolio' - at `$.margin_type`"]
    a = reg.adapter("usdm")
    assert isinstance(a, BinanceFuturesAdapter)
    assert (a.leverage, a.margin_type, a.hedge_mode) == ({SYM: 5}, "cross", False)
    assert a.exchange.urls["api"]["fapiPrivate"] == "http://127.0.0.1:1/fapi/v1"
    with pytest.raises(ConfigError, match="margin_type"):
        reg.adapter("bad")


async def test_settings_not_applied_on_connect_are_applied_before_the_first_order(server: BinanceServer) -> None:
    a = make_adapter(server)
    try:
        server.drop_next("fapi/v1/positionSide/dual")  # no answer within the 1 s timeout
        await a.connect()  # not fatal
        server.release()
        assert not a.settings_applied and server.futures.margin_type["BTCUSDT"] == "CROSSED"
        order = await a.place_order(place(9, qty="0.1"))
        assert order.state is BrokerOrderState.FILLED and a.settings_applied
        assert (server.futures.leverage["BTCUSDT"], server.futures.margin_type["BTCUSDT"]) == (10, "ISOLATED")
        assert server.requests[-5:-2] == [
            ("POST", "fapi/v1/positionSide/dual"),
            ("POST", "fapi/v1/marginType"),
            ("POST", "fapi/v1/leverage"),
        ]
    finally:
        await a.close()
