"""The paper venue's KV store on a real nats-server: one writer at a time (an active gateway and its standby
share the bucket; the one that took over claims it, and the other can no longer save)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ordermesh.brokers.paper.store import KvPaperStore, StoreTakenError
from ordermesh.brokers.registry import BrokerRegistry
from ordermesh.contract.subjects import KV_PAPER
from ordermesh.contract.wire import OrderType, PlaceOrder, Side
from ordermesh.platform.bus import Bus


def _order(coid: str) -> PlaceOrder:
    return PlaceOrder(
        command_id=f"cmd-{coid}", client_order_id=coid, intent_id=f"i-{coid}", strategy_id="s1", account="paper-1",
        broker_id="paper", symbol="EURUSD", side=Side.BUY, order_type=OrderType.MARKET, quantity=Decimal("0.10"),
    )  # fmt: skip


async def test_a_venue_whose_store_another_claimed_can_no_longer_save(bus: Bus) -> None:
    kv = await bus.kv(KV_PAPER)
    old = BrokerRegistry({"paper": {"type": "paper"}}).adapter("paper")
    old.use_state_store(kv)
    await old.connect()
    await old.place_order(_order("before"))
    # the standby takes over: it loads what the old one saved and claims the store
    new = BrokerRegistry({"paper": {"type": "paper"}}).adapter("paper")
    new.use_state_store(kv)
    await new.connect()
    assert (await new.get_order_status("before")).filled_qty == Decimal("0.10")
    # the old one (paused past its lease, say) wakes up: whatever it does now is never stored
    with pytest.raises(StoreTakenError):
        await old.place_order(_order("late"))
    # the new one places it, once, and its store is the one of record
    placed = await new.place_order(_order("late"))
    assert placed.filled_qty == Decimal("0.10")
    again = KvPaperStore(kv, "paper")
    tickets, orders = await again.load()
    assert tickets is not None and len(orders) == 2


async def test_a_store_that_changed_since_it_was_loaded_cannot_be_claimed(bus: Bus) -> None:
    kv = await bus.kv(KV_PAPER)
    a, b = KvPaperStore(kv, "paper"), KvPaperStore(kv, "paper")
    await a.claim(b"t0")
    await a.load()
    await b.load()
    await a.save(b"t1", {})
    with pytest.raises(StoreTakenError):
        await b.claim(b"t1")
