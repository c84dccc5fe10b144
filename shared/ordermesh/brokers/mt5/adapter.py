"""MetaTrader 5 over ZeroMQ: a ``BrokerClient`` for the public MQL5-JSON-API expert advisor, as its source behaves.

The link (:mod:`ordermesh.brokers.mt5.transport`) makes requests safe without request ids; the listings and the
rules that settle unknown outcomes and server-side fills are in :mod:`ordermesh.brokers.mt5.listings` and
:mod:`ordermesh.brokers.mt5.reconcile`; tickets are kept per client order id in :mod:`ordermesh.brokers.mt5.tickets`
(KV ``om_mt5`` in a gateway) the moment anything reveals them. This module holds the BrokerClient methods and
the background loops:

* **heartbeat** — an ACCOUNT round trip sets the connection state; after a reconnect everything is reconciled;
  each beat polls working orders (pending fills happen on the server with no event) and keeps ticks subscribed;
* **ticks** — the EA streams only after a CONFIG subscription, and an EA reload drops every subscription: the
  subscription (RESET, then CONFIG per symbol, so a repeat never doubles the stream) is renewed whenever the live
  socket completes a new handshake (a reload or restart of the EA) and when ticks stop while the EA answers;
* **trade events** — the only place the EA shows our comment (the client order id), with the order ticket.

Money is ``Decimal`` parsed from the JSON text (never through float).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
import zmq

from ordermesh.brokers.client import BrokerClient, Capabilities
from ordermesh.brokers.model import (
    Balance,
    BookLevel,
    BrokerConnectionError,
    BrokerError,
    BrokerFill,
    BrokerOrder,
    BrokerOrderState,
    BrokerPosition,
    ModificationError,
    OrderBook,
    OrderError,
    OrderNotFoundError,
    SymbolNotFoundError,
)
from ordermesh.brokers.mt5.listings import (
    DealRow,
    PositionRow,
    ServerClock,
    addressable,
    hidden_per_symbol,
    hidden_remainder,
    listed_per_symbol,
    margin_mode_evidence,
    margin_mode_field,
    parse_positions,
    same_ticket,
)
from ordermesh.brokers.mt5.protocol import (
    CONNECTION,
    DONE_PARTIAL,
    MARKET,
    PENDING,
    PRICE_RETRY,
    SUCCESS,
    TOO_MANY,
    ZERO,
    num,
    retcode_error,
)
from ordermesh.brokers.mt5.reconcile import Reconciliation
from ordermesh.brokers.mt5.tickets import KvTicketStore, MemoryTicketStore, TicketRecord, TicketStore
from ordermesh.brokers.mt5.transport import EALink, decode
from ordermesh.contract.subjects import KV_MT5
from ordermesh.contract.wire import OrderType, PlaceOrder, Quote, Side
from ordermesh.platform import metrics
from ordermesh.platform.config import ConfigError
from ordermesh.sizing.instruments import InstrumentOverride

log = structlog.get_logger("mt5")

if TYPE_CHECKING:
    from nats.js.kv import KeyValue


class MT5Adapter(Reconciliation, BrokerClient):
    """A gateway's connection to one MT5 terminal running the MQL5-JSON-API EA (or ``ordermesh mt5-sim``)."""

    capabilities = Capabilities(streams_quotes=True, reports_instruments=True, state_bucket=KV_MT5)

    def __init__(
        self,
        broker_id: str,
        *,
        host: str = "127.0.0.1",
        command_port: int = 15555,
        data_port: int = 15556,
        live_port: int = 15557,
        events_port: int = 15558,
        single_socket: bool = False,
        request_timeout_s: float = 2.0,
        heartbeat_interval_s: float = 1.0,
        currency: str = "USD",
        symbols: tuple[str, ...] = (),
        hedging: bool = False,
        server_utc_offset_s: int | None = None,
        match_window_s: int = 120,
        settle_s: float = 10.0,
        tick_stale_s: float = 30.0,
        keep_final_s: float = 3600.0,
        store: TicketStore | None = None,
    ) -> None:
        super().__init__(broker_id)
        self.ports = (command_port, data_port, live_port, events_port)
        self.single_socket = single_socket
        self.heartbeat_interval = heartbeat_interval_s
        self.currency = currency
        self.symbols = symbols
        self.hedging = hedging
        self.match_window_s = match_window_s
        self.settle_s = settle_s
        self.tick_stale_s = tick_stale_s
        self.keep_final_s = keep_final_s
        self.clock = ServerClock(server_utc_offset_s)
        self.store: TicketStore = store or MemoryTicketStore()
        self.records: dict[str, TicketRecord] = {}
        self.ambiguous: dict[str, list[int]] = {}  # client order id -> candidate tickets (never guessed)
        self.connected = False
        self.ticks: dict[str, Quote] = {}
        self.log = log.bind(broker_id=broker_id)
        self.link = EALink(
            broker_id,
            host,
            self.ports,
            single_socket=single_socket,
            timeout_s=request_timeout_s,
            on_late_trade=self._on_late_trade,
        )
        self.in_flight: set[str] = set()  # client order ids whose TRADE is being sent right now
        self._updates: asyncio.Queue[BrokerOrder] = asyncio.Queue()
        self._quotes: asyncio.Queue[Quote] = asyncio.Queue(maxsize=10_000)
        self._emitted: dict[str, tuple[str, int]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._was_connected = False
        self._live: Any = None
        self._sub_generation = 0  # the live socket's handshake the current subscription was made on
        self._sub_at = 0.0
        self._last_tick = 0.0
        self._held: set[str] = set()  # records loaded at start: not pruned before resume() (or keep_final_s)
        self._started = time.monotonic()
        self._positions_seen: tuple[object, ...] | None = None  # POSITIONS at the last look for partial fills
        self._history_at = 0.0  # when HISTORY TRADES was last read (monotonic)
        self._listed: dict[str, int] = {}  # rows per symbol in the last POSITIONS answer
        self.margin_checked = False  # the account's margin mode was compared with ``hedging``
        self.refused: str | None = None  # why no order is placed (the margin mode is not the configured one)
        self._position_lock = asyncio.Lock()  # one look at POSITIONS at a time for a fill's position ticket
        self._looked: set[str] = set()  # records whose position ticket was looked for when their fill was reported
        self._later: set[asyncio.Task[None]] = set()  # reports waiting for the link (after a late reply)

    # ------------------------------------------------------------------------------ lifecycle

    def unresolved(self) -> dict[str, list[str]]:
        return {key: [str(t) for t in tickets] for key, tickets in self.ambiguous.items()}

    def use_state_store(self, kv: KeyValue) -> None:
        self.store = KvTicketStore(kv, self.broker_id)

    async def connect(self) -> None:
        """Load the ticket records, open the link and, when the EA answers in time, check the account's margin
        mode against ``hedging`` (a mismatch is a :class:`ConfigError`: closes and SL/TP would go wrong). An EA
        not reachable yet is checked at the first heartbeat it answers."""
        if self.link.ctx is not None:
            return
        now = int(time.time())
        for r in await self.store.load():
            if r.final and r.done_s is None:
                r.done_s = now
            self.records[r.client_order_id] = r
        self._held = set(self.records)
        self._started = time.monotonic()
        await self.link.open()
        try:
            await self.check_margin_mode()
        except BrokerConnectionError:
            pass
        except ConfigError:
            await self.link.close()
            raise
        self._live = self.link.monitored(zmq.PULL, self.ports[2], "live")
        self._tasks.append(asyncio.create_task(self._pull(self._live.sock, self._on_tick)))
        if not self.single_socket:
            events = self.link.monitored(zmq.PULL, self.ports[3], "events")
            self._tasks.append(asyncio.create_task(self._pull(events.sock, self._on_event, events)))
        self._tasks.append(asyncio.create_task(self._heartbeat_loop()))

    async def close(self) -> None:
        tasks = [*self._tasks, *self._later]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        self._later.clear()
        if self._live is not None:
            await self._live.close()
            self._live = None
        await self.link.close()

    def _set_connected(self, up: bool) -> None:
        self.connected = up
        metrics.BROKER_CONNECTED.labels(self.broker_id).set(1 if up else 0)
        if up:
            metrics.BROKER_LAST_HEARTBEAT.labels(self.broker_id).set(time.time())

    async def request(self, payload: dict[str, Any], rec: TicketRecord | None = None) -> dict[str, Any]:
        """One request's answer (errors the EA pushed before it are under ``_errors_before``); ``rec``: the
        order a TRADE is for (its late answer, if it times out, settles it)."""
        answer = await self.link.request(payload, rec)
        if answer.errors:
            return {**answer.reply, "_errors_before": answer.errors}
        return answer.reply

    # ------------------------------------------------------------------------------ background

    async def _pull(self, sock: Any, handler: Any, owner: Any = None) -> None:
        try:
            while True:
                raw = await sock.recv()
                try:
                    await handler(decode(raw))
                except Exception:  # bad input never stops the loop
                    metrics.BROKER_BAD_ANSWERS.labels(self.broker_id, "stream").inc()
                    self.log.exception("bad message from the EA ignored")
        finally:
            if owner is not None:
                await owner.close()

    async def _on_tick(self, msg: dict[str, Any]) -> None:
        data, symbol = msg.get("data"), msg.get("symbol")
        if msg.get("timeframe") != "TICK" or not isinstance(data, list) or len(data) < 3 or not symbol:
            return
        bid, ask = num(data[1]), num(data[2])
        if not (bid.is_finite() and ask.is_finite()) or bid <= 0 or ask <= 0:
            return
        with contextlib.suppress(ValueError, TypeError):
            self.clock.observe_tick(int(num(data[0])))
        quote = Quote(broker_id=self.broker_id, symbol=str(symbol), bid=bid, ask=ask)
        self.ticks[quote.symbol] = quote
        self._last_tick = time.monotonic()
        with contextlib.suppress(asyncio.QueueFull):
            self._quotes.put_nowait(quote)

    async def quotes(self) -> AsyncIterator[Quote]:
        """Ticks from the live socket, as quotes (the gateway publishes them on ``om.md.*``)."""
        while True:
            yield await self._quotes.get()

    async def _on_event(self, msg: dict[str, Any]) -> None:
        """A trade event (OnTradeTransaction, TRADE_TRANSACTION_REQUEST): our comment and the order ticket."""
        req, res = msg.get("request"), msg.get("result")
        if not isinstance(req, dict) or not isinstance(res, dict):
            return
        rec = self.records.get(str(req.get("comment") or ""))
        if rec is None:
            return
        retcode = int(num(res.get("retcode")))
        if retcode not in SUCCESS:
            return
        if rec.state in ("sending", "unknown"):
            self._apply(
                rec,
                {"retcode": retcode, "order": res.get("order"), "volume": res.get("volume"), "price": res.get("price")},
            )
            await self._save(rec)
            self.ambiguous.pop(rec.client_order_id, None)
            self.log.info(
                "outcome learned from the trade event",
                client_order_id=rec.client_order_id,
                state=rec.state,
                order=rec.order,
            )
            await self._publish(rec)
        elif rec.order is None and res.get("order"):
            rec.order = int(num(res.get("order")))
            await self._save(rec)

    async def _on_late_trade(self, rec: TicketRecord | None, reply: dict[str, Any]) -> None:
        """The answer of the TRADE that timed out (``rec``: its record), brought by the link's resynchronisation."""
        if rec is None or rec.state not in ("sending", "unknown"):
            return
        retcode = int(num(reply.get("retcode")))
        rec.retcode = retcode
        if retcode in SUCCESS:
            self._apply(rec, reply)
        elif retcode not in CONNECTION and retcode not in PRICE_RETRY and retcode != TOO_MANY:
            rec.state, rec.reason = "REJECTED", f"TRADE_RETCODE {retcode}: {reply.get('desription')}"
        else:
            await self._save(rec)
            return
        await self._save(rec)
        if self._unchecked(rec):  # (called inside the link's request: POSITIONS is read once it is free)
            task = asyncio.create_task(self._publish_later(rec))
            self._later.add(task)
            task.add_done_callback(self._later.discard)
        else:
            self._emit(rec.view())

    async def _publish(self, rec: TicketRecord) -> None:
        """Report an order's state and fills (its position's full ticket looked for first)."""
        await self._position_checked(rec)
        self._emit(rec.view())

    async def _publish_later(self, rec: TicketRecord) -> None:
        try:
            await self._publish(rec)
        except Exception:
            self.log.exception("order update not reported", client_order_id=rec.client_order_id)

    async def _view(self, rec: TicketRecord) -> BrokerOrder:
        """An order as it is reported (an answer): its position's full ticket looked for first."""
        await self._position_checked(rec)
        return rec.view()

    def _emit(self, order: BrokerOrder) -> None:
        key = (order.state.value, len(order.fills))
        if self._emitted.get(order.client_order_id) != key:
            self._emitted[order.client_order_id] = key
            self._updates.put_nowait(order)

    async def order_updates(self) -> AsyncIterator[BrokerOrder]:
        while True:
            yield await self._updates.get()

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.request({"action": "ACCOUNT"})
                if not self.connected:
                    if self._was_connected:
                        metrics.BROKER_RECONNECTS.labels(self.broker_id).inc()
                    self._set_connected(True)
                    self._was_connected = True
                    self.log.info("connected to the MT5 EA", records=len(self.records))
                else:
                    self._set_connected(True)
                if not self.margin_checked:
                    try:
                        await self.check_margin_mode()
                    except ConfigError as exc:
                        self._refuse(str(exc))
                await self.keep_subscribed()
                await self.poll_working()
            except BrokerConnectionError:
                self._set_connected(False)
            except Exception:
                self.log.exception("heartbeat failed")
            await asyncio.sleep(self.heartbeat_interval)

    # ------------------------------------------------------------------------------ margin mode

    def _mode_name(self, hedging: bool) -> str:
        return "hedging" if hedging else "netting"

    def _mismatch(self, hedging: bool, why: str) -> str:
        return (
            f"broker {self.broker_id}: configured hedging: {str(self.hedging).lower()} but the MT5 account is "
            f"{self._mode_name(hedging)} ({why}); set hedging: {str(hedging).lower()}"
        )

    async def check_margin_mode(self) -> None:
        """Compare the account's margin mode with ``hedging``: from ACCOUNT when the EA says it (``margin_mode``,
        not in the stock EA), else from what the listings prove (:func:`margin_mode_evidence`); nothing proven
        (a fresh account) passes, and later listings are watched (:meth:`_observe`). ConfigError on a mismatch."""
        account = await self.request({"action": "ACCOUNT"})
        said = margin_mode_field(account)
        if said is not None:
            self.margin_checked = True
            if said != self.hedging:
                raise ConfigError(self._mismatch(said, f"ACCOUNT margin_mode {account.get('margin_mode')}"))
            return
        reply = await self.request({"action": "POSITIONS"})
        listed = listed_per_symbol(reply) if not reply.get("_errors_before") else None
        deals = await self.deals(since_s=0)  # (observes them too)
        self.margin_checked = True
        self._observe(listed, deals, raise_=True)

    def _observe(self, listed: dict[str, int] | None, deals: list[DealRow], *, raise_: bool = False) -> None:
        found = margin_mode_evidence(listed, deals)
        if found is None or found[0] == self.hedging:
            return
        reason = self._mismatch(*found)
        if raise_:
            raise ConfigError(reason)
        self._refuse(reason)

    def _observe_deals(self, deals: list[DealRow]) -> None:
        if self.margin_checked:  # (check_margin_mode raises on its own reading)
            self._observe(None, deals)

    def _refuse(self, reason: str) -> None:
        if self.refused is None:
            self.refused = reason
            self.log.error("orders refused: the account's margin mode is not the configured one", reason=reason)

    async def keep_subscribed(self) -> None:
        """Ticks flow only after CONFIG, and an EA reload forgets every subscription: renew it on each new
        handshake of the live socket, and when ticks have stopped while the EA answers."""
        if not self.symbols or self._live is None or not self._live.ready.is_set():
            return
        now = time.monotonic()
        if self._live.generation != self._sub_generation:
            reason = "connect" if self._sub_generation == 0 else "reload"
        elif now - max(self._last_tick, self._sub_at) >= self.tick_stale_s:
            reason = "stale"
        else:
            return
        generation = self._live.generation
        await self.request({"action": "RESET"})
        for symbol in self.symbols:
            reply = await self.request({"action": "CONFIG", "symbol": symbol, "chartTF": "TICK"})
            if str(reply.get("lastError")) not in ("0", "None"):
                self.log.warning("tick subscription refused", symbol=symbol, reply=reply)
        self._sub_generation, self._sub_at = generation, now
        metrics.MT5_SUBSCRIPTIONS.labels(self.broker_id, reason).inc()
        self.log.info("ticks subscribed", symbols=list(self.symbols), reason=reason)

    # ------------------------------------------------------------------------------ account

    async def validate_connection(self) -> bool:
        try:
            reply = await self.request({"action": "ACCOUNT"})
        except BrokerConnectionError:
            self._set_connected(False)
            return False
        self._set_connected(True)
        return "balance" in reply

    async def get_balance(self) -> Balance:
        r = await self.request({"action": "ACCOUNT"})
        if "balance" not in r:
            raise BrokerError(f"ACCOUNT failed: {r.get('description')}")
        return Balance(
            currency=str(r.get("currency") or self.currency),
            balance=num(r.get("balance")),
            equity=num(r.get("equity")),
            free_margin=num(r.get("margin_free")),
            margin_used=num(r.get("margin")),
        )

    async def position_rows(self) -> list[PositionRow]:
        reply = await self.request({"action": "POSITIONS"})
        errors = reply.get("_errors_before") or []
        if errors or "positions" not in reply:
            # CheckError inside GetPositions: a row could not be read, so the listing may be short; an error is
            # never an empty listing
            raise BrokerError(f"POSITIONS incomplete: {[e.get('lastError') for e in errors] or reply}")
        rows, _ = parse_positions(reply)
        self._listed = listed_per_symbol(reply)
        if self.margin_checked:
            self._observe(self._listed, [])
        return rows

    async def _listing(self) -> tuple[list[PositionRow], dict[str, int]]:
        """The positions and, per symbol, how many of them the listing hides (the stock EA on a hedging account
        lists each of a symbol's positions as its lowest ticket)."""
        rows = await self.position_rows()
        return rows, hidden_per_symbol(rows, self._listed)

    async def get_positions(self) -> list[BrokerPosition]:
        """Every position: each ticket the listing shows, and, per symbol where the stock EA hides tickets
        (hedging), one position without ticket holding what the hidden ones hold together: the symbol's net over
        all deals in HISTORY less the listed tickets. The listing is read again after HISTORY and must not have
        changed (nor may a TRADE have been sent meanwhile); a history that does not add up is an error."""
        for _ in range(3):
            rows, hidden = await self._listing()
            out = [
                BrokerPosition(
                    symbol=p.symbol,
                    quantity=p.volume if p.side is Side.BUY else -p.volume,
                    avg_price=p.price,
                    position_id=str(p.id),
                )
                for p in rows
            ]
            if not hidden:
                return out
            trades, before = self.link.trades_sent, (rows, self._listed)
            deals = await self.deals(since_s=0)
            again = await self.position_rows()
            if (again, self._listed) != before or self.link.trades_sent != trades:
                continue  # something traded meanwhile: read it all again
            try:
                rest = hidden_remainder(rows, hidden, deals)
            except ValueError as exc:
                which = ", ".join(sorted(hidden))
                raise BrokerError(f"positions of {which} hidden by the EA's listing: {exc}") from None
            self.log.debug("positions hidden by the EA's hedging listing counted from HISTORY", hidden=hidden)
            out += [BrokerPosition(symbol=s, quantity=q, avg_price=ZERO) for s, q in sorted(rest.items()) if q]
            return out
        raise BrokerError("the positions kept changing while they were read")

    # ------------------------------------------------------------------------------ position tickets

    def _unchecked(self, rec: TicketRecord) -> bool:
        """A hedging account's position opened by a market order, named so far only by the TRADE reply's ticket,
        which the EA cuts to its low 32 bits (``(int)``): it may be another ticket than MT5's."""
        return (
            self.hedging
            and rec.action_type in MARKET
            and rec.position_id is not None
            and not rec.position_full
            and bool(rec.fills)
        )

    def _resolve_position(self, rec: TicketRecord, rows: list[PositionRow]) -> bool:
        """Take the full ticket of ``rec``'s position from the listing: the one listed ticket that equals the
        reply's modulo 2^32, of the order's symbol and side. True when it was taken (the fills name it too)."""
        if rec.position_full or rec.position_id is None:
            return False
        found = [p for p in rows if same_ticket(p.id, rec.position_id)]
        if len(found) != 1 or found[0].symbol != rec.symbol or found[0].side is not rec.side:
            return False
        old, full = str(rec.position_id), found[0].id
        rec.position_id, rec.position_full = full, True
        rec.fills = [
            msgspec.structs.replace(f, position_id=str(full)) if f.position_id == old else f for f in rec.fills
        ]
        return True

    async def _position_checked(self, rec: TicketRecord) -> None:
        """Before a hedging market order's fill is reported: its position's full ticket, from POSITIONS (looked
        for once per record). A ticket the stock EA's hedging listing hides (a symbol's second position) cannot be
        read: the fill then names the reply's value, and a close or SL/TP change naming it looks again
        (:meth:`_hedged`); nothing is ever sent to the ticket a cut value would name."""
        key = rec.client_order_id
        if not self._unchecked(rec) or key in self._looked:
            return
        async with self._position_lock:
            if not self._unchecked(rec) or key in self._looked:
                return
            try:
                rows = await self.position_rows()
            except BrokerError as exc:
                self.log.warning(
                    "position ticket not read: the fill names the TRADE reply's 32-bit value",
                    client_order_id=key,
                    position_id=rec.position_id,
                    error=str(exc),
                )
                return
            self._looked.add(key)
            if self._resolve_position(rec, rows):
                await self._save(rec)
            else:
                self.log.info(
                    "position ticket not listed (hidden by the EA's hedging listing): the fill names the TRADE "
                    "reply's 32-bit value",
                    client_order_id=key,
                    position_id=rec.position_id,
                )

    def _hedged(
        self, symbol: str, named: int, rows: list[PositionRow], hidden: dict[str, int]
    ) -> tuple[PositionRow | None, int]:
        """The position ``named`` on a hedging account, and its full ticket. ``named`` is a full ticket or the low
        32 bits a TRADE reply left of one: a listed position equal to it modulo 2^32 is taken (two of them:
        refused). One the listing does not show is addressed as named only where it can be one of ``symbol``'s
        hidden tickets as it is: those are above the symbol's listed ticket (PositionSelect shows the lowest).
        Otherwise OrderError, and nothing is sent: it is not open, or it is the cut of a ticket beyond 2^31."""
        found = [p for p in rows if same_ticket(p.id, named)]
        if len(found) > 1:
            tickets = " or ".join(str(p.id) for p in found)
            raise OrderError(f"position {named} may be ticket {tickets} (equal in their low 32 bits): not sent")
        if found:
            return found[0], found[0].id
        if not hidden.get(symbol):
            raise OrderError(f"no open {symbol} position {named} at MT5")
        lowest = min((p.id for p in rows if p.symbol == symbol), default=None)
        if lowest is None:
            raise OrderError(f"the {symbol} positions could not be read from MT5's listing: {named} not sent")
        if named <= lowest:
            raise OrderError(
                f"position {named} is not listed and the {symbol} tickets MT5's listing hides are above {lowest}: "
                "it is closed, or it is the low 32 bits a TRADE reply left of a ticket beyond the EA's 32-bit ids "
                "(change it in the terminal); not sent"
            )
        return None, named

    # ------------------------------------------------------------------------------ orders

    @staticmethod
    def action_type(order: PlaceOrder) -> str:
        side = "BUY" if order.side is Side.BUY else "SELL"
        if order.order_type is OrderType.MARKET:
            return f"ORDER_TYPE_{side}"
        if order.order_type is OrderType.LIMIT:
            return f"ORDER_TYPE_{side}_LIMIT"
        if order.order_type is OrderType.STOP:
            return f"ORDER_TYPE_{side}_STOP"
        raise OrderError("the MQL5-JSON-API EA has no stop-limit orders")

    async def place_order(self, order: PlaceOrder) -> BrokerOrder:
        rec = self.records.get(order.client_order_id)
        if rec is not None:  # sent before: settle what became of it, never send it again
            return await self._existing(rec)
        if self.refused is not None:
            raise OrderError(self.refused)
        age = time.time() - order.ts_ns / 1e9
        if order.ts_ns and age > self.keep_final_s:
            # its record, had it been sent, may have been pruned: never risk sending it twice
            raise OrderError(
                f"command {int(age)} s old and no record of it: it may have been placed before and forgotten "
                f"(records are kept {int(self.keep_final_s)} s); not sent"
            )
        if order.position_id is not None:
            return await self._close_position(order)
        kind = self.action_type(order)
        price = order.limit_price if order.order_type is OrderType.LIMIT else order.stop_price
        payload: dict[str, Any] = {
            "action": "TRADE",
            "actionType": kind,
            "symbol": order.symbol,
            "volume": float(order.quantity),
            "comment": order.client_order_id,
        }
        if price is not None:
            payload["price"] = float(price)
        if order.stop_loss is not None:
            payload["stoploss"] = float(order.stop_loss)
        if order.take_profit is not None:
            payload["takeprofit"] = float(order.take_profit)
        if order.expire_at_ns:
            # the stock EA places every pending order GTC (TradingModule never uses its expiration type)
            payload["expiration"] = order.expire_at_ns // 1_000_000_000
        return await self._submit(order, kind, payload, price=price)

    async def _submit(
        self,
        order: PlaceOrder,
        kind: str,
        payload: dict[str, Any],
        *,
        price: Decimal | None = None,
        position_id: int | None = None,
    ) -> BrokerOrder:
        rec = TicketRecord(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            action_type=kind,
            volume=order.quantity,
            price=price,
            stop_loss=order.stop_loss,
            take_profit=order.take_profit,
            sent_s=int(time.time()),
            position_id=position_id,
            position_full=position_id is not None,  # a close: the ticket it addresses
        )
        self.records[rec.client_order_id] = rec
        await self._save(rec)  # before sending: a crash after it leaves an outcome to settle, never a repeat
        self.in_flight.add(rec.client_order_id)  # settled by its answer, not by a poll meanwhile
        try:
            reply = await self._trade(payload, rec)
        except BrokerConnectionError:
            if rec.state in ("sending", "unknown"):
                raise
            return await self._view(rec)  # the reply was lost, but the trade event has told what happened
        finally:
            self.in_flight.discard(rec.client_order_id)
        self._apply(rec, reply)
        await self._save(rec)
        return await self._view(rec)

    def _apply(self, rec: TicketRecord, reply: dict[str, Any]) -> None:
        """What a successful TRADE answer (reply, late reply or trade event) tells; safe to apply twice."""
        order = int(num(reply.get("order")))
        if order and rec.order is None:
            rec.order = order
        retcode = int(num(reply.get("retcode")))
        rec.retcode = retcode
        if rec.action_type in PENDING:
            # 10008 or 10009 depending on the trade server: working until the listings say otherwise
            if rec.state in ("sending", "unknown"):
                rec.state = "NEW"
            return
        volume, px = num(reply.get("volume")), num(reply.get("price"))
        if rec.action_type in MARKET and rec.order and rec.position_id is None:
            rec.position_id = rec.order  # MT5 names a position after the order that opened it
        if volume > 0 and not rec.fills:
            # the stock EA returns no deal ticket: the single deal of a market order is named after its order
            rec.fills.append(
                BrokerFill(
                    fill_id=f"o{rec.order}",
                    quantity=volume,
                    price=px,
                    ts_ns=time.time_ns(),
                    position_id=None if rec.position_id is None else str(rec.position_id),
                )
            )
        if rec.state in ("sending", "unknown", "NEW"):
            if rec.filled >= rec.volume:
                rec.state = "FILLED"
            elif retcode == DONE_PARTIAL or rec.fills:
                rec.state, rec.reason = "CANCELED", "partly filled; MT5 canceled the rest"
            else:
                rec.state = "FILLED" if volume >= rec.volume else "unknown"

    async def _trade(self, payload: dict[str, Any], rec: TicketRecord | None) -> dict[str, Any]:
        """Send a TRADE: one retry on requote / price change (not executed), back-off on too many requests,
        unknown outcome on a timeout, a lost reply, 10012 or 10031."""
        price_retried, backoffs = False, 0
        while True:
            try:
                reply = await self.request(payload, rec)
            except BrokerConnectionError:
                if rec is not None and rec.state == "sending":  # (a trade event may have settled it meanwhile)
                    rec.state = "unknown"
                    await self._save(rec)
                    self.log.warning(
                        "order outcome unknown: settled from MT5's listings, never sent again",
                        client_order_id=rec.client_order_id,
                    )
                raise
            retcode = int(num(reply.get("retcode")))
            if retcode in PRICE_RETRY and not price_retried:
                price_retried = True
                continue
            if retcode == TOO_MANY and backoffs < 3:
                await asyncio.sleep(0.05 * 2**backoffs)
                backoffs += 1
                continue
            errors = reply.get("_errors_before") or []
            err: BrokerError | None
            if any(str(e.get("lastError")) == "4301" for e in errors):
                err = SymbolNotFoundError(f"unknown symbol {payload.get('symbol')}", code="4301")
            else:
                err = retcode_error(retcode, reply.get("desription"))
            if err is None:
                return reply
            if rec is not None:
                rec.retcode = retcode
                if isinstance(err, BrokerConnectionError):
                    rec.state = "unknown"
                else:
                    rec.state, rec.reason = "REJECTED", err.message
                await self._save(rec)
            raise err

    async def _existing(self, rec: TicketRecord) -> BrokerOrder:
        if rec.state in ("sending", "unknown"):
            settled = await self.settle(rec)
            if not settled or rec.state in ("sending", "unknown"):
                raise BrokerConnectionError(f"{rec.client_order_id}: outcome not known yet (settling from MT5)")
        return await self._view(rec)

    async def _close_position(self, order: PlaceOrder) -> BrokerOrder:
        """Close (part of) a position. Netting: an opposite market deal (one position per symbol; MT5's partial
        close by ticket works on hedging accounts only, CTrade::PositionClosePartial). Hedging: by ticket,
        POSITION_CLOSE_ID for all of it, POSITION_PARTIAL with ``volume`` for less."""
        if order.order_type is not OrderType.MARKET:
            raise OrderError("MT5 closes a position only at market")
        try:
            ticket = int(str(order.position_id))
        except ValueError:
            raise OrderError(f"position id {order.position_id!r} is not an MT5 position ticket") from None
        rows, hidden = await self._listing()
        if not self.hedging:
            held = next((p for p in rows if p.symbol == order.symbol), None)
            if held is None or held.side is order.side or held.volume < order.quantity:
                has = "nothing" if held is None else f"{held.side.value} {held.volume}"
                raise OrderError(f"close {order.side.value} {order.quantity} {order.symbol}: the position is {has}")
            kind = self.action_type(order)
            payload = {
                "action": "TRADE",
                "actionType": kind,
                "symbol": order.symbol,
                "volume": float(order.quantity),
                "comment": order.client_order_id,
            }
            return await self._submit(order, kind, payload, position_id=held.id)
        for rec in self.records.values():  # the record of the fill that named it learns its full ticket
            if self._unchecked(rec) and same_ticket(rec.position_id, ticket) and self._resolve_position(rec, rows):
                await self._save(rec)
        held, ticket = self._hedged(order.symbol, ticket, rows, hidden)
        if held is not None and (held.symbol != order.symbol or held.side is order.side):
            raise OrderError(
                f"position {ticket} is {held.side.value} {held.volume} {held.symbol}: "
                f"{order.side.value} does not close it"
            )
        if not addressable(ticket):
            raise OrderError(f"position {ticket} is beyond the EA's 32-bit ids: close it in the terminal")
        whole = held is not None and order.quantity >= held.volume
        kind = "POSITION_CLOSE_ID" if whole else "POSITION_PARTIAL"
        payload = {"action": "TRADE", "actionType": kind, "symbol": order.symbol, "id": ticket}
        if not whole:
            payload["volume"] = float(order.quantity)
        return await self._submit(order, kind, payload, position_id=ticket)

    async def _ticket_for_request(self, rec: TicketRecord) -> int:
        """The full ticket of a working order, read from ORDERS, checked addressable by the EA's ``(int)`` id."""
        rows = [o for o in await self.orders_open() if same_ticket(o.ticket, rec.order)]
        if len(rows) != 1:
            raise OrderNotFoundError(f"order {rec.order} is not working at MT5")
        if not addressable(rows[0].ticket):
            raise ModificationError(f"order {rows[0].ticket} is beyond the EA's 32-bit ids: change it in the terminal")
        rec.order = rows[0].ticket
        return rows[0].ticket

    async def cancel_order(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        rec = self.records.get(client_order_id)
        if rec is None:
            raise OrderNotFoundError(f"no MT5 order for {client_order_id}")
        current = await self.get_order_status(client_order_id)
        if current.state not in (BrokerOrderState.NEW, BrokerOrderState.PARTIALLY_FILLED):
            return current
        try:
            ticket = await self._ticket_for_request(rec)
        except OrderNotFoundError:
            await self.poll_working()  # gone meanwhile: filled (or being settled)
            return rec.view()
        rec.cancel_sent = True
        await self._save(rec)
        try:
            await self._trade(
                {"action": "TRADE", "actionType": "ORDER_CANCEL", "symbol": rec.symbol, "id": ticket}, None
            )
        except OrderError:
            await self.poll_working()  # filled or gone meanwhile
            return rec.view()
        rec.state = "CANCELED"
        await self._save(rec)
        return rec.view()

    async def modify_order(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
    ) -> BrokerOrder:
        """A pending order's price and SL/TP (ORDER_MODIFY), or the SL/TP of the position a filled order opened
        (POSITION_MODIFY). The EA sets SL and TP to what the request says, 0 when it says nothing, so the current
        ones are always sent along."""
        rec = self.records.get(client_order_id)
        if rec is None:
            raise OrderNotFoundError(f"no MT5 order for {client_order_id}")
        if quantity is not None and quantity != rec.volume:
            raise ModificationError("MT5 cannot change the volume of an order")
        try:
            if rec.state in ("NEW", "PARTIALLY_FILLED") and rec.action_type in PENDING:
                return await self._modify_pending(rec, limit_price or stop_price, stop_loss, take_profit)
            if rec.state == "FILLED" and (stop_loss is not None or take_profit is not None):
                return await self._modify_position(rec, stop_loss, take_profit)
        except ModificationError:
            raise
        except OrderError as err:
            raise ModificationError(err.message, code=err.code) from None
        raise ModificationError(f"order {client_order_id} is {rec.state}: nothing to modify")

    async def _modify_pending(
        self, rec: TicketRecord, price: Decimal | None, stop_loss: Decimal | None, take_profit: Decimal | None
    ) -> BrokerOrder:
        ticket = await self._ticket_for_request(rec)
        row = next(o for o in await self.orders_open() if o.ticket == ticket)
        new_price = price if price is not None else row.price
        sl = stop_loss if stop_loss is not None else row.stop_loss
        tp = take_profit if take_profit is not None else row.take_profit
        await self._trade(
            {
                "action": "TRADE",
                "actionType": "ORDER_MODIFY",
                "symbol": rec.symbol,
                "id": ticket,
                "price": float(new_price),
                "stoploss": float(sl),
                "takeprofit": float(tp),
            },
            None,
        )
        rec.price, rec.stop_loss, rec.take_profit = new_price, sl or None, tp or None
        await self._save(rec)
        return rec.view()

    async def _modify_position(
        self, rec: TicketRecord, stop_loss: Decimal | None, take_profit: Decimal | None
    ) -> BrokerOrder:
        rows, hidden = await self._listing()
        held: PositionRow | None
        if self.hedging and rec.position_id is not None:
            if self._resolve_position(rec, rows):
                await self._save(rec)
            held, ticket = self._hedged(rec.symbol, rec.position_id, rows, hidden)
            if held is not None and held.symbol != rec.symbol:
                raise ModificationError(f"position {ticket} is {held.symbol}, not {rec.client_order_id}'s")
        else:
            held = None if self.hedging else next((p for p in rows if p.symbol == rec.symbol), None)
            if held is None:
                raise ModificationError(f"no open position for {rec.client_order_id} at MT5")
            ticket = held.id
        if held is not None:
            cur_sl, cur_tp = held.stop_loss, held.take_profit
        else:
            # the stock EA's listing hides this ticket: changed by ticket, the other level as we last set it
            # (CTrade answers 0, "not sent", if the ticket is gone)
            cur_sl, cur_tp = rec.stop_loss or ZERO, rec.take_profit or ZERO
        if not addressable(ticket):
            raise ModificationError(f"position {ticket} is beyond the EA's 32-bit ids: change it in the terminal")
        sl = stop_loss if stop_loss is not None else cur_sl
        tp = take_profit if take_profit is not None else cur_tp
        await self._trade(
            {
                "action": "TRADE",
                "actionType": "POSITION_MODIFY",
                "symbol": rec.symbol,
                "id": ticket,
                "stoploss": float(sl),
                "takeprofit": float(tp),
            },
            None,
        )
        rec.stop_loss, rec.take_profit = sl or None, tp or None
        await self._save(rec)
        return rec.view()

    async def get_order_status(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        rec = self.records.get(client_order_id)
        if rec is None:
            raise OrderNotFoundError(f"no MT5 order for {client_order_id}")
        if rec.state in ("sending", "unknown"):
            return await self._existing(rec)
        if rec.state in ("NEW", "PARTIALLY_FILLED"):
            await self.poll_working()
        return await self._view(rec)

    async def resume(self, orders: Any) -> None:
        """Commands delivered again or remembered across a restart: their records settle them (never a resend).
        A record with fills or a final state is handed over again (the gateway had not finished reporting it:
        it still remembers the command; reports have fixed ids, so a repeat publishes nothing). Records loaded at
        start that the gateway does not remember were reported: from now on they may be pruned."""
        for cmd in orders:
            rec = self.records.get(cmd.client_order_id)
            if rec is None:
                continue
            if rec.state in ("sending", "unknown"):
                with contextlib.suppress(BrokerError):
                    if await self.settle(rec):
                        await self._publish(rec)
            elif rec.fills or rec.final:
                await self._publish(rec)
        self._held.clear()

    # ------------------------------------------------------------------------------ market data

    async def get_order_book(self, symbol: str, depth: int = 10) -> OrderBook:
        """The stock EA has no book: one level from the last tick (a BOOK extension is used when present)."""
        reply = await self.request({"action": "BOOK", "symbol": symbol, "depth": depth})
        if reply.get("error") is False and isinstance(reply.get("bids"), list):
            return OrderBook(
                symbol=symbol,
                bids=[BookLevel(num(p), num(s)) for p, s in reply["bids"]][:depth],
                asks=[BookLevel(num(p), num(s)) for p, s in reply["asks"]][:depth],
                ts_ns=time.time_ns(),
            )
        if str(reply.get("lastError")) == "4301":
            raise SymbolNotFoundError(f"unknown symbol {symbol}", code="4301")
        tick = self.ticks.get(symbol)
        if tick is None:
            raise BrokerError(f"no book from the EA and no tick yet for {symbol}")
        return OrderBook(
            symbol=symbol, bids=[BookLevel(tick.bid, ZERO)], asks=[BookLevel(tick.ask, ZERO)], ts_ns=tick.ts_ns
        )

    async def symbol_info(self, symbol: str) -> InstrumentOverride | None:
        """What the EA says about a symbol: the SYMBOLINFO extension, flat or nested as ejtraderMT's
        ``{"data": {...}}``; None from a stock EA (it answers 65538, wrong action)."""
        r = await self.request({"action": "SYMBOLINFO", "symbol": symbol})
        if isinstance(r.get("data"), dict):  # ejtraderMT's GetSymbolInfo (Include/ejtraderMT/SymbolsInfo.mqh)
            d = r["data"]
            r = {
                "error": r.get("error", False),
                "contract_size": d.get("trade_contract_size"),
                "point": d.get("trade_tick_size") or d.get("point"),
                "volume_min": d.get("volume_min"),
                "volume_max": d.get("volume_max"),
                "volume_step": d.get("volume_step"),
                "currency_base": d.get("currency_base"),
                "currency_profit": d.get("currency_profit"),
                "calc_mode": d.get("trade_calc_mode"),
            }
        if r.get("error") is True or r.get("contract_size") is None:
            return None
        return InstrumentOverride(
            kind="forex" if r.get("calc_mode") in ("FOREX", "SYMBOL_CALC_MODE_FOREX") else "cfd",
            base_currency=r.get("currency_base"),
            quote_currency=r.get("currency_profit"),
            contract_size=num(r["contract_size"]),
            lot_step=num(r.get("volume_step")),
            min_lot=num(r.get("volume_min")),
            max_lot=num(r.get("volume_max")),
            tick_size=num(r.get("point")),
        )

    async def instruments(self) -> dict[str, InstrumentOverride]:
        """The configured symbols as the EA describes them; a stock EA describes none (the file stands)."""
        reports = {}
        for symbol in self.symbols:
            try:
                report = await self.symbol_info(symbol)
            except BrokerError as exc:
                self.log.warning("symbol info not available", symbol=symbol, error=str(exc))
                continue
            if report is not None:
                reports[symbol] = report
        return reports
