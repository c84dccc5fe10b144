"""Binance connection health, request weight, market data: real ccxt against the local Binance-compatible server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from ordermesh.brokers.binance.futures import BinanceFuturesAdapter
from ordermesh.brokers.binance.requests import WeightBudget
from ordermesh.brokers.binance.spot import BinanceSpotAdapter
from ordermesh.brokers.model import BrokerConnectionError, BrokerOrderState
from ordermesh.contract.wire import OrderType
from ordermesh.sizing.instruments import InstrumentOverride
from tests.brokers.binance.test_adapter import make_adapter, place
from tools.binance_server import BinanceServer

D = Decimal


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    s = BinanceServer()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class FakeTime:
    """A clock 50 s into a minute window whose sleeps pass at once (and are recorded)."""

    def __init__(self) -> None:
        self.now = 6000.0 + 50
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_weight_reported_by_binance_holds_requests_until_the_next_minute(server: BinanceServer) -> None:
    t = FakeTime()
    budget = WeightBudget(6000, headroom=0.9, clock=t.clock, sleep=t.sleep)
    a = make_adapter(server, budget=budget, broker_id="bn-weight")
    try:
        await a.connect()
        assert t.slept == []
        server.set_used_weight(5380)  # other gateways on this IP have spent most of the minute
        await a.get_balance()  # account: weight 20 -> 5400 = the ceiling (90 % of 6000)
        assert a.used_weight == 5400 and budget.used == 5400
        assert sample("ordermesh_broker_weight_used", broker_id="bn-weight") == 5400
        await a.get_order_book("BTC/USDT", 5)  # weight 5 would pass the ceiling: waits for the next window
        assert t.slept == [pytest.approx(10.5)]
        assert sample("ordermesh_broker_weight_wait_seconds_total", broker_id="bn-weight") == pytest.approx(10.5)
    finally:
        await a.close()


async def test_weight_limit_comes_from_exchange_info(server: BinanceServer) -> None:
    server.weight_limit = 1200
    a = make_adapter(server, budget=WeightBudget(6000))
    try:
        await a.connect()
        assert a.budget.limit == 1200
    finally:
        await a.close()


async def test_endpoint_latency_and_connection_state_metrics(server: BinanceServer) -> None:
    a = make_adapter(server, broker_id="bn-health")
    try:
        await a.connect()
        await a.place_order(place(1, qty="0.01"))
        assert sample("ordermesh_broker_endpoint_seconds_count", broker_id="bn-health",
                      endpoint="POST /api/v3/order") == 1  # fmt: skip
        assert sample("ordermesh_broker_endpoint_seconds_count", broker_id="bn-health",
                      endpoint="GET /api/v3/exchangeInfo") == 1  # fmt: skip
        assert a.connected and sample("ordermesh_broker_connected", broker_id="bn-health") == 1
    finally:
        await a.close()


async def test_heartbeat_sees_the_outage_and_reconciles_after_the_reconnection(server: BinanceServer) -> None:
    a = make_adapter(server, broker_id="bn-reconnect", heartbeat_interval_s=0)
    try:
        await a.connect()
        order = await a.place_order(place(2, qty="0.2", order_type=OrderType.LIMIT, limit="49000"))
        assert await a.heartbeat() is True
        before = sample("ordermesh_broker_reconnects_total", broker_id="bn-reconnect")
        server.drop_next("time", max_s=5)  # no answer within the 1 s timeout
        assert await a.heartbeat() is False
        assert not a.connected and sample("ordermesh_broker_connected", broker_id="bn-reconnect") == 0
        server.release()
        (resting,) = server.open_orders()
        server.fill(resting.order_id, D("0.2"))  # filled while we could not see
        requests_before = len(server.requests)
        assert await a.heartbeat() is True
        assert a.connected and sample("ordermesh_broker_reconnects_total", broker_id="bn-reconnect") == before + 1
        seen = server.requests[requests_before:]
        assert ("GET", "openOrders") in seen  # the reconciliation ran on the reconnection
        (update,) = await a.poll_working()
        assert (update.client_order_id, update.state, update.filled_qty) == (
            order.client_order_id, BrokerOrderState.FILLED, D("0.2"),
        )  # fmt: skip
    finally:
        await a.close()


async def test_a_timeout_marks_the_broker_disconnected_until_the_next_answer(server: BinanceServer) -> None:
    a = make_adapter(server, broker_id="bn-timeout", heartbeat_interval_s=0)
    try:
        await a.connect()
        server.drop_next("account", max_s=5)
        with pytest.raises(BrokerConnectionError):
            await a.get_balance()
        assert a.connected is False
        server.release()
        await a.get_balance()
        assert a.connected is True
    finally:
        await a.close()


async def test_heartbeat_loop_runs_on_its_own(server: BinanceServer) -> None:
    a = make_adapter(server, heartbeat_interval_s=0.01)
    try:
        await a.connect()
        async with asyncio.timeout(5):
            while server.count_requests("GET", "time") < 3:
                await asyncio.sleep(0.01)
        assert a.clock_offset_ms is not None and abs(a.clock_offset_ms) < 1000
    finally:
        await a.close()


async def test_instruments_from_exchange_info(server: BinanceServer) -> None:
    a = make_adapter(server, symbols=["BTC/USDT", "NOPE/USDT"])
    try:
        reports = await a.instruments()
        assert reports == {
            "BTC/USDT": InstrumentOverride(
                kind="crypto_linear", base_currency="BTC", quote_currency="USDT", contract_size=D(1),
                lot_step=D("0.00001"), min_lot=D("0.00001"), max_lot=D("9000"), tick_size=D("0.01"),
                min_notional=D(5), leverage=D(1),
            )
        }  # fmt: skip
    finally:
        await a.close()
    f = BinanceFuturesAdapter(
        "bf", api_key=server.api_key, api_secret=server.api_secret, base_url=server.url, symbols=["BTCUSDT"],
        leverage={"BTC/USDT:USDT": 5}, heartbeat_interval_s=0,
    )  # fmt: skip
    try:
        (report,) = (await f.instruments()).values()
        assert (report.lot_step, report.tick_size, report.min_notional, report.leverage, report.quote_currency) == (
            D("0.001"), D("0.1"), D(100), D(5), "USDT",
        )  # fmt: skip
    finally:
        await f.close()


async def test_quotes_from_book_ticker(server: BinanceServer) -> None:
    a = make_adapter(server, symbols=["BTC/USDT"], quote_interval_s=0.01)
    try:
        quotes = a.quotes()
        first = await anext(quotes)
        assert (first.broker_id, first.symbol, first.bid, first.ask, first.bid_size, first.ask_size) == (
            "binance", "BTC/USDT", D("49999"), D("50001"), D("0.5"), D("0.3"),
        )  # fmt: skip
        await quotes.aclose()
    finally:
        await a.close()
    assert [q async for q in BinanceSpotAdapter("none").quotes()] == []  # no symbols: no quotes


# ----------------------------------------------------------------------------------------- unreadable answers


def bad_answers(task: str) -> float:
    return sample("ordermesh_broker_bad_answers_total", broker_id="binance", task=task)


@pytest.mark.parametrize("body", ['{"serverTime": "soon"}', "{}", "[]", "not json"])
async def test_an_unreadable_heartbeat_answer_fails_that_heartbeat_only(server: BinanceServer, body: str) -> None:
    a = make_adapter(server, heartbeat_interval_s=0)
    try:
        assert await a.heartbeat() is True
        before = bad_answers("heartbeat")
        server.garble_next("time", body)
        assert await a.heartbeat() is False
        assert bad_answers("heartbeat") == before + 1
        assert await a.heartbeat() is True
    finally:
        await a.close()


async def test_unreadable_order_and_quote_answers_are_counted_and_the_polls_go_on(server: BinanceServer) -> None:
    a = make_adapter(server, heartbeat_interval_s=0, symbols=["BTC/USDT"], quote_interval_s=0.01)
    try:
        cmd = place(1, qty="0.1", order_type=OrderType.LIMIT, limit="49000")
        placed = await a.place_order(cmd)
        assert [v.state for v in await a.poll_working()] == [BrokerOrderState.NEW]
        polls = bad_answers("order_poll")
        server.garble_next("openOrders", '{"orders": []}')  # an object where a list is due
        assert await a.poll_working() == []
        assert bad_answers("order_poll") == polls + 1
        server.fill(int(placed.broker_order_id), D("0.1"))
        (update,) = await a.poll_working()  # the next poll reads the fill
        assert (update.state, update.filled_qty) == (BrokerOrderState.FILLED, D("0.1"))
        quotes_before = bad_answers("quote_poll")
        server.garble_next("ticker/bookTicker", '[{"symbol": "BTCUSDT"}]')  # no prices
        quotes = a.quotes()
        first = await anext(quotes)  # the unreadable answer is skipped: the next one is quoted
        assert (first.symbol, first.bid, first.ask) == ("BTC/USDT", D("49999"), D("50001"))
        assert bad_answers("quote_poll") == quotes_before + 1
        await quotes.aclose()
    finally:
        await a.close()
