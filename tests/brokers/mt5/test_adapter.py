"""The MT5 adapter against the bridge simulator over real ZeroMQ sockets on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from ordermesh.brokers.model import (
    BrokerConnectionError,
    BrokerOrderState,
    InsufficientFundsError,
    ModificationError,
    OrderError,
    OrderNotFoundError,
    SymbolNotFoundError,
)
from ordermesh.brokers.mt5.adapter import MT5Adapter
from ordermesh.brokers.mt5.protocol import num, retcode_error
from ordermesh.brokers.mt5.tickets import MemoryTicketStore
from ordermesh.contract.wire import OrderType, Side
from tests.mt5util import adapter_for, free_ports, place, sim_for
from tools.mt5sim.engine import Account, dumps, int32
from tools.mt5sim.server import BridgeSimulator, Ports

D = Decimal


@pytest.fixture
def ports() -> Ports:
    return Ports(*free_ports())


@pytest.fixture
def account() -> Account:
    return Account(seed=1)


@pytest.fixture
async def sim(account: Account, ports: Ports) -> AsyncIterator[BridgeSimulator]:
    s = sim_for(account, ports)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def mt5(sim: BridgeSimulator, ports: Ports) -> AsyncIterator[MT5Adapter]:
    a = adapter_for(ports)
    await a.connect()
    yield a
    await a.close()


def freeze(account: Account) -> None:
    """Stop the simulated market moving so prices asserted are the ones set."""
    account.rng.seed(0)
    account.step = lambda: []  # type: ignore[method-assign]


async def test_market_buy_fills_with_deal_ticket_and_exact_money(
    mt5: MT5Adapter, account: Account, sim: BridgeSimulator
) -> None:
    freeze(account)
    account.set_price("EURUSD", D("1.08495"), D("1.08505"))
    order = await mt5.place_order(place(1, qty="0.30"))
    assert order.state is BrokerOrderState.FILLED
    assert (order.quantity, order.filled_qty) == (D("0.3"), D("0.3"))
    deal = account.deals[-1]
    assert order.broker_order_id == str(int32(deal.order))
    assert [(f.fill_id, f.quantity, f.price) for f in order.fills] == [(str(deal.ticket), D("0.3"), D("1.08505"))]
    assert deal.ticket != deal.order  # deal ticket (the fill id) and order ticket are distinct
    positions = await mt5.get_positions()
    assert [(p.symbol, p.quantity, p.avg_price, p.position_id) for p in positions] == [
        ("EURUSD", D("0.3"), D("1.08505"), str(deal.order))
    ]
    balance = await mt5.get_balance()
    assert balance.balance == D("99998.95")  # 100000 - 0.30 lots x 3.50 commission
    assert balance.margin_used == D("325.5")  # 0.30 x 100000 EUR / 100 = 300 EUR at the mid 1.08500
    assert balance.equity == D("99995.95")  # marked at the bid: 0.30 x 100000 x -0.00010 = -3 USD
    assert balance.currency == "USD"
    # idempotent on the client order id: the same command again is the same order, no second deal
    again = await mt5.place_order(place(1, qty="0.30"))
    assert again.fills == order.fills and len(account.deals) == 1


async def test_hundred_concurrent_orders_get_their_own_replies(ports: Ports) -> None:
    account = Account(seed=1)
    sim = sim_for(account, ports)
    await sim.start()
    mt5 = adapter_for(ports)
    await mt5.connect()
    try:
        cmds = [place(i, Side.BUY if i % 3 else Side.SELL, f"0.{(i % 9) + 1:02d}") for i in range(100)]
        results = await asyncio.gather(*(mt5.place_order(c) for c in cmds))
    finally:
        await mt5.close()
        await sim.stop()
    assert len({r.broker_order_id for r in results}) == 100
    by_order = {str(int32(d.order)): d for d in account.deals}
    assert len(by_order) == len(account.deals) == 100  # one deal per order (a netting flip is one in/out deal)
    for cmd, r in zip(cmds, results, strict=True):
        deal = by_order[r.broker_order_id]
        assert (r.client_order_id, r.side, r.quantity, r.state) == (
            cmd.client_order_id, cmd.side, cmd.quantity, BrokerOrderState.FILLED)  # fmt: skip
        assert (deal.volume, deal.buy) == (cmd.quantity, cmd.side is Side.BUY)
        assert [(f.fill_id, f.quantity, f.price) for f in r.fills] == [(str(deal.ticket), deal.volume, deal.price)]


@pytest.mark.parametrize(
    ("retcode", "error", "name"),
    [
        (10019, InsufficientFundsError, "TRADE_RETCODE_NO_MONEY"),
        (10013, OrderError, "TRADE_RETCODE_INVALID"),
        (10014, OrderError, "TRADE_RETCODE_INVALID_VOLUME"),
        (10015, OrderError, "TRADE_RETCODE_INVALID_PRICE"),
        (10016, OrderError, "TRADE_RETCODE_INVALID_STOPS"),
        (10022, OrderError, "TRADE_RETCODE_INVALID_EXPIRATION"),
        (10030, OrderError, "TRADE_RETCODE_INVALID_FILL"),
        (10035, OrderError, "TRADE_RETCODE_INVALID_ORDER"),
        (10038, OrderError, "TRADE_RETCODE_INVALID_CLOSE_VOLUME"),
        (10017, OrderError, "TRADE_RETCODE_TRADE_DISABLED"),
        (10018, OrderError, "TRADE_RETCODE_MARKET_CLOSED"),
    ],
)
async def test_refusing_retcodes(mt5: MT5Adapter, account: Account, retcode: int, error: type, name: str) -> None:
    account.inject.append(retcode)
    with pytest.raises(error) as info:
        await mt5.place_order(place(f"r{retcode}"))
    assert type(info.value) is error and info.value.message.startswith(name) and info.value.code == str(retcode)
    assert account.deals == []


async def test_real_refusals_from_mt5_semantics(mt5: MT5Adapter, account: Account) -> None:
    with pytest.raises(OrderError, match="INVALID_VOLUME"):
        await mt5.place_order(place("v", qty="0.015"))
    account.market_closed.add("EURUSD")
    with pytest.raises(OrderError, match="MARKET_CLOSED"):
        await mt5.place_order(place("c"))
    account.market_closed.clear()
    with pytest.raises(InsufficientFundsError):
        await mt5.place_order(place("m", qty="99.00"))  # 99 lots need ~107k USD margin at 1:100
    with pytest.raises(SymbolNotFoundError):  # the EA pushes an error before the reply: replies stay in step
        await mt5.place_order(place("s", symbol="NOPE"))
    ok = await mt5.place_order(place("after"))
    assert ok.state is BrokerOrderState.FILLED and len(account.deals) == 1


async def test_requote_retried_once_then_refused(mt5: MT5Adapter, account: Account) -> None:
    account.inject.append(10004)
    assert (await mt5.place_order(place("q1"))).state is BrokerOrderState.FILLED
    account.inject += [10020, 10021]
    with pytest.raises(OrderError, match="PRICE_OFF"):
        await mt5.place_order(place("q2"))
    account.inject += [10024, 10024]
    assert (await mt5.place_order(place("q3"))).state is BrokerOrderState.FILLED
    assert len(account.deals) == 2


async def test_connection_retcode_is_unknown_outcome_resolved_by_status(mt5: MT5Adapter, account: Account) -> None:
    account.inject.append(10031)
    cmd = place("u")
    with pytest.raises(BrokerConnectionError):
        await mt5.place_order(cmd)
    assert mt5.records[cmd.client_order_id].state == "unknown"
    with pytest.raises(OrderNotFoundError):  # nothing of it at MT5: it never got there
        await mt5.get_order_status(cmd.client_order_id)
    order = await mt5.place_order(cmd)  # the redelivered command places it now, once
    assert order.state is BrokerOrderState.FILLED and len(account.deals) == 1


async def test_simulator_stopped_mid_order_then_resolved(ports: Ports) -> None:
    account = Account(seed=2)
    sim = sim_for(account, ports)
    await sim.start()
    mt5 = adapter_for(ports, timeout=0.3)
    await mt5.connect()
    try:
        sim.drop_replies = 1  # executes the TRADE, then dies before answering
        cmd = place("mid", qty="0.20")
        with pytest.raises(BrokerConnectionError):
            await mt5.place_order(cmd)
        await sim.stop()
        assert not await mt5.validate_connection()
        sim = sim_for(account, ports)  # the terminal comes back with its account
        await sim.start()
        order = await mt5.get_order_status(cmd.client_order_id)
        assert order.state is BrokerOrderState.FILLED
        assert order.fills[0].fill_id == str(account.deals[0].ticket)
        again = await mt5.place_order(cmd)
        assert again.fills == order.fills and len(account.deals) == 1  # never a second order
    finally:
        await mt5.close()
        await sim.stop()


async def test_gateway_killed_between_send_and_reply_recovers_or_reports(ports: Ports) -> None:
    account = Account(seed=3)
    sim = sim_for(account, ports)
    await sim.start()
    store = MemoryTicketStore()
    first = adapter_for(ports, store=store, timeout=0.3)
    await first.connect()
    try:
        sim.drop_replies = 2
        a, b = place("k1", qty="0.40"), place("k2", qty="0.50")
        for cmd in (a, b):
            with pytest.raises(BrokerConnectionError):
                await first.place_order(cmd)
        await first.close()  # the gateway dies: all it left is the store
        # a manual trade identical to b's makes b ambiguous; a stays unique
        account.handle({"action": "TRADE", "actionType": "ORDER_TYPE_BUY", "symbol": "EURUSD", "volume": "0.50"})
        for rec in await store.load():  # the restarted gateway never heard the trade events
            rec.order = None
            await store.put(rec)
        second = adapter_for(ports, store=store)
        await second.connect()
        try:
            recovered = await second.place_order(a)
            assert recovered.state is BrokerOrderState.FILLED and recovered.filled_qty == D("0.4")
            with pytest.raises(BrokerConnectionError, match="could be it"):
                await second.place_order(b)
            assert len(second.ambiguous[b.client_order_id]) == 2
            assert len(account.deals) == 3  # a, b, the manual one: nothing placed twice
        finally:
            await second.close()
    finally:
        await sim.stop()


async def test_limit_order_lifecycle_and_server_side_fill(mt5: MT5Adapter, account: Account) -> None:
    freeze(account)
    account.set_price("EURUSD", D("1.08495"), D("1.08505"))
    cmd = place("lim", qty="0.20", order_type=OrderType.LIMIT, limit="1.08000")
    order = await mt5.place_order(cmd)
    assert order.state is BrokerOrderState.NEW and order.fills == []
    modified = await mt5.modify_order(cmd.client_order_id, limit_price=D("1.08100"))
    assert modified.limit_price == D("1.08100")
    with pytest.raises(ModificationError):
        await mt5.modify_order(cmd.client_order_id, quantity=D("0.30"))
    account.set_price("EURUSD", D("1.08090"), D("1.08100"))  # the limit is hit on the server: no trade event
    updates = mt5.order_updates()
    filled = await asyncio.wait_for(anext(updates), 5)
    assert filled.state is BrokerOrderState.FILLED
    assert [(f.fill_id, f.quantity, f.price, f.commission) for f in filled.fills] == [
        (str(account.deals[0].ticket), D("0.2"), D("1.081"), D("0.7"))
    ]
    # cancel after the fill: the order's state, not a cancel
    assert (await mt5.cancel_order(cmd.client_order_id)).state is BrokerOrderState.FILLED
    cmd2 = place("lim2", side=Side.SELL, qty="0.10", order_type=OrderType.LIMIT, limit="1.09000")
    await mt5.place_order(cmd2)
    canceled = await mt5.cancel_order(cmd2.client_order_id)
    assert canceled.state is BrokerOrderState.CANCELED and account.orders == {}


async def test_32_bit_tickets_round_trip(ports: Ports) -> None:
    account = Account(ticket_base=2**31 - 1)
    sim = sim_for(account, ports)
    await sim.start()
    mt5 = adapter_for(ports)
    await mt5.connect()
    try:
        freeze(account)
        account.set_price("EURUSD", D("1.08495"), D("1.08505"))
        await mt5.place_order(place("t0", qty="0.10"))  # takes ticket 2**31 - 1
        cmd = place("t1", qty="0.10", order_type=OrderType.LIMIT, limit="1.07000")
        order = await mt5.place_order(cmd)
        assert int(order.broker_order_id) == -(2**31)  # ticket 2**31 as the EA writes it
        assert (await mt5.cancel_order(cmd.client_order_id)).state is BrokerOrderState.CANCELED
    finally:
        await mt5.close()
        await sim.stop()


async def test_book_symbol_info_and_quotes(mt5: MT5Adapter, account: Account) -> None:
    freeze(account)
    account.set_price("EURUSD", D("1.08495"), D("1.08505"))
    book = await mt5.get_order_book("EURUSD", depth=2)
    assert [(b.price, b.size) for b in book.bids] == [(D("1.08495"), D(1)), (D("1.08494"), D(2))]
    assert [(a.price, a.size) for a in book.asks] == [(D("1.08505"), D(1)), (D("1.08506"), D(2))]
    info = await mt5.symbol_info("USDJPY")
    assert info is not None
    assert (info.kind, info.contract_size, info.tick_size, info.min_lot) == ("forex", D(100000), D("0.001"), D("0.01"))
    quotes = mt5.quotes()
    q = await asyncio.wait_for(anext(quotes), 5)
    assert q.symbol == "EURUSD" and q.bid < q.ask
    with pytest.raises(SymbolNotFoundError):
        await mt5.get_order_book("NOPE")


async def test_stock_ea_falls_back(ports: Ports) -> None:
    account = Account(stock=True)
    sim = sim_for(account, ports)
    await sim.start()
    mt5 = adapter_for(ports)
    await mt5.connect()
    try:
        assert await mt5.symbol_info("EURUSD") is None  # ERR_WRONG_ACTION: specs come from config
        quote = await asyncio.wait_for(anext(mt5.quotes()), 5)
        book = await mt5.get_order_book("EURUSD")
        assert len(book.bids) == 1 and book.bids[0].price <= mt5.ticks["EURUSD"].bid + 1 and quote.bid > 0
        order = await mt5.place_order(place("stock"))
        assert order.fills[0].fill_id == f"o{order.broker_order_id}"  # no deal ticket from the stock EA
    finally:
        await mt5.close()
        await sim.stop()


async def test_single_socket_variant_and_hedging_listing(ports: Ports) -> None:
    for single in (True, False):
        p = Ports(*free_ports())
        account = Account(hedging=True, single_socket=single)
        sim = sim_for(account, p, single_socket=single)
        await sim.start()
        mt5 = adapter_for(p, single_socket=single)
        await mt5.connect()
        try:
            await mt5.place_order(place(f"h1{single}", qty="0.10"))
            await mt5.place_order(place(f"h2{single}", qty="0.20"))
            positions = await mt5.get_positions()
            # the variant lists both; the upstream EA repeats the first, which the adapter drops (and logs)
            assert sorted(p.quantity for p in positions) == ([D("0.1"), D("0.2")] if single else [D("0.1")])
        finally:
            await mt5.close()
            await sim.stop()


async def test_never_sends_an_empty_request(mt5: MT5Adapter) -> None:
    with pytest.raises(ValueError, match="empty"):
        await mt5.request({})
    with pytest.raises(ValueError, match="symbol"):
        await mt5.request({"action": "TRADE", "actionType": "ORDER_TYPE_BUY"}, trade=True)
    assert await mt5.validate_connection()


def test_ea_serialization_and_parsing() -> None:
    assert dumps({"a": D("1.085"), "b": "", "c": 7, "d": [D("0.1")]}) == b'{"a":1.08500,"b":null,"c":7,"d":[0.10000]}'
    assert num(D("0.10000")) == D("0.1") and str(num(D("100000.00000"))) == "100000"
    assert int32(2**31) == -(2**31) and int32(5) == 5
    assert retcode_error(10009) is None
    assert isinstance(retcode_error(10031), BrokerConnectionError)


async def test_restart_reconciliation_emits_a_missed_fill_exactly_once(ports: Ports) -> None:
    account = Account(seed=3)
    freeze(account)
    account.set_price("EURUSD", D("1.08495"), D("1.08505"))
    sim = sim_for(account, ports)
    await sim.start()
    store = MemoryTicketStore()  # what the gateway keeps in KV om_mt5 across its restarts
    try:
        first = adapter_for(ports, store=store)
        await first.connect()
        cmd = place("missed", qty="0.30", order_type=OrderType.LIMIT, limit="1.08000")
        assert (await first.place_order(cmd)).state is BrokerOrderState.NEW
        await first.close()  # the gateway goes away...
        account.set_price("EURUSD", D("1.07990"), D("1.08000"))  # ...and the limit fills at MT5 meanwhile
        assert len(account.deals) == 1
        deal = str(account.deals[0].ticket)

        second = adapter_for(ports, store=store)  # the gateway comes back
        await second.connect()  # reconciles with MT5 before it returns
        updates = second.order_updates()
        missed = await asyncio.wait_for(anext(updates), 5)
        assert (missed.client_order_id, missed.state) == (cmd.client_order_id, BrokerOrderState.FILLED)
        assert [(f.fill_id, f.quantity, f.price) for f in missed.fills] == [(deal, D("0.3"), D("1.08"))]
        await second.reconcile()  # a reconnect of the same process: nothing new to say
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(updates), 0.5)
        await second.close()

        third = adapter_for(ports, store=store)  # and once more: the fill was already reported
        await third.connect()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(third.order_updates()), 0.5)
        assert (await third.get_order_status(cmd.client_order_id)).state is BrokerOrderState.FILLED
        await third.close()
        assert len(account.deals) == 1  # and nothing was ever placed twice
    finally:
        await sim.stop()
