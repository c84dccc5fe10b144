"""Binance fills by account-trade polling, reconciliation of recent trades, resumed orders: real ccxt against the
local Binance-compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from ordermesh.brokers.model import BrokerOrderState
from ordermesh.contract.wire import OrderType, TimeInForce
from tests.brokers.binance.test_adapter import make_adapter, place
from tools.binance_server import BinanceServer

D = Decimal
LIMIT = OrderType.LIMIT


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    s = BinanceServer()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def count(server: BinanceServer, method: str, path: str, since: int) -> int:
    return sum(1 for m, p in server.requests[since:] if (m, p) == (method, path))


async def test_working_orders_are_polled_by_symbol_and_fills_come_from_the_account_trades(
    server: BinanceServer,
) -> None:
    a = make_adapter(server, heartbeat_interval_s=0)
    try:
        await a.connect()
        orders = [await a.place_order(place(n, qty="0.1", order_type=LIMIT, limit="49000")) for n in range(5)]
        assert len(await a.poll_working()) == 5  # each working order reported once
        mark = len(server.requests)
        assert await a.poll_working() == []  # nothing changed: one openOrders request, no trades, no order queries
        assert server.requests[mark:] == [("GET", "openOrders")]
        resting = sorted(server.open_orders(), key=lambda o: o.order_id)
        t1 = server.fill(resting[0].order_id, D("0.04"))
        t2 = server.fill(resting[3].order_id, D("0.1"))
        mark = len(server.requests)
        updates = {u.client_order_id: u for u in await a.poll_working()}
        # five working orders cost one openOrders, one myTrades and one order query (the one that left the book)
        assert sorted(server.requests[mark:]) == [("GET", "myTrades"), ("GET", "openOrders"), ("GET", "order")]
        partial, filled = updates[orders[0].client_order_id], updates[orders[3].client_order_id]
        assert (partial.state, [(f.fill_id, f.quantity) for f in partial.fills]) == (
            BrokerOrderState.PARTIALLY_FILLED, [(str(t1.id), D("0.04"))],
        )  # fmt: skip
        assert (filled.state, [(f.fill_id, f.quantity, f.commission) for f in filled.fills]) == (
            BrokerOrderState.FILLED, [(str(t2.id), D("0.1"), D("0.0001"))],
        )  # fmt: skip
        assert len(updates) == 2
        assert await a.poll_working() == []  # each fill once
    finally:
        await a.close()


async def test_restart_reconciles_recent_trades_so_a_finished_order_is_answered_not_placed_again(
    server: BinanceServer,
) -> None:
    before = make_adapter(server, heartbeat_interval_s=0)
    try:
        await before.connect()
        market = await before.place_order(place(1, qty="0.01"))  # filled at once
        resting = await before.place_order(place(2, qty="0.1", order_type=LIMIT, limit="49000"))
    finally:
        await before.close()
    (open_order,) = server.open_orders()
    late = server.fill(open_order.order_id, D("0.1"))  # fills while no gateway runs
    after = make_adapter(server, symbols=["BTC/USDT"], heartbeat_interval_s=0)
    try:
        await after.connect()
        mark = len(server.requests)
        again = await after.place_order(place(1, qty="0.01"))  # e.g. the command delivered again
        assert count(server, "POST", "order", mark) == 0  # found by the reconciliation: never placed twice
        assert (again.broker_order_id, again.state, again.fills) == (
            market.broker_order_id, BrokerOrderState.FILLED, market.fills,
        )  # fmt: skip
        status = await after.get_order_status(resting.client_order_id)
        assert (status.state, [f.fill_id for f in status.fills]) == (BrokerOrderState.FILLED, [str(late.id)])
        # finished before we looked: their reports were published by whoever placed them; nothing is re-emitted
        assert await after.poll_working() == []
        # unless the gateway resumes them (it remembered the order as working): then it is reported again
        await after.resume([place(2, qty="0.1", order_type=LIMIT, limit="49000")])
        (update,) = await after.poll_working()
        assert (update.client_order_id, update.state) == (resting.client_order_id, BrokerOrderState.FILLED)
    finally:
        await after.close()


async def test_resume_finds_an_order_that_finished_without_trades(server: BinanceServer) -> None:
    """An IOC that expired unfilled leaves no trade to reconcile by; Binance would accept its client order id
    again. A redelivered command is resumed (looked up) first, so it is answered, not placed a second time."""
    cmd = place(3, qty="0.1", order_type=LIMIT, limit="40000", tif=TimeInForce.IOC)
    before = make_adapter(server, heartbeat_interval_s=0)
    try:
        first = await before.place_order(cmd)
        assert first.state is BrokerOrderState.EXPIRED
    finally:
        await before.close()
    after = make_adapter(server, symbols=["BTC/USDT"], heartbeat_interval_s=0)
    try:
        await after.connect()
        await after.resume([cmd])
        mark = len(server.requests)
        again = await after.place_order(cmd)
        assert count(server, "POST", "order", mark) == 0
        assert (again.broker_order_id, again.state) == (first.broker_order_id, BrokerOrderState.EXPIRED)
    finally:
        await after.close()


async def test_resume_of_an_order_that_never_reached_binance_places_it(server: BinanceServer) -> None:
    cmd = place(4, qty="0.01")
    a = make_adapter(server, heartbeat_interval_s=0)
    try:
        await a.connect()
        await a.resume([cmd])
        order = await a.place_order(cmd)
        assert order.state is BrokerOrderState.FILLED
        assert server.count_requests("POST", "order") == 1
    finally:
        await a.close()


async def test_trades_of_orders_that_are_not_ours_are_looked_up_once(server: BinanceServer) -> None:
    a = make_adapter(server, symbols=["BTC/USDT"], heartbeat_interval_s=0)
    try:
        await a.connect()
        mine = await a.place_order(place(5, qty="0.1", order_type=LIMIT, limit="49000"))
        await a.poll_working()
        # an order someone else placed on the account (the web UI, another tool): not an om- client order id
        foreign = server.new_order({
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.1", "price": "48000",
            "timeInForce": "GTC", "newClientOrderId": "web_123",
        })  # fmt: skip
        server.fill(int(foreign["orderId"]), D("0.02"))
        server.fill(int(mine.broker_order_id), D("0.05"))
        mark = len(server.requests)
        (update,) = await a.poll_working()  # the foreign order is never reported
        assert update.client_order_id == mine.client_order_id and update.filled_qty == D("0.05")
        assert count(server, "GET", "order", mark) == 1  # the foreign order looked up to learn it is not ours
        server.fill(int(foreign["orderId"]), D("0.02"))
        server.fill(int(mine.broker_order_id), D("0.01"))
        mark = len(server.requests)
        (update,) = await a.poll_working()
        assert update.filled_qty == D("0.06") and count(server, "GET", "order", mark) == 0
    finally:
        await a.close()
