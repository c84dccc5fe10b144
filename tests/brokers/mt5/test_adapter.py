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
    SymbolNotFoundError,
)
from ordermesh.brokers.mt5.adapter import MT5Adapter
from ordermesh.brokers.mt5.protocol import num, retcode_error
from ordermesh.brokers.mt5.tickets import MemoryTicketStore
from ordermesh.brokers.mt5.transport import EALink
from ordermesh.contract.wire import OrderType, Side
from tests.harness import eventually
from tests.mt5util import adapter_for, free_ports, place, sim_for
from tools.mt5sim.ctrade import CTrade
from tools.mt5sim.engine import Account
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


def int32(ticket: int) -> int:
    """The EA's ``(int)`` cast of a ticket."""
    return (ticket + 2**31) % 2**32 - 2**31


def trades(account: Account) -> list:  # the account's buy/sell deals (its history starts with the deposit)
    return [d for d in account.deals if d.symbol]


def freeze(account: Account) -> None:
    """Stop the simulated market moving so prices asserted are the ones set."""
    account.rng.seed(0)
    account.step = lambda: []  # type: ignore[method-assign]


async def test_market_buy_fills_with_order_ticket_and_exact_money(
    mt5: MT5Adapter, account: Account, sim: BridgeSimulator
) -> None:
    freeze(account)
    account.set_price("EURUSD", D("1.08495"), D("1.08505"))
    order = await mt5.place_order(place(1, qty="0.30"))
    assert order.state is BrokerOrderState.FILLED
    assert (order.quantity, order.filled_qty) == (D("0.3"), D("0.3"))
    (deal,) = trades(account)
    assert order.broker_order_id == str(int32(deal.order))
    # the stock EA returns no deal ticket: the single deal of a market order is named after its order
    assert [(f.fill_id, f.quantity, f.price) for f in order.fills] == [(f"o{deal.order}", D("0.3"), D("1.08505"))]
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
    assert again.fills == order.fills and len(trades(account)) == 1


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
    by_order = {str(int32(d.order)): d for d in trades(account)}
    assert len(by_order) == len(trades(account)) == 100  # one deal per order (a netting flip is one in/out deal)
    for cmd, r in zip(cmds, results, strict=True):
        deal = by_order[r.broker_order_id]
        assert (r.client_order_id, r.side, r.quantity, r.state) == (
            cmd.client_order_id, cmd.side, cmd.quantity, BrokerOrderState.FILLED)  # fmt: skip
        assert (deal.volume, deal.type) == (cmd.quantity, cmd.side.value)
        assert [(f.fill_id, f.quantity, f.price) for f in r.fills] == [(f"o{deal.order}", deal.volume, deal.price)]


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
    assert trades(account) == []


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
    assert ok.state is BrokerOrderState.FILLED and len(trades(account)) == 1


async def test_requote_retried_once_then_refused(mt5: MT5Adapter, account: Account) -> None:
    account.inject.append(10004)
    assert (await mt5.place_order(place("q1"))).state is BrokerOrderState.FILLED
    account.inject += [10020, 10021]
    with pytest.raises(OrderError, match="PRICE_OFF"):
        await mt5.place_order(place("q2"))
    account.inject += [10024, 10024]
    assert (await mt5.place_order(place("q3"))).state is BrokerOrderState.FILLED
    assert len(trades(account)) == 2


async def test_connection_retcode_is_unknown_outcome_never_sent_again(mt5: MT5Adapter, account: Account) -> None:
    account.inject.append(10031)
    cmd = place("u")
    mt5.match_window_s = 1  # 10031 may still execute at the trade server for this long
    with pytest.raises(BrokerConnectionError):
        await mt5.place_order(cmd)
    assert mt5.records[cmd.client_order_id].state == "unknown"

    async def rejected() -> bool:
        try:
            return (await mt5.get_order_status(cmd.client_order_id)).state is BrokerOrderState.REJECTED
        except BrokerConnectionError:
            return False

    await eventually(rejected, 10, "settled as not executed")
    again = await mt5.place_order(cmd)  # the command delivered again is the same, rejected order
    assert again.state is BrokerOrderState.REJECTED and "not executed" in (again.reason or "")
    assert trades(account) == []


