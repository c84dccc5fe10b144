"""The system's invariants, checked from the durable record alone (not from any service's own view).

After a run with faults: every intent has exactly one outcome; no client order id was filled beyond its order
(a second placement would fill again); each fill id appears once; the keeper's positions are the sum of the
fills in OM_EXEC; every order record in KV om_orders is terminal.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
import nats.errors
from nats.js.errors import NoKeysError

from ordermesh.contract.codec import decode_any
from ordermesh.contract.subjects import EXEC, KV_ORDERS
from ordermesh.contract.wire import (
    IntentRejected,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)
from ordermesh.platform.bus import Bus
from ordermesh.routing.orders import OrderRecord
from ordermesh.sdk import OrderMeshClient
from tests.harness import eventually

REFUSALS = (IntentRejected, OrderDenied, OrderRejected, OrderCanceled, OrderExpired)


@dataclass
class Record:
    """What OM_EXEC holds about each intent."""

    fills: dict[str, list[OrderFilled]] = field(default_factory=lambda: defaultdict(list))  # intent -> fills
    refusals: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))  # intent -> refusals
    fill_ids: list[str] = field(default_factory=list)


async def read_exec(bus: Bus) -> Record:
    out = Record()
    last = await bus.stream_last_seq(EXEC)
    for seq in range(1, last + 1):
        msg = await bus.js.get_msg(EXEC, seq)
        event = decode_any(msg.data)
        if isinstance(event, OrderFilled):
            out.fills[event.intent_id].append(event)
            out.fill_ids.append(event.fill_id)
        elif isinstance(event, REFUSALS):
            out.refusals[event.intent_id].append(event)
    return out


def filled(rec: Record, intent_id: str) -> Decimal:
    return sum((f.last_qty for f in rec.fills[intent_id]), Decimal(0))


def net_of(fills: list[OrderFilled]) -> dict[tuple[str, str], Decimal]:
    net: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for f in fills:
        net[(f.account, f.symbol)] += f.last_qty * f.side.sign
    return {k: v for k, v in net.items() if v}


async def check(om: OrderMeshClient, intents: dict[str, Decimal], *, timeout: float = 60.0) -> Record:
    """``intents``: intent id -> ordered quantity (market orders: each fills in full or is refused)."""
    bus = om.bus

    async def settled() -> bool:
        try:
            rec = await read_exec(bus)
        except (TimeoutError, nats.errors.Error):
            return False  # a stream leader being elected: ask again
        return all(
            sum((f.last_qty for f in rec.fills[i]), Decimal(0)) >= q or rec.refusals[i] for i, q in intents.items()
        )

    await eventually(settled, timeout=timeout, what=f"an outcome for each of {len(intents)} intents")
    rec = await read_exec(bus)
    # every intent exactly one outcome: filled in full, or refused once (never both, never twice)
    for intent_id, qty in intents.items():
        got, refused = filled(rec, intent_id), rec.refusals[intent_id]
        assert (got == qty and not refused) or (got == 0 and len(refused) == 1), (intent_id, qty, got, refused)
    # each fill once; no client order id filled beyond its order
    assert len(rec.fill_ids) == len(set(rec.fill_ids)), "a fill id appears twice in OM_EXEC"
    by_coid: dict[str, Decimal] = defaultdict(Decimal)
    for fills in rec.fills.values():
        for f in fills:
            by_coid[f.client_order_id] += f.last_qty
            assert by_coid[f.client_order_id] <= f.order_qty, f"client order id {f.client_order_id} filled twice"
    # the keeper's positions are the sum of the fills
    everything = [f for fills in rec.fills.values() for f in fills]
    expected = net_of(everything)

    async def keeper_agrees() -> bool:
        try:
            reply = await om.positions_reply()
        except Exception:
            return False
        return {(p.account, p.symbol): p.quantity for p in reply.positions if p.quantity} == expected

    await eventually(keeper_agrees, timeout=30, what="the keeper's positions to equal the fills in OM_EXEC")
    # every order record terminal (the router applies the last reports a moment after they are stored)
    kv = await bus.kv(KV_ORDERS)

    async def records_terminal() -> bool:
        try:
            keys = await kv.keys()
        except NoKeysError:
            return True
        except (TimeoutError, nats.errors.Error):
            return False
        for key in keys:
            try:
                entry = await kv.get(key)
            except (TimeoutError, nats.errors.Error):
                return False
            if entry.value and msgspec.msgpack.decode(entry.value, type=OrderRecord).is_open:
                return False
        return True

    await eventually(records_terminal, timeout=30, what="every order record terminal")
    return rec
