"""Where the paper venue keeps its tickets and orders: in memory (tests, a venue without persistence) or in the
gateway's KV bucket ``om_paper`` (keys ``<broker_id>.tickets`` and ``<broker_id>.order.<client order id>``)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from ordermesh.contract.subjects import kv_key, kv_key_parts


class PaperStore(Protocol):
    """Where the venue keeps its tickets and orders (bytes from the venue's ``encode_tickets`` / ``encode_order``)."""

    async def load(self) -> tuple[bytes | None, list[bytes]]: ...

    async def save(self, tickets: bytes, orders: dict[str, bytes]) -> None:
        """Store the tickets and the orders (by client order id); the tickets must never go back to an older
        value (the KV store issues all puts together on one connection, tickets first)."""


class MemoryPaperStore:
    """A store in memory (tests; a venue without persistence). Share one between two venues to restart."""

    def __init__(self) -> None:
        self.tickets: bytes | None = None
        self.orders: dict[str, bytes] = {}

    async def load(self) -> tuple[bytes | None, list[bytes]]:
        return self.tickets, list(self.orders.values())

    async def save(self, tickets: bytes, orders: dict[str, bytes]) -> None:
        self.tickets = tickets
        self.orders.update(orders)


class KvPaperStore:
    """The paper venue's tickets and orders in KV ``om_paper`` (keys ``<broker_id>.tickets`` and
    ``<broker_id>.order.<client order id>``)."""

    def __init__(self, kv: KeyValue, broker_id: str) -> None:
        self.kv = kv
        self.broker_id = broker_id

    async def load(self) -> tuple[bytes | None, list[bytes]]:
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return None, []
        tickets: bytes | None = None
        orders: list[bytes] = []
        for key in keys:
            parts = kv_key_parts(key)
            if parts[0] != self.broker_id:
                continue
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                continue
            if not entry.value:
                continue
            if parts[1:] == ["tickets"]:
                tickets = entry.value
            elif len(parts) == 3 and parts[1] == "order":
                orders.append(entry.value)
        return tickets, orders

    async def save(self, tickets: bytes, orders: dict[str, bytes]) -> None:
        # Issued together: one connection keeps them in call order (so the stored ticket counters never go
        # back), and the save costs one round trip instead of one per key.
        await asyncio.gather(
            self.kv.put(kv_key(self.broker_id, "tickets"), tickets),
            *(self.kv.put(kv_key(self.broker_id, "order", coid), data) for coid, data in orders.items()),
        )
