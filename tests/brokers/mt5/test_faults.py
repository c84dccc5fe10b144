"""The MT5 adapter where money is at stake: lost replies, hangs, timeouts that executed, server-side fills, EA
reloads, late replies, 64-bit tickets. Real ZeroMQ sockets against the simulator of the stock EA; each case ends
with exactly one position at MT5 and every fill reported once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import msgspec
import pytest

from ordermesh.brokers.model import BrokerConnectionError, BrokerError, BrokerOrder, BrokerOrderState, OrderError
from ordermesh.brokers.mt5.adapter import MT5Adapter
from ordermesh.brokers.mt5.tickets import MemoryTicketStore
from ordermesh.contract.wire import OrderType, PlaceOrder, Side
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
    acct = Account(seed=1)
    acct.step = lambda: []  # type: ignore[method-assign]  # prices move only when a test moves them
    acct.set_price("EURUSD", D("1.08495"), D("1.08505"))
    return acct


@pytest.fixture
async def sim(account: Account, ports: Ports) -> AsyncIterator[BridgeSimulator]:
    s = sim_for(account, ports)
    await s.start()
    yield s
    await s.stop()


class Reports:
    """Everything an adapter said about orders: answers and updates (what a gateway would report)."""

    def __init__(self, mt5: MT5Adapter) -> None:
        self.orders: dict[str, BrokerOrder] = {}
        self.fill_ids: dict[str, set[str]] = {}
        self._task = asyncio.ensure_future(self._follow(mt5))

    def add(self, order: BrokerOrder) -> BrokerOrder:
        self.orders[order.client_order_id] = order
        self.fill_ids.setdefault(order.client_order_id, set()).update(f.fill_id for f in order.fills)
        return order

    async def _follow(self, mt5: MT5Adapter) -> None:
        async for order in mt5.order_updates():
            self.add(order)

    def state(self, coid: str) -> BrokerOrderState | None:
        found = self.orders.get(coid)
        return None if found is None else found.state

    async def close(self) -> None:
        self._task.cancel()


@pytest.fixture
async def mt5(sim: BridgeSimulator, ports: Ports) -> AsyncIterator[MT5Adapter]:
    a = adapter_for(ports)
    await a.connect()
    yield a
    await a.close()


def positions_at_mt5(account: Account) -> list[tuple[str, bool, Decimal]]:
    return sorted((p.symbol, p.buy, p.volume) for p in account.positions.values())


def trade_deals(account: Account) -> int:
    return len([d for d in account.deals if d.symbol])


async def settled(mt5: MT5Adapter, reports: Reports, cmd: PlaceOrder, state: BrokerOrderState) -> BrokerOrder:
    async def done() -> bool:
        return reports.state(cmd.client_order_id) is state

    await eventually(done, 10, f"{cmd.client_order_id} {state.value}")
    return reports.orders[cmd.client_order_id]


async def test_lost_reply_with_the_trade_event_is_filled_once(
    mt5: MT5Adapter, sim: BridgeSimulator, account: Account
) -> None:
    reports = Reports(mt5)
    sim.drop_replies = 1
    cmd = place(1, qty="0.30")
    try:  # the event may come before the reply's timeout (the answer is then the event's) or after it
        reports.add(await mt5.place_order(cmd))
    except BrokerConnectionError:
        pass
    order = await settled(mt5, reports, cmd, BrokerOrderState.FILLED)
    assert (order.filled_qty, order.fills[0].price) == (D("0.3"), D("1.08505"))
    again = reports.add(await mt5.place_order(cmd))  # the command delivered again: the same order, nothing sent
    assert again.fills == order.fills
    assert positions_at_mt5(account) == [("EURUSD", True, D("0.3"))] and trade_deals(account) == 1
    assert len(reports.fill_ids[cmd.client_order_id]) == 1
    await reports.close()


async def test_lost_reply_and_lost_event_are_settled_from_history(
    mt5: MT5Adapter, sim: BridgeSimulator, account: Account
) -> None:
    reports = Reports(mt5)
    sim.drop_replies, sim.drop_events = 1, 1
    cmd = place(2, side=Side.SELL, qty="0.20")
    with pytest.raises(BrokerConnectionError):
        await mt5.place_order(cmd)
    order = await settled(mt5, reports, cmd, BrokerOrderState.FILLED)
    deal = next(d for d in account.deals if d.symbol)
    assert [(f.fill_id, f.quantity, f.price) for f in order.fills] == [(str(deal.ticket), D("0.2"), D("1.08495"))]
    reports.add(await mt5.place_order(cmd))
    assert positions_at_mt5(account) == [("EURUSD", False, D("0.2"))] and trade_deals(account) == 1
    assert reports.fill_ids[cmd.client_order_id] == {str(deal.ticket)}
    await reports.close()


async def test_a_lost_request_that_did_not_execute_is_rejected_not_sent_again(
    mt5: MT5Adapter, sim: BridgeSimulator, account: Account
) -> None:
    reports = Reports(mt5)
    account.inject.append(10031)  # no connection to the trade server: nothing executed
    cmd = place(3)
    with pytest.raises(BrokerConnectionError):
        await mt5.place_order(cmd)
    mt5.match_window_s = 1  # 10031 may still execute for this long
    order = await settled(mt5, reports, cmd, BrokerOrderState.REJECTED)
    assert "not executed at MT5" in (order.reason or "")
    assert trade_deals(account) == 0 and account.positions == {}
    await reports.close()


async def test_timeout_10012_that_executed_is_one_position(
    mt5: MT5Adapter, sim: BridgeSimulator, account: Account
) -> None:
    reports = Reports(mt5)
    account.timeout_but_execute = 1
    cmd = place(4, qty="0.10")
    with pytest.raises(BrokerConnectionError):
        await mt5.place_order(cmd)
    again = reports.add(await mt5.place_order(cmd))  # delivered again: settled from HISTORY, never sent again
    assert again.state is BrokerOrderState.FILLED and again.filled_qty == D("0.1")
    order = await settled(mt5, reports, cmd, BrokerOrderState.FILLED)
    assert order.fills == again.fills and len(reports.fill_ids[cmd.client_order_id]) == 1
    assert positions_at_mt5(account) == [("EURUSD", True, D("0.1"))] and trade_deals(account) == 1
    await reports.close()


async def test_ea_hanging_past_the_timeout_then_gateway_restart(ports: Ports, account: Account) -> None:
    sim = sim_for(account, ports)
    await sim.start()
    store = MemoryTicketStore()
    first = adapter_for(ports, store=store, timeout=0.3)
    await first.connect()
    cmd = place(5, qty="0.40")
    try:
        sim.delay_next("TRADE", 1.5)  # the EA is busy in OrderSend for 1.5 s: the gateway gives up at 0.3 s
        with pytest.raises(BrokerConnectionError):
            await first.place_order(cmd)
        await first.close()  # and dies; all it left is the store
        second = adapter_for(ports, store=store)
        await second.connect()
        reports = Reports(second)
        try:
            with pytest.raises(BrokerConnectionError):
                await second.place_order(cmd)  # redelivered at once: settled from MT5, never sent again
            order = await settled(second, reports, cmd, BrokerOrderState.FILLED)
            assert order.filled_qty == D("0.4")
            assert positions_at_mt5(account) == [("EURUSD", True, D("0.4"))] and trade_deals(account) == 1
            assert len(reports.fill_ids[cmd.client_order_id]) == 1
        finally:
            await reports.close()
            await second.close()
    finally:
        await sim.stop()


async def test_a_late_reply_is_never_the_next_requests_answer(
    sim: BridgeSimulator, ports: Ports, account: Account
) -> None:
    mt5 = adapter_for(ports, heartbeat_interval_s=60)  # no heartbeat in between: the next request is ours
    await mt5.connect()
    try:
        assert await mt5.get_positions() == []
        sim.delay_next("POSITIONS", 0.8)  # the EA hangs in this request past the 0.5 s timeout
        with pytest.raises(BrokerConnectionError):
            await mt5.get_positions()  # answered "no positions", 0.3 s too late
        trader = CTrade(account)  # meanwhile someone trades in the terminal
        for symbol in ("EURUSD", "GBPUSD"):
            assert trader.position_open(symbol, "ORDER_TYPE_BUY", D("0.1"), D(0), D(0), D(0), "manual")
        held = await mt5.get_positions()  # must be this request's answer, not the late "no positions"
        assert sorted((p.symbol, p.quantity) for p in held) == [("EURUSD", D("0.1")), ("GBPUSD", D("0.1"))]
        assert (await mt5.get_balance()).balance > 0
    finally:
        await mt5.close()


async def test_an_error_before_positions_is_not_an_empty_listing(
    mt5: MT5Adapter, sim: BridgeSimulator, account: Account
) -> None:
    await mt5.place_order(place(8, qty="0.10"))
    sim.errors_before("POSITIONS", 5040, "GetPositions")
    with pytest.raises(BrokerError, match="5040"):
        await mt5.get_positions()
    held = await mt5.get_positions()  # the listing after it is this request's own
    assert [(p.symbol, p.quantity) for p in held] == [("EURUSD", D("0.1"))]


async def test_pending_order_filled_on_the_server_while_running(
    mt5: MT5Adapter, sim: BridgeSimulator, account: Account
) -> None:
    reports = Reports(mt5)
    cmd = place(9, qty="0.25", order_type=OrderType.LIMIT, limit="1.08000")
    assert reports.add(await mt5.place_order(cmd)).state is BrokerOrderState.NEW
    account.set_price("EURUSD", D("1.07990"), D("1.08000"))  # the limit fills at MT5: no trade event
    order = await settled(mt5, reports, cmd, BrokerOrderState.FILLED)
    deal = next(d for d in account.deals if d.symbol)
    assert [(f.fill_id, f.quantity, f.price) for f in order.fills] == [(str(deal.ticket), D("0.25"), D("1.08"))]
    assert positions_at_mt5(account) == [("EURUSD", True, D("0.25"))]
    await reports.close()


async def test_pending_order_filled_while_the_gateway_was_down(ports: Ports, account: Account) -> None:
    sim = sim_for(account, ports)
    await sim.start()
    store = MemoryTicketStore()
    first = adapter_for(ports, store=store)
    await first.connect()
    cmd = place(10, side=Side.SELL, qty="0.25", order_type=OrderType.LIMIT, limit="1.09000")
    try:
        await first.place_order(cmd)
        await first.close()
        account.set_price("EURUSD", D("1.09000"), D("1.09010"))  # filled while nobody watches
        second = adapter_for(ports, store=store)
        await second.connect()
        reports = Reports(second)
        try:
            order = await settled(second, reports, cmd, BrokerOrderState.FILLED)
            assert order.filled_qty == D("0.25") and len(order.fills) == 1
            assert positions_at_mt5(account) == [("EURUSD", False, D("0.25"))]
        finally:
            await reports.close()
            await second.close()
    finally:
        await sim.stop()


async def test_pending_answered_done_is_still_working(ports: Ports) -> None:
    account = Account(seed=1, pending_retcode=10009)  # some trade servers answer a placed order with DONE
    sim = sim_for(account, ports)
    await sim.start()
    mt5 = adapter_for(ports)
    await mt5.connect()
    try:
        order = await mt5.place_order(place(11, qty="0.10", order_type=OrderType.LIMIT, limit="1.00000"))
        assert order.state is BrokerOrderState.NEW and order.fills == []
        await mt5.poll_working()
        assert mt5.records[order.client_order_id].state == "NEW"
    finally:
        await mt5.close()
        await sim.stop()


async def first_quote(mt5: MT5Adapter, timeout: float = 5.0) -> None:
    await asyncio.wait_for(anext(mt5.quotes()), timeout)


async def test_twenty_gateway_starts_all_receive_quotes(sim: BridgeSimulator, ports: Ports, account: Account) -> None:
    account.step = Account.step.__get__(account)  # type: ignore[method-assign]  # a moving market again
    for _ in range(20):
        mt5 = adapter_for(ports)
        await mt5.connect()
        try:
            await first_quote(mt5)
        finally:
            await mt5.close()


async def test_ticks_are_subscribed_again_after_an_ea_reload(
    sim: BridgeSimulator, ports: Ports, account: Account
) -> None:
    account.step = Account.step.__get__(account)  # type: ignore[method-assign]
    mt5 = adapter_for(ports)
    await mt5.connect()
    try:
        await first_quote(mt5)
        await sim.reload()
        while not mt5._quotes.empty():
            mt5._quotes.get_nowait()
        await first_quote(mt5, 10)
    finally:
        await mt5.close()


async def test_tickets_above_2_31_match_and_are_never_misaddressed(ports: Ports) -> None:
    account = Account(seed=1, ticket_base=2**32 + 7)
    account.step = lambda: []  # type: ignore[method-assign]
    account.set_price("EURUSD", D("1.08495"), D("1.08505"))
    sim = sim_for(account, ports)
    await sim.start()
    mt5 = adapter_for(ports)
    await mt5.connect()
    reports = Reports(mt5)
    try:
        market = reports.add(await mt5.place_order(place(12, qty="0.10")))
        (pos,) = await mt5.get_positions()
        assert int(pos.position_id or 0) >= 2**32 and market.fills[0].position_id is not None
        cmd = place(13, qty="0.20", order_type=OrderType.LIMIT, limit="1.08000")
        reports.add(await mt5.place_order(cmd))
        await mt5.poll_working()
        assert mt5.records[cmd.client_order_id].state == "NEW"  # found in ORDERS by its 64-bit id
        assert mt5.records[cmd.client_order_id].order == next(iter(account.orders))
        with pytest.raises(OrderError, match="32-bit"):
            await mt5.cancel_order(cmd.client_order_id)  # the EA would address another ticket
        assert len(account.orders) == 1
        account.set_price("EURUSD", D("1.07990"), D("1.08000"))
        order = await settled(mt5, reports, cmd, BrokerOrderState.FILLED)
        assert order.filled_qty == D("0.2")
    finally:
        await reports.close()
        await mt5.close()
        await sim.stop()


async def test_modifying_a_pending_order_keeps_its_stop_loss_and_take_profit(mt5: MT5Adapter, account: Account) -> None:
    cmd = place(14, qty="0.10", order_type=OrderType.LIMIT, limit="1.08000")
    cmd = msgspec.structs.replace(cmd, stop_loss=D("1.07000"), take_profit=D("1.09000"))
    await mt5.place_order(cmd)
    await mt5.modify_order(cmd.client_order_id, limit_price=D("1.08100"))
    (order,) = account.orders.values()
    assert (order.price, order.sl, order.tp) == (D("1.081"), D("1.07"), D("1.09"))
    await mt5.modify_order(cmd.client_order_id, take_profit=D("1.09500"))
    assert (order.price, order.sl, order.tp) == (D("1.081"), D("1.07"), D("1.095"))


async def test_a_positions_stop_loss_and_take_profit_can_be_changed(mt5: MT5Adapter, account: Account) -> None:
    cmd = place(15, qty="0.10")
    await mt5.place_order(cmd)
    await mt5.modify_order(cmd.client_order_id, stop_loss=D("1.07500"))
    (pos,) = account.positions.values()
    assert (pos.sl, pos.tp) == (D("1.075"), D(0))
    await mt5.modify_order(cmd.client_order_id, take_profit=D("1.09500"))
    assert (pos.sl, pos.tp) == (D("1.075"), D("1.095"))


async def test_netting_partial_close_and_close_after_a_reversal(mt5: MT5Adapter, account: Account) -> None:
    opened = await mt5.place_order(place(16, qty="0.30"))
    pid = opened.fills[0].position_id
    close = place(17, side=Side.SELL, qty="0.10")
    part = await mt5.place_order(msgspec.structs.replace(close, position_id=pid))
    assert part.state is BrokerOrderState.FILLED
    assert positions_at_mt5(account) == [("EURUSD", True, D("0.2"))]
    await mt5.place_order(place(18, side=Side.SELL, qty="0.50"))  # reverses the netting position
    assert positions_at_mt5(account) == [("EURUSD", False, D("0.3"))]
    (held,) = await mt5.get_positions()
    back = place(19, side=Side.BUY, qty="0.30")
    done = await mt5.place_order(msgspec.structs.replace(back, position_id=held.position_id))
    assert done.state is BrokerOrderState.FILLED and account.positions == {}
    too_much = place(20, side=Side.BUY, qty="0.10")
    with pytest.raises(OrderError, match="nothing"):
        await mt5.place_order(msgspec.structs.replace(too_much, position_id=held.position_id))


async def test_single_socket_lost_reply_is_settled_not_resent(ports: Ports, account: Account) -> None:
    sim = sim_for(account, ports, single_socket=True)
    await sim.start()
    mt5 = adapter_for(ports, single_socket=True)
    await mt5.connect()
    reports = Reports(mt5)
    try:
        sim.drop_replies = 1
        cmd = place(21, qty="0.10")
        with pytest.raises(BrokerConnectionError):
            await mt5.place_order(cmd)
        order = await settled(mt5, reports, cmd, BrokerOrderState.FILLED)
        assert order.filled_qty == D("0.1")
        reports.add(await mt5.place_order(cmd))
        assert positions_at_mt5(account) == [("EURUSD", True, D("0.1"))] and trade_deals(account) == 1
        assert len(reports.fill_ids[cmd.client_order_id]) == 1
    finally:
        await reports.close()
        await mt5.close()
        await sim.stop()


async def test_a_late_trade_reply_settles_its_own_order_not_the_next(
    mt5: MT5Adapter, sim: BridgeSimulator, account: Account
) -> None:
    reports = Reports(mt5)
    sim.drop_events = 1  # only the late reply can tell what became of the first order
    sim.delay_next("TRADE", 0.8)  # past the 0.5 s timeout
    first, second = place(22, qty="0.30"), place(23, side=Side.SELL, qty="0.10")
    with pytest.raises(BrokerConnectionError):
        await mt5.place_order(first)
    # the next order waits for the resynchronisation, which brings the first order's reply with it
    after = reports.add(await mt5.place_order(second))
    assert (after.state, after.filled_qty, after.side) == (BrokerOrderState.FILLED, D("0.1"), Side.SELL)
    order = await settled(mt5, reports, first, BrokerOrderState.FILLED)
    assert order.filled_qty == D("0.3") and order.fills[0].fill_id.startswith("o")  # from the reply itself
    assert trade_deals(account) == 2 and positions_at_mt5(account) == [("EURUSD", True, D("0.2"))]
    await reports.close()


def fill_ids(reports: Reports, coid: str) -> list[str]:
    return sorted(reports.fill_ids.get(coid, set()))


@pytest.mark.parametrize("hedging", [False, True], ids=["netting", "hedging"])
async def test_partial_fills_of_a_working_pending_order_are_reported_once(ports: Ports, hedging: bool) -> None:
    """The server fills part of a pending order and the rest keeps working: ORDERS still shows it, unchanged
    (ORDER_VOLUME_INITIAL). Each partial deal is reported as a partial fill once, then the rest."""
    account = Account(seed=1, hedging=hedging)
    account.step = lambda: []  # type: ignore[method-assign]
    account.set_price("EURUSD", D("1.08495"), D("1.08505"))
    sim = sim_for(account, ports)
    await sim.start()
    mt5 = adapter_for(ports, hedging=hedging)
    await mt5.connect()
    reports = Reports(mt5)
    cmd = place("part", qty="0.30", order_type=OrderType.LIMIT, limit="1.08000")
    try:
        reports.add(await mt5.place_order(cmd))
        (ticket,) = account.orders
        first = account.fill_partly(ticket, "0.10")
        order = await settled(mt5, reports, cmd, BrokerOrderState.PARTIALLY_FILLED)
        assert [(f.fill_id, f.quantity, f.price) for f in order.fills] == [(str(first.ticket), D("0.1"), D("1.08"))]
        second = account.fill_partly(ticket, "0.05")

        async def two() -> bool:
            return len(reports.orders[cmd.client_order_id].fills) == 2

        await eventually(two, 10, "the second partial fill")
        assert reports.state(cmd.client_order_id) is BrokerOrderState.PARTIALLY_FILLED
        account.set_price("EURUSD", D("1.07990"), D("1.08000"))  # the rest
        order = await settled(mt5, reports, cmd, BrokerOrderState.FILLED)
        rest = account.deals[-1]
        assert [(f.fill_id, f.quantity) for f in order.fills] == [
            (str(first.ticket), D("0.1")),
            (str(second.ticket), D("0.05")),
            (str(rest.ticket), D("0.15")),
        ]
        assert fill_ids(reports, cmd.client_order_id) == sorted(str(d.ticket) for d in (first, second, rest))
        assert positions_at_mt5(account) == [("EURUSD", True, D("0.3"))]
    finally:
        await reports.close()
        await mt5.close()
        await sim.stop()


async def test_partial_fills_while_the_gateway_was_down_are_reported_once(ports: Ports, account: Account) -> None:
    sim = sim_for(account, ports)
    await sim.start()
    store = MemoryTicketStore()
    cmd = place("down", side=Side.SELL, qty="0.30", order_type=OrderType.LIMIT, limit="1.09000")
    try:
        first = adapter_for(ports, store=store)
        await first.connect()
        await first.place_order(cmd)
        await first.close()
        (ticket,) = account.orders
        part = account.fill_partly(ticket, "0.10")  # while nobody watches
        second = adapter_for(ports, store=store)
        await second.connect()
        reports = Reports(second)
        try:
            order = await settled(second, reports, cmd, BrokerOrderState.PARTIALLY_FILLED)
            assert [(f.fill_id, f.quantity, f.price) for f in order.fills] == [(str(part.ticket), D("0.1"), D("1.09"))]
            assert account.orders  # still working
        finally:
            await reports.close()
            await second.close()
        account.set_price("EURUSD", D("1.09000"), D("1.09010"))  # the rest fills, down again
        third = adapter_for(ports, store=store)
        await third.connect()
        reports = Reports(third)
        try:
            await third.resume([cmd])  # the gateway had not reported the partial fill either: handed over again
            order = await settled(third, reports, cmd, BrokerOrderState.FILLED)
            assert [f.quantity for f in order.fills] == [D("0.1"), D("0.2")]
            assert len(reports.fill_ids[cmd.client_order_id]) == 2
            assert positions_at_mt5(account) == [("EURUSD", False, D("0.3"))]
        finally:
            await reports.close()
            await third.close()
    finally:
        await sim.stop()


async def test_a_late_reply_brought_while_settling_is_one_fill_not_two(
    sim: BridgeSimulator, ports: Ports, account: Account
) -> None:
    """The command is delivered again while the EA is still busy with it: settling it reads HISTORY, whose request
    first resynchronises the link, which brings the late reply and fills the order. The deal HISTORY then shows
    is that same fill, not a second one."""
    mt5 = adapter_for(ports, heartbeat_interval_s=60)  # no heartbeat request in between: the next one is ours
    await mt5.connect()
    try:
        sim.drop_events = 1
        sim.delay_next("TRADE", 0.8)  # past the 0.5 s timeout, answered while the settling waits for the EA
        cmd = place("late-settle", qty="0.30")
        with pytest.raises(BrokerConnectionError):
            await mt5.place_order(cmd)
        order = await mt5.place_order(cmd)  # delivered again at once
        assert (order.state, order.filled_qty, len(order.fills)) == (BrokerOrderState.FILLED, D("0.3"), 1)
        assert mt5.records[cmd.client_order_id].filled == D("0.3")
        assert positions_at_mt5(account) == [("EURUSD", True, D("0.3"))] and trade_deals(account) == 1
    finally:
        await mt5.close()


async def test_a_lost_reply_next_to_a_same_size_order_is_still_settled(
    mt5: MT5Adapter, sim: BridgeSimulator, account: Account
) -> None:
    """Two market orders of the same symbol, side and volume at the same price, the second one's reply and event
    lost: HISTORY has two deals either order could own. The first one's fill (named after its order, its deal not
    linked yet) needs one of them; the other is the second order's, so it is filled, not rejected."""
    reports = Reports(mt5)
    first = reports.add(await mt5.place_order(place("same-1", qty="0.10")))
    assert first.state is BrokerOrderState.FILLED and first.fills[0].fill_id.startswith("o")
    sim.drop_replies, sim.drop_events = 1, 1
    cmd = place("same-2", qty="0.10")
    with pytest.raises(BrokerConnectionError):
        await mt5.place_order(cmd)
    order = await settled(mt5, reports, cmd, BrokerOrderState.FILLED)
    deals = {str(d.ticket) for d in account.deals if d.symbol}
    assert order.filled_qty == D("0.1") and {f.fill_id for f in order.fills} <= deals
    assert trade_deals(account) == 2 and positions_at_mt5(account) == [("EURUSD", True, D("0.2"))]
    await reports.close()
