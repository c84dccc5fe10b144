"""What the MT5 gateway knows of each order at MT5 (tickets, state, fills), by client order id, and where it is
kept: in memory, or in the gateway's KV bucket ``om_mt5`` under ``<broker_id>.<client order id>``. A record is
deleted (pruned) a while after its order is final (``MT5Adapter.prune``), so the bucket stays bounded."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

import msgspec
import structlog
from nats.js.errors import NoKeysError
from nats.js.kv import KeyValue

from ordermesh.brokers.model import BrokerFill, BrokerOrder, BrokerOrderState
from ordermesh.contract.subjects import kv_key, kv_key_parts
from ordermesh.contract.wire import Side

log = structlog.get_logger("mt5")
ZERO = Decimal(0)
FINAL = ("FILLED", "CANCELED", "EXPIRED", "REJECTED")
WORKING = ("NEW", "PARTIALLY_FILLED")
UNSETTLED = ("sending", "unknown")


class TicketRecord(msgspec.Struct, kw_only=True):
    """What we know of one order at MT5, persisted under its client order id."""

    client_order_id: str
    symbol: str
    side: Side
    action_type: str
    volume: Decimal
    price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    sent_s: int = 0  # unix seconds just before the TRADE was sent
    state: str = "sending"  # sending | unknown | NEW | PARTIALLY_FILLED | FILLED | CANCELED | EXPIRED | REJECTED
    reason: str | None = None  # why it was rejected
    retcode: int | None = None  # the last TRADE answer's retcode (10012: it may still execute at the server)
    order: int | None = None  # order ticket: the 32-bit value of a TRADE reply, or the full one from ORDERS
    position_id: int | None = None
    # position_id is the position's full ticket (read from POSITIONS, or the ticket a close addressed); False while
    # it is only a TRADE reply's value, which the EA cuts to 32 bits (MT5Adapter._position_checked)
    position_full: bool = False
    fills: list[BrokerFill] = msgspec.field(default_factory=list)
    deals: list[int] = msgspec.field(default_factory=list)  # deal tickets (HISTORY) known to be this order's
    cancel_sent: bool = False  # we asked MT5 to delete it: gone from ORDERS is then not a fill by itself
    vanished_s: int | None = None  # when a working order was first missing from ORDERS with no deal found
    done_s: int | None = None  # unix seconds when it became final (pruned a while after)

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def filled(self) -> Decimal:
        return sum((f.quantity for f in self.fills), ZERO)

    def view(self) -> BrokerOrder:
        state = BrokerOrderState.NEW if self.state in ("sending", "unknown") else BrokerOrderState(self.state)
        return BrokerOrder(
            client_order_id=self.client_order_id,
            broker_order_id=str(self.order if self.order is not None else ""),
            symbol=self.symbol,
            side=self.side,
            quantity=self.volume,
            state=state,
            filled_qty=self.filled,
            limit_price=self.price,
            fills=list(self.fills),
            reason=self.reason,
        )


class TicketStore(Protocol):
    async def load(self) -> list[TicketRecord]: ...
    async def put(self, record: TicketRecord) -> None: ...
    async def delete(self, client_order_id: str) -> None: ...


class MemoryTicketStore:
    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}

    async def load(self) -> list[TicketRecord]:
        return [msgspec.json.decode(v, type=TicketRecord) for v in self.records.values()]

    async def put(self, record: TicketRecord) -> None:
        self.records[record.client_order_id] = msgspec.json.encode(record)

    async def delete(self, client_order_id: str) -> None:
        self.records.pop(client_order_id, None)


class KvTicketStore:
    """The ticket map in JetStream KV ``om_mt5`` under ``<broker_id>.<client order id>``. A pruned record is
    purged, and the purge markers KV leaves behind are removed in batches and at every load, so neither keys nor
    markers grow with the number of orders ever placed."""

    MARKERS = 100  # purge markers left before they are cleared

    def __init__(self, kv: KeyValue, broker_id: str) -> None:
        self.kv = kv
        self.broker_id = broker_id
        self.markers = 0

    async def load(self) -> list[TicketRecord]:
        await self._clear_markers()
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return []  # an empty bucket; any other failure stops the start (no tickets known = orders doubled)
        out = []
        for key in keys:
            if kv_key_parts(key)[0] != self.broker_id:
                continue
            entry = await self.kv.get(key)
            if entry.value:
                try:
                    out.append(msgspec.json.decode(entry.value, type=TicketRecord))
                except msgspec.DecodeError:
                    log.warning("unreadable ticket record skipped", key=key)
        return out

    async def put(self, record: TicketRecord) -> None:
        await self.kv.put(kv_key(self.broker_id, record.client_order_id), msgspec.json.encode(record))

    async def delete(self, client_order_id: str) -> None:
        await self.kv.purge(kv_key(self.broker_id, client_order_id))
        self.markers += 1
        if self.markers >= self.MARKERS:
            await self._clear_markers()

    async def _clear_markers(self) -> None:
        try:
            await self.kv.purge_deletes(olderthan=0)
        except Exception:  # housekeeping: a failure leaves markers for the next time, nothing else
            log.warning("KV purge markers not cleared", exc_info=True)
            return
        self.markers = 0
