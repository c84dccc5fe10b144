"""Hedging accounts: closing positions by ticket, positions the stock EA's listing hides, and the margin mode
checked against the configuration. The adapter against the bridge simulator over real ZeroMQ."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec
import pytest

from ordermesh.brokers.model import (
    BrokerConnectionError,
    BrokerError,
    BrokerOrderState,
    ModificationError,
    OrderError,
)
from ordermesh.brokers.mt5.adapter import MT5Adapter
from ordermesh.brokers.reports import reports_for
from ordermesh.contract.wire import OrderFilled, PlaceOrder, Side
from ordermesh.platform.config import ConfigError
from tests.harness import eventually
from tests.mt5util import adapter_for, free_ports, place, sim_for
from tools.mt5sim.ctrade import CTrade
from tools.mt5sim.engine import Account, Position
from tools.mt5sim.server import BridgeSimulator, Ports

D = Decimal


class Recorder:
    """The TRADE requests the simulated EA received, in order."""

    def __init__(self, sim: BridgeSimulator) -> None:
        self.trades: list[dict[str, Any]] = []
        handle = sim.ea.request

        def spy(raw: bytes) -> Any:
            req = json.loads(raw)
            if req.get("action") == "TRADE":
                self.trades.append(req)
            return handle(raw)

        sim.ea.request = spy  # type: ignore[method-assign]


@pytest.fixture
def account() -> Account:
    a = Account(hedging=True, seed=1)
    a.step = lambda: []  # type: ignore[method-assign]  # a still market: the prices asserted are the ones set
    a.set_price("EURUSD", D("1.08495"), D("1.08505"))
    return a


@pytest.fixture
def ports() -> Ports:
    return Ports(*free_ports())


@pytest.fixture
async def sim(account: Account, ports: Ports) -> AsyncIterator[BridgeSimulator]:
    s = sim_for(account, ports)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def mt5(sim: BridgeSimulator, ports: Ports) -> AsyncIterator[MT5Adapter]:
    adapter = adapter_for(ports, hedging=True)
    await adapter.connect()
    yield adapter
    await adapter.close()


def close(n: str, position_id: str, side: Side, qty: str) -> PlaceOrder:
    return msgspec.structs.replace(place(n, side=side, qty=qty), reduce_only=True, position_id=position_id)


async def test_close_one_ticket_by_id_and_part_of_the_other(
    mt5: MT5Adapter, account: Account, sim: BridgeSimulator
) -> None:
    spy = Recorder(sim)
    long = await mt5.place_order(place("long", Side.BUY, qty="0.30"))
    short = await mt5.place_order(place("short", Side.SELL, qty="0.20"))
    long_id, short_id = long.broker_order_id, short.broker_order_id
    # MT5 names a position after the order that opened it; the opening fills say so
    assert [f.position_id for f in long.fills] == [long_id] and [f.position_id for f in short.fills] == [short_id]
    assert sorted((p.position_id, p.quantity) for p in account_positions(account)) == sorted(
        [(long_id, D("0.3")), (short_id, D("-0.2"))]
    )

    # the whole long ticket: POSITION_CLOSE_ID with the ticket, no volume (0.30 x 100000 x (1.08595 - 1.08505))
    account.set_price("EURUSD", D("1.08595"), D("1.08605"))
    cmd = close("close-long", long_id, Side.SELL, "0.30")
    closed = await mt5.place_order(cmd)
    req = spy.trades[-1]
    assert (req["actionType"], req["id"], "volume" in req) == ("POSITION_CLOSE_ID", int(long_id), False)
    deal = account.deals[-1]
    assert closed.state is BrokerOrderState.FILLED and closed.filled_qty == D("0.3")
    assert [(f.fill_id, f.quantity, f.price, f.position_id) for f in closed.fills] == [
        (f"o{deal.order}", D("0.3"), D("1.08595"), long_id)
    ]
    assert (deal.entry, deal.volume, deal.profit, str(deal.position_id)) == (1, D("0.3"), D("27.00"), long_id)
    fills = [e for e in reports_for(cmd, closed) if isinstance(e, OrderFilled)]
    assert [(f.client_order_id, f.fill_id, f.side, f.last_qty, f.leaves_qty, f.position_id) for f in fills] == [
        (cmd.client_order_id, f"o{deal.order}", Side.SELL, D("0.3"), D(0), long_id)
    ]
    assert [(p.position_id, p.quantity) for p in await mt5.get_positions()] == [(short_id, D("-0.2"))]

    # part of the short ticket: POSITION_PARTIAL with the volume
    part = await mt5.place_order(close("part-short", short_id, Side.BUY, "0.05"))
    req = spy.trades[-1]
    assert (req["actionType"], req["id"], D(str(req["volume"]))) == ("POSITION_PARTIAL", int(short_id), D("0.05"))
    assert part.state is BrokerOrderState.FILLED
    assert [(f.quantity, f.price, f.position_id) for f in part.fills] == [(D("0.05"), D("1.08605"), short_id)]
    assert account.deals[-1].profit == D("-5.50")  # 0.05 x 100000 x (1.08495 - 1.08605)
    assert [(p.position_id, p.quantity, p.avg_price) for p in await mt5.get_positions()] == [
        (short_id, D("-0.15"), D("1.08495"))
    ]

    # the rest of the short by id; the account is flat
    rest = await mt5.place_order(close("rest-short", short_id, Side.BUY, "0.15"))
    assert spy.trades[-1]["actionType"] == "POSITION_CLOSE_ID"
    assert (rest.state, rest.filled_qty) == (BrokerOrderState.FILLED, D("0.15"))
    assert account.positions == {} and await mt5.get_positions() == []
    assert account.deals[-1].profit == D("-16.50")
    # 100000 - 3.5 x (0.3 + 0.2 + 0.3 + 0.05 + 0.15) commission + 27 - 5.50 - 16.50 realized
    assert account.balance == D("100001.50")


async def test_a_ticket_hidden_by_the_upstream_listing_is_closed_with_its_volume(
    mt5: MT5Adapter, account: Account, sim: BridgeSimulator
) -> None:
    spy = Recorder(sim)
    first = await mt5.place_order(place("a", Side.BUY, qty="0.10"))
    second = await mt5.place_order(place("b", Side.BUY, qty="0.20"))
    # the stock EA lists the symbol's first position twice: the second ticket is not in the listing, what it
    # holds is (counted from HISTORY)
    assert [(p.position_id, p.quantity) for p in await mt5.get_positions()] == [
        (first.broker_order_id, D("0.1")),
        (None, D("0.2")),
    ]
    done = await mt5.place_order(close("close-b", second.broker_order_id, Side.SELL, "0.20"))
    req = spy.trades[-1]
    assert (req["actionType"], req["id"], D(str(req["volume"]))) == (
        "POSITION_PARTIAL",
        int(second.broker_order_id),
        D("0.2"),
    )
    assert (done.state, done.filled_qty, done.fills[0].position_id) == (
        BrokerOrderState.FILLED,
        D("0.2"),
        second.broker_order_id,
    )
    assert [(str(p.identifier), p.volume) for p in account.positions.values()] == [(first.broker_order_id, D("0.1"))]


async def test_closing_a_ticket_the_wrong_way_or_an_unknown_ticket_is_refused(
    mt5: MT5Adapter, account: Account
) -> None:
    long = await mt5.place_order(place("l", Side.BUY, qty="0.10"))
    with pytest.raises(OrderError, match="does not close it"):
        await mt5.place_order(close("wrong-side", long.broker_order_id, Side.BUY, "0.10"))
    with pytest.raises(OrderError, match="no open EURUSD position 424242"):  # neither listed nor hidden: not sent
        await mt5.place_order(close("unknown", "424242", Side.SELL, "0.10"))
    with pytest.raises(OrderError, match="not an MT5 position ticket"):
        await mt5.place_order(close("bad-id", "pos-1", Side.SELL, "0.10"))
    # a close larger than the ticket closes the ticket and no more (a ticket never flips)
    bigger = await mt5.place_order(close("bigger", long.broker_order_id, Side.SELL, "0.50"))
    assert (bigger.state, bigger.filled_qty) == (BrokerOrderState.CANCELED, D("0.1"))
    assert account.positions == {}


def account_positions(account: Account) -> list[Any]:
    class View(msgspec.Struct):
        position_id: str
        quantity: Decimal

    return [View(str(p.identifier), p.volume if p.buy else -p.volume) for p in account.positions.values()]


async def test_positions_the_listing_hides_are_counted_from_history(mt5: MT5Adapter, account: Account) -> None:
    """The stock EA lists each of a symbol's positions as its lowest ticket: three EURUSD tickets show as one,
    three times. What the two hidden ones hold is the symbol's net over every deal less the listed ticket."""
    first = await mt5.place_order(place("a", Side.BUY, qty="0.10"))
    await mt5.place_order(place("b", Side.BUY, qty="0.30"))
    await mt5.place_order(place("c", Side.SELL, qty="0.05"))
    trader = CTrade(account)  # someone trades in the terminal too: another symbol, opened and partly closed
    assert trader.position_open("GBPUSD", "ORDER_TYPE_SELL", D("0.2"), D(0), D(0), D(0), "manual")
    gbp = next(p for p in account.positions.values() if p.symbol == "GBPUSD")
    assert trader.position_close_partial(gbp.ticket, D("0.05"))
    held = await mt5.get_positions()
    assert sorted((p.symbol, p.position_id or "", p.quantity) for p in held) == sorted(
        [
            ("EURUSD", first.broker_order_id, D("0.1")),
            ("EURUSD", "", D("0.25")),
            ("GBPUSD", str(gbp.ticket), D("-0.15")),
        ]
    )
    net = {s: sum(p.quantity for p in held if p.symbol == s) for s in ("EURUSD", "GBPUSD")}
    assert net == {
        s: sum((p.volume if p.buy else -p.volume) for p in account.positions.values() if p.symbol == s)
        for s in ("EURUSD", "GBPUSD")
    }


