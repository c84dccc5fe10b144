"""What the MT5 adapter keeps stays bounded: ticket records are pruned once their orders are final and no open
order could be offered their deals, a command whose record is gone is never sent again, and HISTORY TRADES is read
only when something needs it, once per heartbeat, from the earliest time an open order could claim a deal.
Real ZeroMQ sockets against the simulator of the stock EA."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from ordermesh.brokers.model import BrokerFill, BrokerOrderState, OrderError
from ordermesh.brokers.mt5.adapter import MT5Adapter
from ordermesh.brokers.mt5.tickets import KvTicketStore, MemoryTicketStore, TicketRecord
from ordermesh.contract.subjects import KV_MT5
from ordermesh.contract.wire import OrderType, Side
from ordermesh.platform.bus import Bus
from tests.harness import eventually
from tests.mt5util import adapter_for, free_ports, place, sim_for
from tools.mt5sim.ctrade import CTrade
from tools.mt5sim.engine import Account
from tools.mt5sim.server import BridgeSimulator, Ports

D = Decimal


class Requests:
    """Every request the simulated EA handled, in order."""

    def __init__(self, sim: BridgeSimulator) -> None:
        self.seen: list[dict[str, Any]] = []
        handle = sim.ea.request

        def spy(raw: bytes) -> Any:
            self.seen.append(json.loads(raw))
            return handle(raw)

        sim.ea.request = spy  # type: ignore[method-assign]

    def count(self, action: str, kind: str | None = None) -> int:
        return len([r for r in self.seen if r["action"] == action and (kind is None or r.get("actionType") == kind)])

    def history_per_beat(self) -> list[int]:
        """HISTORY TRADES requests between consecutive ACCOUNT requests (each heartbeat starts with ACCOUNT)."""
        out = [0]
        for r in self.seen:
            if r["action"] == "ACCOUNT":
                out.append(0)
            elif r["action"] == "HISTORY" and r.get("actionType") == "TRADES":
                out[-1] += 1
        return out


@pytest.fixture
def ports() -> Ports:
    return Ports(*free_ports())


@pytest.fixture
def account() -> Account:
    acct = Account(seed=1)
    acct.step = lambda: []  # type: ignore[method-assign]
    acct.set_price("EURUSD", D("1.08495"), D("1.08505"))
    return acct


@pytest.fixture
async def sim(account: Account, ports: Ports) -> AsyncIterator[BridgeSimulator]:
    s = sim_for(account, ports)
    await s.start()
    yield s
    await s.stop()


async def beats(requests: Requests, n: int) -> None:
    """Wait for ``n`` more heartbeats (ACCOUNT requests) to have been handled."""
    target = requests.count("ACCOUNT") + n

    async def done() -> bool:
        return requests.count("ACCOUNT") >= target

    await eventually(done, 10, f"{n} heartbeats")


def age(mt5: MT5Adapter, seconds: int) -> None:
    """Let ``seconds`` pass for the records as they are (sent and done that much earlier)."""
    for rec in mt5.records.values():
        rec.sent_s -= seconds
        if rec.done_s is not None:
            rec.done_s -= seconds


async def test_final_records_are_pruned_and_a_late_redelivery_is_never_sent(
    sim: BridgeSimulator, ports: Ports, account: Account
) -> None:
    store = MemoryTicketStore()
    mt5 = adapter_for(ports, store=store, keep_final_s=1, server_utc_offset_s=7200)
    await mt5.connect()
    try:
        done = [place(f"m{i}", qty="0.10") for i in range(3)]
        for cmd in done:
            assert (await mt5.place_order(cmd)).state is BrokerOrderState.FILLED
        age(mt5, 60)
        limit = place("rest", qty="0.10", order_type=OrderType.LIMIT, limit="1.08000")
        assert (await mt5.place_order(limit)).state is BrokerOrderState.NEW
        later = place("later", side=Side.SELL, qty="0.10")
        await mt5.place_order(later)

        async def pruned() -> bool:
            return not any(c.client_order_id in mt5.records for c in done)

        await eventually(pruned, 10, "the records of orders done before any open order was sent pruned")
        requests = Requests(sim)
        await beats(requests, 5)
        # the working limit could still be offered the deal of the order done after it was sent: that one stays
        assert set(mt5.records) == {limit.client_order_id, later.client_order_id}
        assert set(store.records) == set(mt5.records)
        account.set_price("EURUSD", D("1.07990"), D("1.08000"))  # the limit fills: nothing open any more

        async def filled() -> bool:
            return mt5.records[limit.client_order_id].state == "FILLED"

        await eventually(filled, 10, "the limit filled")
        age(mt5, 60)

        async def empty() -> bool:
            return not mt5.records and not store.records

        await eventually(empty, 10, "every record pruned")
        # the first command delivered again after its record is gone: too old to tell, never placed again
        old = msgspec.structs.replace(done[0], ts_ns=time.time_ns() - 60 * 10**9)
        with pytest.raises(OrderError, match="may have been placed before"):
            await mt5.place_order(old)
        assert len([d for d in account.deals if d.symbol]) == 5
    finally:
        await mt5.close()


async def test_records_loaded_at_start_wait_for_the_gateway_to_resume(
    sim: BridgeSimulator, ports: Ports, account: Account
) -> None:
    """A final order the gateway had not finished reporting (it still remembers the command) is handed over again
    by ``resume``, and not pruned before it."""
    store = MemoryTicketStore()
    first = adapter_for(ports, store=store)
    await first.connect()
    cmd = place("unreported", qty="0.20")
    await first.place_order(cmd)
    age(first, 60)
    await store.put(first.records[cmd.client_order_id])
    await first.close()  # the gateway died before it published the fill
    second = adapter_for(ports, store=store, keep_final_s=30, server_utc_offset_s=7200)
    await second.connect()
    try:
        second.keep_final_s = 1  # (long enough to hold it since the start; past for the record)
        requests = Requests(sim)
        await beats(requests, 3)
        assert cmd.client_order_id in second.records  # held until the gateway says what it still waits on
        second.keep_final_s = 30
        await second.resume([cmd])
        view = await anext(second.order_updates())
        assert (view.client_order_id, view.state, view.filled_qty) == (
            cmd.client_order_id,
            BrokerOrderState.FILLED,
            D("0.2"),
        )
        second.keep_final_s = 1

        async def pruned() -> bool:
            return cmd.client_order_id not in second.records

        await eventually(pruned, 10, "the record pruned once handed over")
    finally:
        await second.close()


async def test_history_is_read_once_per_heartbeat_from_the_earliest_open_order(
    sim: BridgeSimulator, ports: Ports, account: Account
) -> None:
    """Two outcomes unknown at once are settled from one HISTORY read, which asks from the first one's send
    (server clock) on; with nothing open no HISTORY is read at all."""
    trader = CTrade(account)  # both requests did execute; their replies were lost before a restart
    sent = int(time.time()) - 1
    store = MemoryTicketStore()
    for n, side in ((1, "ORDER_TYPE_BUY"), (2, "ORDER_TYPE_SELL")):
        assert trader.position_open("EURUSD", side, D(f"0.{n}"), D(0), D(0), D(0), "")
        side_of = Side.BUY if n == 1 else Side.SELL
        rec = TicketRecord(client_order_id=f"u{n}", symbol="EURUSD", side=side_of, action_type=side,
                           volume=D(f"0.{n}"), sent_s=sent, state="unknown")  # fmt: skip
        await store.put(rec)
    requests = Requests(sim)
    mt5 = adapter_for(ports, store=store, server_utc_offset_s=7200)
    await mt5.connect()
    try:

        async def settled() -> bool:
            return all(r.state == "FILLED" for r in mt5.records.values())

        await eventually(settled, 10, "both unknown outcomes settled")
        await beats(requests, 5)
        per_beat = requests.history_per_beat()
        assert max(per_beat) == 1, per_beat
        trades = [r for r in requests.seen if r.get("actionType") == "TRADES"]
        # the first read checks the margin mode (all of it); the poll's asks from the earliest open order on
        assert trades[0]["fromDate"] == 0 and trades[1]["fromDate"] == sent + 7200 - 5
        assert len(trades) == 2  # nothing open since: no more HISTORY
    finally:
        await mt5.close()


async def test_a_working_pending_order_reads_history_only_when_positions_change(
    sim: BridgeSimulator, ports: Ports, account: Account
) -> None:
    mt5 = adapter_for(ports)
    await mt5.connect()
    try:
        await mt5.place_order(place("w", qty="0.10", order_type=OrderType.LIMIT, limit="1.08000"))
        requests = Requests(sim)
        await beats(requests, 10)
        assert requests.count("HISTORY", "TRADES") <= 1  # (the first look after placing it)
        reads = requests.count("HISTORY", "TRADES")
        CTrade(account).position_open("GBPUSD", "ORDER_TYPE_BUY", D("0.1"), D(0), D(0), D(0), "manual")
        await beats(requests, 3)
        assert requests.count("HISTORY", "TRADES") == reads + 1
    finally:
        await mt5.close()


async def test_pruned_records_leave_nothing_in_kv(bus: Bus) -> None:
    kv = await bus.kv(KV_MT5)
    store = KvTicketStore(kv, "mt5")
    store.MARKERS = 3
    fill = BrokerFill(fill_id="1", quantity=D("0.1"), price=D("1.1"))
    for i in range(5):
        rec = TicketRecord(client_order_id=f"c{i}", symbol="EURUSD", side=Side.BUY, action_type="ORDER_TYPE_BUY",
                           volume=D("0.1"), state="FILLED", fills=[fill])  # fmt: skip
        await store.put(rec)
    for i in range(4):
        await store.delete(f"c{i}")
    assert [r.client_order_id for r in await KvTicketStore(kv, "mt5").load()] == ["c4"]
    status = await kv.status()
    assert status.values == 1  # no value, no purge marker left behind for the pruned ones