async def test_simulator_stopped_mid_order_then_resolved(ports: Ports) -> None:
    account = Account(seed=2)
    sim = sim_for(account, ports)
    await sim.start()
    mt5 = adapter_for(ports, timeout=0.3)
    await mt5.connect()
    try:
        sim.drop_replies, sim.drop_events = 1, 1  # executes the TRADE, then dies before answering
        cmd = place("mid", qty="0.20")
        with pytest.raises(BrokerConnectionError):
            await mt5.place_order(cmd)
        await sim.stop()
        assert not await mt5.validate_connection()
        sim = sim_for(account, ports)  # the terminal comes back with its account
        await sim.start()

        async def filled() -> bool:
            try:
                return (await mt5.get_order_status(cmd.client_order_id)).state is BrokerOrderState.FILLED
            except BrokerConnectionError:
                return False

        await eventually(filled, 10, "settled from HISTORY")
        order = await mt5.get_order_status(cmd.client_order_id)
        assert order.fills[0].fill_id == str(trades(account)[0].ticket)
        again = await mt5.place_order(cmd)
        assert again.fills == order.fills and len(trades(account)) == 1  # never a second order
    finally:
        await mt5.close()
        await sim.stop()


async def test_gateway_killed_between_send_and_reply_settles_or_reports(ports: Ports) -> None:
    account = Account(seed=3)
    sim = sim_for(account, ports)
    await sim.start()
    store = MemoryTicketStore()
    first = adapter_for(ports, store=store, timeout=0.3)
    await first.connect()
    try:
        sim.drop_replies, sim.drop_events = 2, 2
        a, b = place("k1", qty="0.40"), place("k2", qty="0.50")
        for cmd in (a, b):
            with pytest.raises(BrokerConnectionError):
                await first.place_order(cmd)
        await first.close()  # the gateway dies: all it left is the store
        # a manual trade identical to b's makes b ambiguous; a stays unique
        assert CTrade(account).position_open("EURUSD", "ORDER_TYPE_BUY", D("0.5"), D(0), D(0), D(0), "manual")
        second = adapter_for(ports, store=store)
        await second.connect()
        try:

            async def settled_a() -> bool:
                try:
                    return (await second.place_order(a)).state is BrokerOrderState.FILLED
                except BrokerConnectionError:
                    return False

            await eventually(settled_a, 10, "a settled from HISTORY")
            assert (await second.place_order(a)).filled_qty == D("0.4")
            with pytest.raises(BrokerConnectionError, match="not known yet"):
                await second.place_order(b)
            assert len(second.ambiguous[b.client_order_id]) == 2
            assert second.unresolved()[b.client_order_id]
            assert len(trades(account)) == 3  # a, b, the manual one: nothing placed twice
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
    # the deal from HISTORY (the stock EA lists no commission)
    assert [(f.fill_id, f.quantity, f.price) for f in filled.fills] == [
        (str(trades(account)[0].ticket), D("0.2"), D("1.081"))
    ]
    # cancel after the fill: the order's state, not a cancel
    assert (await mt5.cancel_order(cmd.client_order_id)).state is BrokerOrderState.FILLED
    cmd2 = place("lim2", side=Side.SELL, qty="0.10", order_type=OrderType.LIMIT, limit="1.09000")
    await mt5.place_order(cmd2)
    canceled = await mt5.cancel_order(cmd2.client_order_id)
    assert canceled.state is BrokerOrderState.CANCELED and account.orders == {}


async def test_32_bit_tickets_round_trip(ports: Ports) -> None:
    account = Account(ticket_base=2**31 - 3)
    sim = sim_for(account, ports)
    await sim.start()
    mt5 = adapter_for(ports)
    await mt5.connect()
    try:
        freeze(account)
        account.set_price("EURUSD", D("1.08495"), D("1.08505"))
        low = place("t0", qty="0.10", order_type=OrderType.LIMIT, limit="1.07000")
        assert (await mt5.place_order(low)).broker_order_id == str(2**31 - 3)
        cmd = place("t1", qty="0.10", order_type=OrderType.LIMIT, limit="1.07000")
        await mt5.place_order(place("t-", qty="0.10"))  # takes 2**31 - 2 ... and its deal
        order = await mt5.place_order(cmd)
        assert int(order.broker_order_id) < 2**31  # as the EA writes it (the cast keeps it or makes it negative)
        assert (await mt5.cancel_order(low.client_order_id)).state is BrokerOrderState.CANCELED
    finally:
        await mt5.close()
        await sim.stop()