async def test_a_history_that_does_not_add_up_is_an_error_not_a_guess(mt5: MT5Adapter, account: Account) -> None:
    """Hidden tickets are counted from HISTORY only when it adds up wherever nothing is hidden."""
    await mt5.place_order(place("x", Side.BUY, qty="0.10"))
    await mt5.place_order(place("y", Side.BUY, qty="0.20"))
    # a position whose deals the terminal no longer has (an archived history)
    account.positions[999] = Position(999, 999, "USDJPY", True, D("0.1"), D("151.37"), D(0), D(0), 0, "")
    with pytest.raises(BrokerError, match="USDJPY"):
        await mt5.get_positions()


async def test_positions_are_read_again_when_something_traded_meanwhile(
    mt5: MT5Adapter, account: Account, sim: BridgeSimulator
) -> None:
    await mt5.place_order(place("p", Side.BUY, qty="0.10"))
    await mt5.place_order(place("q", Side.BUY, qty="0.20"))
    handle, done = sim.ea.request, []

    def trade_after_history(raw: bytes) -> Any:  # a manual trade lands right after the first HISTORY read
        out = handle(raw)
        if json.loads(raw).get("actionType") == "TRADES" and not done:
            done.append(CTrade(account).position_open("EURUSD", "ORDER_TYPE_BUY", D("0.4"), D(0), D(0), D(0), ""))
        return out

    sim.ea.request = trade_after_history  # type: ignore[method-assign]
    held = await mt5.get_positions()
    assert done == [True]
    assert sum(p.quantity for p in held) == D("0.7") and len(account.positions) == 3


