"""Fills when the account's trade list lags the order: an order Binance says executed is reported with its fills or
as still working, never as finished without them, and its trades are read until they cover what it executed. Real
ccxt against the local Binance-compatible server (``lag_trades``: trades listed some reads after the fill)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import structlog
from prometheus_client import REGISTRY

from ordermesh.brokers.model import BrokerOrder, BrokerOrderState
from ordermesh.contract.wire import OrderType
from tests.brokers.binance import test_adapter as spot_t
from tests.brokers.binance import test_futures as fut_t
from tools.binance_server import BinanceServer

D = Decimal
NEW, PARTIAL, FILLED = BrokerOrderState.NEW, BrokerOrderState.PARTIALLY_FILLED, BrokerOrderState.FILLED
LIMIT = OrderType.LIMIT


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


async def updates_until(updates: AsyncIterator[BrokerOrder], state: BrokerOrderState) -> list[BrokerOrder]:
    """The views the adapter reports until one is in ``state`` (each awaited with a timeout)."""
    seen = []
    while not seen or seen[-1].state is not state:
        seen.append(await asyncio.wait_for(anext(updates), 5))
    return seen


async def test_a_futures_fill_not_yet_in_user_trades_is_polled_until_listed_and_reported_once(
    server: BinanceServer,
) -> None:
    a = fut_t.make_adapter(server, broker_id="usdm-lag", heartbeat_interval_s=0, fill_retry_s=0, fill_lag_warn_s=0)
    lagging = sample("ordermesh_broker_fill_lag_checks_total", broker_id="usdm-lag")
    try:
        await a.connect()
        server.lag_trades(polls=5)  # more reads than the adapter makes while placing (3)
        with structlog.testing.capture_logs() as logs:
            order = await a.place_order(fut_t.place(1, qty="0.01"))  # a market order: FILLED in its answer
            (resting,) = server.futures.orders.values()
            assert resting.status == "FILLED"
            # not reported finished without its fill: the gateway keeps the command until the fill is known
            assert (order.state, order.filled_qty, order.fills) == (NEW, D(0), [])
            assert sample("ordermesh_broker_orders_missing_fills", broker_id="usdm-lag") == 1
            updates = a.order_updates()
            seen = await updates_until(updates, FILLED)
            await updates.aclose()
        assert all(v.state is NEW and not v.fills for v in seen[:-1])
        (trade,) = server.futures.trades
        assert [(f.fill_id, f.quantity, f.price) for f in seen[-1].fills] == [(str(trade["id"]), D("0.01"), D("50001"))]
        assert seen[-1].filled_qty == D("0.01")
        assert await a.poll_working() == []  # reported once, then nothing more to read
        assert server.count_requests("GET", "fapi/v1/userTrades") == 6  # 5 reads before it was listed, 1 after
        assert sample("ordermesh_broker_fill_lag_checks_total", broker_id="usdm-lag") == lagging + 5
        assert sample("ordermesh_broker_orders_missing_fills", broker_id="usdm-lag") == 0
        warned = [e for e in logs if e["log_level"] == "warning" and e.get("client_order_id") == order.client_order_id]
        assert [e["event"] for e in warned] == ["trades of an executed order not listed yet; still reading them"]
    finally:
        await a.close()


async def test_a_futures_fill_listed_within_the_placing_retries_is_in_the_placing_answer(
    server: BinanceServer,
) -> None:
    a = fut_t.make_adapter(server, heartbeat_interval_s=0, fill_retry_s=0)
    try:
        await a.connect()
        server.lag_trades(polls=2)
        order = await a.place_order(fut_t.place(2, qty="0.01"))
        assert (order.state, [f.quantity for f in order.fills]) == (FILLED, [D("0.01")])
        assert server.count_requests("GET", "fapi/v1/userTrades") == 3
    finally:
        await a.close()


async def test_a_spot_order_that_filled_while_resting_is_reported_filled_only_with_its_fill(
    server: BinanceServer,
) -> None:
    a = spot_t.make_adapter(server, heartbeat_interval_s=0, fill_retry_s=0)
    try:
        await a.connect()
        order = await a.place_order(spot_t.place(1, qty="0.2", order_type=LIMIT, limit="49000"))
        assert await a.poll_working() == [order]
        server.lag_trades(polls=3)
        (resting,) = server.open_orders()
        trade = server.fill(resting.order_id, D("0.2"))  # gone from openOrders; myTrades does not list it yet
        updates = a.order_updates()
        (filled,) = await updates_until(updates, FILLED)  # the views in between did not change: not reported
        await updates.aclose()
        assert [(f.fill_id, f.quantity, f.commission) for f in filled.fills] == [(str(trade.id), D("0.2"), D("0.0002"))]
        assert await a.poll_working() == []
    finally:
        await a.close()


async def test_a_partial_fill_listed_late_is_still_read_while_the_order_works(server: BinanceServer) -> None:
    a = spot_t.make_adapter(server, heartbeat_interval_s=0, fill_retry_s=0)
    try:
        await a.connect()
        order = await a.place_order(spot_t.place(2, qty="0.2", order_type=LIMIT, limit="49000"))
        await a.poll_working()
        server.lag_trades(polls=2)
        (resting,) = server.open_orders()
        trade = server.fill(resting.order_id, D("0.05"))  # openOrders shows executedQty 0.05 at once
        updates = a.order_updates()
        (partial,) = await updates_until(updates, PARTIAL)
        await updates.aclose()
        assert (partial.client_order_id, partial.filled_qty) == (order.client_order_id, D("0.05"))
        assert [f.fill_id for f in partial.fills] == [str(trade.id)]
        assert await a.poll_working() == []
    finally:
        await a.close()