async def test_book_symbol_info_and_quotes_with_the_extensions(ports: Ports) -> None:
    account = Account(seed=1)
    freeze(account)
    account.set_price("EURUSD", D("1.08495"), D("1.08505"))
    sim = BridgeSimulator(account, ports, tick_interval_ms=20, symbolinfo="extension", book=True)
    await sim.start()
    mt5 = adapter_for(ports)
    await mt5.connect()
    try:
        book = await mt5.get_order_book("EURUSD", depth=2)
        assert (book.bids[0].price, book.bids[0].size) == (D("1.08495"), D(1))
        info = await mt5.symbol_info("USDJPY")
        assert info is not None
        assert (info.kind, info.contract_size, info.tick_size, info.min_lot) == (
            "forex", D(100000), D("0.001"), D("0.01"))  # fmt: skip
        step = iter(range(1, 1000))

        async def quoted() -> bool:  # the EA streams a tick when the price changes (the first one is skipped)
            n = D(next(step)).scaleb(-5)
            account.set_price("EURUSD", D("1.08495") + n, D("1.08505") + n)
            return not mt5._quotes.empty()

        await eventually(quoted, 5, "a quote")
        q = await anext(mt5.quotes())
        assert q.symbol == "EURUSD" and q.bid < q.ask
        with pytest.raises(SymbolNotFoundError):
            await mt5.get_order_book("NOPE")
    finally:
        await mt5.close()
        await sim.stop()


async def test_ejtrader_symbol_info_shape(ports: Ports) -> None:
    sim = BridgeSimulator(Account(seed=1), ports, tick_interval_ms=20, symbolinfo="ejtrader")
    await sim.start()
    mt5 = adapter_for(ports)
    await mt5.connect()
    try:
        info = await mt5.symbol_info("EURUSD")
        assert info is not None and info.contract_size == D(100000) and info.tick_size == D("0.00001")
    finally:
        await mt5.close()
        await sim.stop()


async def test_stock_ea_falls_back(mt5: MT5Adapter, account: Account) -> None:
    assert await mt5.symbol_info("EURUSD") is None  # ERR_WRONG_ACTION: specs come from the instruments file
    assert await mt5.instruments() == {}
    quote = await asyncio.wait_for(anext(mt5.quotes()), 5)
    book = await mt5.get_order_book("EURUSD")  # no BOOK in the stock EA: one level from the last tick
    assert len(book.bids) == 1 and book.bids[0].price == mt5.ticks["EURUSD"].bid and quote.bid > 0


async def test_single_socket_variant_and_hedging_listing(ports: Ports) -> None:
    for single in (True, False):
        p = Ports(*free_ports())
        account = Account(hedging=True)
        sim = sim_for(account, p, single_socket=single)
        await sim.start()
        mt5 = adapter_for(p, single_socket=single, hedging=True)
        await mt5.connect()
        try:
            first = await mt5.place_order(place(f"h1{single}", qty="0.10"))
            second = await mt5.place_order(place(f"h2{single}", qty="0.20"))
            positions = await mt5.get_positions()
            # the variant lists both; the stock EA repeats the lowest ticket: what the hidden one holds is counted
            # from HISTORY (the symbol's net over every deal less the listed ticket), without a ticket
            assert sorted((p.quantity, p.position_id) for p in positions) == [
                (D("0.1"), first.broker_order_id),
                (D("0.2"), second.broker_order_id if single else None),
            ]
        finally:
            await mt5.close()
            await sim.stop()


async def test_never_sends_an_empty_request(mt5: MT5Adapter) -> None:
    with pytest.raises(ValueError, match="empty"):
        await mt5.request({})
    with pytest.raises(ValueError, match="symbol"):
        await mt5.request({"action": "TRADE", "actionType": "ORDER_TYPE_BUY"})
    assert await mt5.validate_connection()
    assert isinstance(mt5.link, EALink)


def test_ea_number_parsing() -> None:
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
        assert len(trades(account)) == 1
        deal = str(trades(account)[0].ticket)

        second = adapter_for(ports, store=store)  # the gateway comes back
        await second.connect()  # reconciles with MT5 before it returns
        updates = second.order_updates()
        missed = await asyncio.wait_for(anext(updates), 5)
        assert (missed.client_order_id, missed.state) == (cmd.client_order_id, BrokerOrderState.FILLED)
        assert [(f.fill_id, f.quantity, f.price) for f in missed.fills] == [(deal, D("0.3"), D("1.08"))]
        await second.poll_working()  # polled again: nothing new to say
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(updates), 0.5)
        await second.close()

        third = adapter_for(ports, store=store)  # and once more: the fill was already reported
        await third.connect()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(third.order_updates()), 0.5)
        assert (await third.get_order_status(cmd.client_order_id)).state is BrokerOrderState.FILLED
        await third.close()
        assert len(trades(account)) == 1  # and nothing was ever placed twice
    finally:
        await sim.stop()
