"""Hedging accounts: closing positions by ticket, positions the stock EA's listing hides, and the margin mode
checked against the configuration. The adapter against the bridge simulator over real ZeroMQ."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from ordermesh.brokers.model import BrokerError, BrokerOrderState, OrderError
from ordermesh.brokers.mt5.adapter import MT5Adapter
from ordermesh.brokers.reports import reports_for
from ordermesh.contract.wire import OrderFilled, PlaceOrder, Side
from ordermesh.platform.config import ConfigError
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
    with pytest.raises(OrderError, match="before reaching the server"):  # CTrade finds no such ticket
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