async def test_the_stop_loss_of_a_hidden_ticket_is_changed_by_ticket(mt5: MT5Adapter, account: Account) -> None:
    await mt5.place_order(place("s1", Side.BUY, qty="0.10"))
    cmd = msgspec.structs.replace(place("s2", Side.BUY, qty="0.20"), take_profit=D("1.09500"))
    second = await mt5.place_order(cmd)
    await mt5.modify_order(cmd.client_order_id, stop_loss=D("1.07500"))
    pos = account.positions[int(second.broker_order_id)]
    assert (pos.sl, pos.tp) == (D("1.075"), D("1.095"))  # the take-profit it had is sent along


@pytest.mark.parametrize("configured", [False, True], ids=["netting-configured", "hedging-configured"])
async def test_a_margin_mode_the_account_contradicts_is_refused_at_connect(ports: Ports, configured: bool) -> None:
    """The stock EA's ACCOUNT has no margin mode: what the listings prove is used. Two positions of one symbol
    prove hedging; a deal that reversed a position (DEAL_ENTRY_INOUT) proves netting."""
    account = Account(hedging=not configured, seed=1)
    trader = CTrade(account)
    assert trader.position_open("EURUSD", "ORDER_TYPE_BUY", D("0.1"), D(0), D(0), D(0), "")
    assert trader.position_open("EURUSD", "ORDER_TYPE_SELL", D("0.3"), D(0), D(0), D(0), "")
    sim = sim_for(account, ports)
    await sim.start()
    mt5 = adapter_for(ports, hedging=configured)
    try:
        expected = "the MT5 account is netting .*INOUT" if configured else "the MT5 account is hedging .*POSITIONS"
        with pytest.raises(ConfigError, match=expected):
            await mt5.connect()
    finally:
        await mt5.close()
        await sim.stop()


