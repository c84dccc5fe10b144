"""Where the paper venue keeps its tickets and orders: in memory (tests, a venue without persistence) or in the
gateway's KV bucket ``om_paper`` (keys ``<broker_id>.tickets`` and ``<broker_id>.order.<client order id>``)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from ordermesh.brokers.model import BrokerConnectionError
from ordermesh.contract.subjects import kv_key, kv_key_parts


class StoreTakenError(BrokerConnectionError):
    """Another gateway wrote the venue's state since this one loaded it (it took over): this one must not act."""


class PaperStore(Protocol):
    """Where the venue keeps its tickets and orders (bytes from the venue's ``encode_tickets`` / ``encode_order``)."""

    async def load(self) -> tuple[bytes | None, list[bytes]]: ...

    async def save(self, tickets: bytes, orders: dict[str, bytes]) -> None:
        """Store the tickets and the orders (by client order id); the tickets must never go back to an older
        value. Raises StoreTakenError once another venue has claimed the store."""

    async def claim(self, tickets: bytes) -> None:
        """Make this venue the store's one writer from now on (after ``load``): a venue that loaded earlier can
        no longer save. Raises StoreTakenError when the store changed since this venue loaded it."""


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

    async def claim(self, tickets: bytes) -> None:
        self.tickets = tickets


class KvPaperStore:
    """The paper venue's tickets and orders in KV ``om_paper`` (keys ``<broker_id>.tickets`` and
    ``<broker_id>.order.<client order id>``).

    One writer at a time (an active gateway and a standby share the bucket): the tickets key is written by
    revision, as the last write of every save, so a venue whose state another venue has claimed since it loaded
    can no longer complete a save (its reports are never published; its command goes to the active gateway).
    """

    def __init__(self, kv: KeyValue, broker_id: str) -> None:
        self.kv = kv
        self.broker_id = broker_id
        self.revision = 0  # of the tickets key, as this venue last loaded or wrote it

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
                self.revision = int(entry.revision or 0)
            elif len(parts) == 3 and parts[1] == "order":
                orders.append(entry.value)
        return tickets, orders

    async def save(self, tickets: bytes, orders: dict[str, bytes]) -> None:
        # Issued together: one connection keeps them in call order, and the save costs one round trip instead of
        # one per key. The tickets go last, by revision: the commit of the save, refused once the store is taken.
        puts = [self.kv.put(kv_key(self.broker_id, "order", coid), data) for coid, data in orders.items()]
        results = await asyncio.gather(*puts, self._write_tickets(tickets), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def claim(self, tickets: bytes) -> None:
        await self._write_tickets(tickets)

    async def _write_tickets(self, tickets: bytes) -> None:
        key = kv_key(self.broker_id, "tickets")
        try:
            if self.revision:
                self.revision = await self.kv.update(key, tickets, last=self.revision)
            else:
                self.revision = await self.kv.create(key, tickets)
        except KeyWrongLastSequenceError:
            raise StoreTakenError(
                f"the paper venue {self.broker_id}'s state was written by another gateway since this one loaded it"
            ) from None