async def test_an_account_margin_mode_field_is_believed(ports: Ports) -> None:
    """An EA that adds ``margin_mode`` to ACCOUNT is believed even on a fresh account; one that says nothing
    about a fresh account is not refused."""
    for says, configured, refused in ((True, False, True), (True, True, False), (False, False, False)):
        p = Ports(*free_ports())
        sim = BridgeSimulator(Account(hedging=True), p, tick_interval_ms=20, margin_mode=says)
        await sim.start()
        mt5 = adapter_for(p, hedging=configured)
        try:
            if refused:
                with pytest.raises(ConfigError, match="ACCOUNT_MARGIN_MODE_RETAIL_HEDGING"):
                    await mt5.connect()
            else:
                await mt5.connect()
                assert mt5.margin_checked and mt5.refused is None
        finally:
            await mt5.close()
            await sim.stop()


async def test_a_contradiction_seen_while_running_refuses_further_orders(ports: Ports) -> None:
    account = Account(hedging=True, seed=1)
    sim = sim_for(account, ports)
    await sim.start()
    mt5 = adapter_for(ports, hedging=False)  # a fresh account proves nothing at connect
    await mt5.connect()
    try:
        await mt5.place_order(place("n1", Side.BUY, qty="0.10"))
        await mt5.place_order(place("n2", Side.BUY, qty="0.10"))  # a netting account would hold one position
        await mt5.get_positions()
        with pytest.raises(OrderError, match="the MT5 account is hedging"):
            await mt5.place_order(place("n3", Side.BUY, qty="0.10"))
        assert len(account.positions) == 2
    finally:
        await mt5.close()
        await sim.stop()


BEYOND = 2**32 + 7  # every ticket beyond the EA's 32-bit ids: a TRADE reply's ``order`` is only its low 32 bits


def int32(ticket: int) -> int:
    """The EA's ``(int)`` cast of a ticket (OrderDoneOrError, TradingModule's ``int idNimber``)."""
    return (ticket + 2**31) % 2**32 - 2**31


class Wide(NamedTuple):
    mt5: MT5Adapter
    account: Account
    spy: Recorder
    sim: BridgeSimulator


@pytest.fixture
async def wide(ports: Ports) -> AsyncIterator[Wide]:
    """A hedging account whose tickets are all above 2^32, the adapter on it and a spy on the TRADEs sent."""
    account = Account(hedging=True, seed=1, ticket_base=BEYOND)
    account.step = lambda: []  # type: ignore[method-assign]
    account.set_price("EURUSD", D("1.08495"), D("1.08505"))
    sim = sim_for(account, ports)
    await sim.start()
    spy = Recorder(sim)
    adapter = adapter_for(ports, hedging=True)
    await adapter.connect()
    try:
        yield Wide(adapter, account, spy, sim)
    finally:
        await adapter.close()
        await sim.stop()


async def test_a_fill_names_the_full_ticket_mt5_lists_not_the_replys_32_bit_cut(wide: Wide) -> None:
    """The TRADE reply says ``(int)`` of the ticket; the fill (and the ticket record) names the position's full
    64-bit ticket, read from POSITIONS before the fill is reported. The stock EA cannot address that ticket
    (TradingModule reads ``id`` through ``int``): a close or SL/TP change naming it, by the full ticket or by
    the reply's cut, is refused before anything is sent, never sent to the ticket the cut names."""
    mt5, account, spy, _sim = wide
    opened = await mt5.place_order(place("wide-a", Side.BUY, qty="0.10"))
    (pos,) = account.positions.values()
    assert pos.identifier >= 2**32 and opened.broker_order_id == str(int32(pos.identifier))  # the reply's cut
    assert [f.position_id for f in opened.fills] == [str(pos.identifier)]
    rec = mt5.records[opened.client_order_id]
    assert (rec.position_id, rec.position_full) == (pos.identifier, True)
    assert [p.position_id for p in await mt5.get_positions()] == [str(pos.identifier)]
    again = await mt5.place_order(place("wide-a", Side.BUY, qty="0.10"))  # delivered again: the same answer
    assert again.fills == opened.fills and len(spy.trades) == 1

    for named in (str(pos.identifier), str(int32(pos.identifier))):
        with pytest.raises(OrderError, match="32-bit"):
            await mt5.place_order(close(f"wide-close-{named}", named, Side.SELL, "0.10"))
    with pytest.raises(ModificationError, match="32-bit"):
        await mt5.modify_order(opened.client_order_id, stop_loss=D("1.07500"))
    assert len(spy.trades) == 1 and (pos.volume, pos.sl) == (D("0.1"), D(0))


async def test_a_hidden_ticket_beyond_32_bits_is_never_addressed_by_its_cut(wide: Wide) -> None:
    """A symbol's second ticket is hidden by the stock EA's hedging listing (it repeats the lowest ticket), so its
    full ticket cannot be read: its fill keeps the reply's value. The hidden tickets are above the listed one;
    a cut at or below it is not a ticket that is open: close and SL/TP change are refused, nothing is sent (they
    used to be sent by the cut, which names another ticket)."""
    mt5, account, spy, _sim = wide
    first = await mt5.place_order(place("wide-1", Side.BUY, qty="0.10"))
    second = await mt5.place_order(place("wide-2", Side.BUY, qty="0.20"))
    low, high = sorted(account.positions)
    assert [f.position_id for f in first.fills] == [str(low)]
    assert [f.position_id for f in second.fills] == [str(int32(high))]  # no listing shows the full ticket
    assert not mt5.records[second.client_order_id].position_full
    with pytest.raises(OrderError, match="32-bit"):
        await mt5.place_order(close("wide-close-2", str(int32(high)), Side.SELL, "0.20"))
    with pytest.raises(ModificationError, match="32-bit"):
        await mt5.modify_order(second.client_order_id, stop_loss=D("1.07500"))
    assert len(spy.trades) == 2  # the two buys, nothing else
    assert [(p.volume, p.sl) for p in account.positions.values()] == [(D("0.1"), D(0)), (D("0.2"), D(0))]


async def test_the_full_ticket_is_read_when_a_trade_event_or_a_late_reply_reports_the_fill(wide: Wide) -> None:
    """The fill is reported from the trade event (reply lost) or from the late reply (resynchronisation) too:
    each names the full ticket."""
    mt5, account, _spy, sim = wide
    updates: dict[str, list[str | None]] = {}

    async def follow() -> None:
        async for order in mt5.order_updates():
            if order.fills:
                updates.setdefault(order.client_order_id, [f.position_id for f in order.fills])

    task = asyncio.ensure_future(follow())
    try:
        sim.drop_replies = 1  # the trade event tells the outcome
        lost = place("wide-lost", Side.BUY, qty="0.10")
        with contextlib.suppress(BrokerConnectionError):
            await mt5.place_order(lost)
        sim.drop_events = 1  # only the late reply tells the outcome
        sim.delay_next("TRADE", 0.8)  # past the 0.5 s timeout
        late = place("wide-late", Side.SELL, qty="0.10", symbol="GBPUSD")
        with pytest.raises(BrokerConnectionError):
            await mt5.place_order(late)
        await mt5.get_balance()  # the next request's resynchronisation brings the late reply

        async def both() -> bool:
            return {lost.client_order_id, late.client_order_id} <= set(updates)

        await eventually(both, 10, "both fills reported")
        full = {p.symbol: str(p.identifier) for p in account.positions.values()}
        assert updates[lost.client_order_id] == [full["EURUSD"]]
        assert updates[late.client_order_id] == [full["GBPUSD"]]
        assert all(int(t) >= 2**32 for t in full.values())
    finally:
        task.cancel()


async def test_netting_with_tickets_beyond_32_bits_is_unchanged(ports: Ports) -> None:
    """Netting: a close is an opposite market deal (no ticket addressed), so it works at any ticket size; no
    POSITIONS read is added to a fill."""
    account = Account(hedging=False, seed=1, ticket_base=BEYOND)
    account.step = lambda: []  # type: ignore[method-assign]
    account.set_price("EURUSD", D("1.08495"), D("1.08505"))
    sim = sim_for(account, ports)
    await sim.start()
    seen: list[str] = []
    handle = sim.ea.request

    def spy(raw: bytes) -> Any:
        seen.append(str(json.loads(raw).get("action")))
        return handle(raw)

    sim.ea.request = spy  # type: ignore[method-assign]
    mt5 = adapter_for(ports, hedging=False, heartbeat_interval_s=60)
    await mt5.connect()
    try:
        seen.clear()
        opened = await mt5.place_order(place("net-a", Side.BUY, qty="0.30"))
        assert [a for a in seen if a in ("TRADE", "POSITIONS")] == ["TRADE"]
        assert opened.state is BrokerOrderState.FILLED
        (pos,) = account.positions.values()
        assert pos.identifier >= 2**32
        part = await mt5.place_order(close("net-part", opened.fills[0].position_id or "", Side.SELL, "0.10"))
        assert (part.state, part.fills[0].position_id) == (BrokerOrderState.FILLED, str(pos.identifier))
        (held,) = await mt5.get_positions()
        assert (held.position_id, held.quantity) == (str(pos.identifier), D("0.2"))
        rest = await mt5.place_order(close("net-rest", held.position_id or "", Side.SELL, "0.20"))
        assert rest.state is BrokerOrderState.FILLED and account.positions == {}
    finally:
        await mt5.close()
        await sim.stop()
