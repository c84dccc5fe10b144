"""MetaTrader 5 over ZeroMQ: a ``BrokerClient`` speaking the public MQL5-JSON-API expert advisor's protocol.

The EA binds; we connect. Command REQ/REP (the EA answers ``OK``), data PUSH->PULL (the JSON reply to each
command), live PUSH->PULL (ticks after a ``CONFIG`` subscription), trade events PUSH->PULL (request/result pairs).
Replies carry no request id and match requests only by order, so one request is in flight per connection (a
lock); data left over from an abandoned request is drained before the next one; a REQ socket that timed out is
closed and recreated with its data socket. A TRADE without a known ``symbol`` makes the EA push an error before
the reply, so TRADE replies are read up to the message that carries ``retcode``.

Tickets: the order ticket (``broker_order_id``), the deal ticket (the fill id) and the position id are kept apart,
by client order id, in a :class:`TicketStore` (JetStream KV ``om_mt5`` in a gateway) the moment a reply or a trade
event reveals them. The client order id travels as the MT5 comment, which the EA returns only in trade events.
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
import zmq.asyncio

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
from ordermesh.brokers.mt5.protocol import (
    DEALING,
    DONE,
    MARKET,
    PLACED,
    PRICE_RETRY,
    SUCCESS,
    TOO_MANY,
    ZERO,
    _json,
    num,
    retcode_error,
)
from ordermesh.brokers.mt5.tickets import KvTicketStore, MemoryTicketStore, TicketRecord, TicketStore
from ordermesh.contract.subjects import KV_MT5
from ordermesh.contract.wire import OrderType, PlaceOrder, Quote, Side
from ordermesh.platform import metrics
from ordermesh.sizing.instruments import InstrumentOverride

log = structlog.get_logger("mt5")

if TYPE_CHECKING:
    from nats.js.kv import KeyValue


class MT5Adapter(BrokerClient):
    """A gateway's connection to one MT5 terminal running the MQL5-JSON-API EA (or ``ordermesh mt5-sim``)."""

    # Tickets are persisted (KV om_mt5) the moment a reply or event reveals them, so a restart can reconcile.
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
        match_window_s: int = 120,
        store: TicketStore | None = None,
    ) -> None:
        super().__init__(broker_id)
        self.host = host
        self.ports = (command_port, data_port, live_port, events_port)
        self.single_socket = single_socket
        self.timeout = request_timeout_s
        self.heartbeat_interval = heartbeat_interval_s
        self.currency = currency
        self.symbols = symbols
        self.match_window_s = match_window_s
        self.store: TicketStore = store or MemoryTicketStore()
        self.records: dict[str, TicketRecord] = {}
        self.ambiguous: dict[str, list[int]] = {}  # client order id (or "ticket:<n>") -> candidate tickets
        self.connected = False
        self.ticks: dict[str, Quote] = {}
        self.log = log.bind(broker_id=broker_id)
        self._ctx: zmq.asyncio.Context | None = None
        self._cmd: zmq.asyncio.Socket | None = None
        self._data: zmq.asyncio.Socket | None = None
        self._lock = asyncio.Lock()
        self._updates: asyncio.Queue[BrokerOrder] = asyncio.Queue()
        self._quotes: asyncio.Queue[Quote] = asyncio.Queue(maxsize=10_000)
        self._emitted: dict[str, tuple[str, int]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._was_connected = False

    # ------------------------------------------------------------------------------ connection

    def unresolved(self) -> dict[str, list[str]]:
        return {key: [str(t) for t in tickets] for key, tickets in self.ambiguous.items()}

    def use_state_store(self, kv: KeyValue) -> None:
        self.store = KvTicketStore(kv, self.broker_id)

    def _url(self, port: int) -> str:
        return f"tcp://{self.host}:{port}"

    def _open(self) -> None:
        assert self._ctx is not None
        self._cmd = self._ctx.socket(zmq.REQ)
        self._cmd.setsockopt(zmq.LINGER, 0)
        self._cmd.connect(self._url(self.ports[0]))
        if not self.single_socket:
            self._data = self._ctx.socket(zmq.PULL)
            self._data.setsockopt(zmq.LINGER, 0)
            self._data.connect(self._url(self.ports[1]))

    def _reset(self) -> None:
        """A REQ socket that timed out cannot send again: close it (and its data socket, whose queue may hold the
        late reply) and open fresh ones."""
        for sock in (self._cmd, self._data):
            if sock is not None:
                sock.close(0)
        self._cmd = self._data = None
        if self._ctx is not None:
            self._open()

    async def connect(self) -> None:
        if self._ctx is not None:
            return
        self._ctx = zmq.asyncio.Context()
        for r in await self.store.load():
            self.records[r.client_order_id] = r
        self._open()
        self._tasks.append(asyncio.create_task(self._heartbeat_loop()))
        if not self.single_socket:
            self._tasks.append(asyncio.create_task(self._pull_loop(self.ports[3], self._on_event)))
        self._tasks.append(asyncio.create_task(self._pull_loop(self.ports[2], self._on_tick)))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for sock in (self._cmd, self._data):
            if sock is not None:
                sock.close(0)
        self._cmd = self._data = None
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def _set_connected(self, up: bool) -> None:
        self.connected = up
        metrics.BROKER_CONNECTED.labels(self.broker_id).set(1 if up else 0)
        if up:
            metrics.BROKER_LAST_HEARTBEAT.labels(self.broker_id).set(time.time())

    # ------------------------------------------------------------------------------ requests

    async def request(self, payload: dict[str, Any], *, trade: bool = False) -> dict[str, Any]:
        """One request, one reply; raises BrokerConnectionError when the EA does not answer in time."""
        if not payload or not payload.get("action"):
            raise ValueError("never send an empty request: it wedges the EA's command socket")
        if trade and not payload.get("symbol"):
            raise ValueError("a TRADE request needs its symbol (the EA shifts every later reply otherwise)")
        async with self._lock:
            if self._ctx is None:
                raise BrokerConnectionError("not connected")
            if self._cmd is None:
                self._open()
            assert self._cmd is not None
            started = time.perf_counter()
            try:
                await self._drain()
                await self._cmd.send(msgspec.json.encode(payload))
                first = await asyncio.wait_for(self._cmd.recv(), self.timeout)
                if self.single_socket:
                    reply = self._decode(first)
                else:
                    assert self._data is not None
                    before: list[dict[str, Any]] = []
                    while True:
                        reply = self._decode(await asyncio.wait_for(self._data.recv(), self.timeout))
                        if not trade or "retcode" in reply:
                            break
                        self.log.info("EA error before the trade reply", reply=reply)
                        before.append(reply)
                    if before:
                        reply["_errors_before"] = before
            except (TimeoutError, zmq.ZMQError) as exc:
                self._reset()
                self._set_connected(False)
                raise BrokerConnectionError(f"MT5 EA did not answer {payload['action']} in time") from exc
            metrics.MT5_REQUEST_SECONDS.labels(self.broker_id, str(payload["action"])).observe(
                time.perf_counter() - started
            )
            return reply

    async def _drain(self) -> None:
        if self._data is None:
            return
        while True:
            try:
                stale = await self._data.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.log.warning("stale EA message dropped", size=len(stale))

    def _decode(self, raw: bytes) -> dict[str, Any]:
        try:
            value = _json.decode(raw)
        except msgspec.DecodeError:
            return {"error": True, "description": "undecodable reply", "raw": raw[:200].decode(errors="replace")}
        return value if isinstance(value, dict) else {"error": True, "description": "reply is not an object"}

    # ------------------------------------------------------------------------------ background

    async def _pull_loop(self, port: int, handler: Any) -> None:
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self._url(port))
        try:
            while True:
                raw = await sock.recv()
                try:
                    msg = self._decode(raw)
                    await handler(msg)
                except Exception:  # bad input never stops the loop
                    self.log.exception("bad message from the EA ignored")
        finally:
            sock.close(0)

    async def _on_tick(self, msg: dict[str, Any]) -> None:
        data = msg.get("data")
        symbol = msg.get("symbol")
        if msg.get("timeframe") != "TICK" or not isinstance(data, list) or len(data) < 3 or not symbol:
            return
        quote = Quote(broker_id=self.broker_id, symbol=str(symbol), bid=num(data[1]), ask=num(data[2]))
        self.ticks[quote.symbol] = quote
        with contextlib.suppress(asyncio.QueueFull):
            self._quotes.put_nowait(quote)

    async def quotes(self) -> AsyncIterator[Quote]:
        """Ticks from the live socket, as quotes (the gateway publishes them on ``om.md.*``)."""
        while True:
            yield await self._quotes.get()

    async def _on_event(self, msg: dict[str, Any]) -> None:
        """A trade event: the only place the EA shows the comment, i.e. our client order id."""
        req, res = msg.get("request"), msg.get("result")
        if not isinstance(req, dict) or not isinstance(res, dict):
            return
        rec = self.records.get(str(req.get("comment") or ""))
        if rec is None or int(res.get("retcode") or 0) not in SUCCESS:
            return
        order = int(res.get("order") or 0)
        if order and rec.order is None:
            rec.order = order
            await self.store.put(rec)
            self.log.info("ticket learned from trade event", client_order_id=rec.client_order_id, order=order)
        if rec.state == "unknown":
            await self._emit_resolution(rec)

    async def _emit_resolution(self, rec: TicketRecord) -> None:
        try:
            found = await self._resolve(rec)
        except BrokerConnectionError:
            return
        if found is not None:
            self._emit(found)

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
                    await self.reconcile()
                else:
                    self._set_connected(True)
                    await self.poll_working()
            except BrokerConnectionError:
                self._set_connected(False)
            except Exception:
                self.log.exception("heartbeat failed")
            await asyncio.sleep(self.heartbeat_interval)

    # ------------------------------------------------------------------------------ BrokerClient

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

    @staticmethod
    def action_type(order: PlaceOrder) -> str:
        side = "BUY" if order.side is Side.BUY else "SELL"
        if order.order_type is OrderType.MARKET:
            return f"ORDER_TYPE_{side}"
        if order.order_type is OrderType.LIMIT:
            return f"ORDER_TYPE_{side}_LIMIT"
        if order.order_type is OrderType.STOP:
            return f"ORDER_TYPE_{side}_STOP"
        raise OrderError("MT5 JSON API has no stop-limit orders")

    async def place_order(self, order: PlaceOrder) -> BrokerOrder:
        coid = order.client_order_id
        rec = self.records.get(coid)
        if rec is not None:
            if rec.state in ("sending", "unknown"):
                found = await self._resolve(rec)
                if found is not None:
                    return found
                self.log.info("unknown outcome resolved: never placed; placing now", client_order_id=coid)
            else:
                return await self.get_order_status(coid)
        if order.position_id is not None:
            return await self._close_position(order)
        kind = self.action_type(order)
        price = order.limit_price if order.order_type is OrderType.LIMIT else order.stop_price
        rec = TicketRecord(client_order_id=coid, symbol=order.symbol, side=order.side, action_type=kind,
                           volume=order.quantity, price=price, sent_s=int(time.time()) - 1)  # fmt: skip
        self.records[coid] = rec
        await self.store.put(rec)  # before sending: a crash after it leaves an outcome to resolve, never a repeat
        payload: dict[str, Any] = {"action": "TRADE", "actionType": kind, "symbol": order.symbol,
                                   "volume": float(order.quantity), "comment": coid}  # fmt: skip
        if price is not None:
            payload["price"] = float(price)
        if order.stop_loss is not None:
            payload["stoploss"] = float(order.stop_loss)
        if order.take_profit is not None:
            payload["takeprofit"] = float(order.take_profit)
        if order.expire_at_ns:
            payload["expiration"] = order.expire_at_ns // 1_000_000_000
        reply = await self._trade(payload, rec)
        retcode = int(reply.get("retcode") or 0)
        rec.order = int(reply.get("order") or 0) or rec.order
        if retcode == PLACED:
            rec.state = "NEW"
        else:
            volume, px = num(reply.get("volume")), num(reply.get("price"))
            deal = reply.get("deal")
            # The stock EA does not return the deal ticket (its line is commented out): a market order's single
            # deal is then named after its order ticket. See deploy/mt5/README.md for the one-line EA patch.
            fill_id = str(deal) if deal is not None else f"o{rec.order}"
            # MT5 names a position after the order that opened it: on a hedging account every market order
            # without a position opens its own. (On a netting account a fill that adds to a position keeps the
            # older id; the netting books do not use the id.)
            if kind in ("ORDER_TYPE_BUY", "ORDER_TYPE_SELL") and rec.order:
                rec.position_id = rec.order
            if volume > 0:
                rec.fills.append(BrokerFill(fill_id=fill_id, quantity=volume, price=px, ts_ns=time.time_ns(),
                                            position_id=self._pid(rec)))  # fmt: skip
            rec.state = "FILLED" if retcode == DONE or volume >= rec.volume else "PARTIALLY_FILLED"
        await self.store.put(rec)
        return rec.view()

    @staticmethod
    def _pid(rec: TicketRecord) -> str | None:
        return None if rec.position_id is None else str(rec.position_id)

    async def _close_position(self, order: PlaceOrder) -> BrokerOrder:
        """Close (part of) one position by its ticket, as the EA does it: ``POSITION_CLOSE_ID`` for the whole
        volume, ``POSITION_PARTIAL`` with ``volume`` for less; ``id`` is the position ticket. The EA ignores the
        comment of a close, so the reply is the only place its order and deal tickets are learned."""
        coid = order.client_order_id
        try:
            ticket = int(str(order.position_id))
        except ValueError:
            raise OrderError(f"position id {order.position_id!r} is not an MT5 position ticket") from None
        if order.order_type is not OrderType.MARKET:
            raise OrderError("MT5 closes a position by id only at market")
        held = next((p for p in await self.get_positions() if p.position_id == str(ticket)), None)
        if held is not None and (held.symbol != order.symbol or (held.quantity > 0) == (order.side is Side.BUY)):
            wrong = f"{order.side.value} does not close it"
            raise OrderError(f"position {ticket} is {held.quantity} {held.symbol}: {wrong}")
        # A hedging listing of the stock EA can hide a position behind its symbol's first one: not listed, the
        # order's own volume is sent as a partial close (MT5 closes it all when it is the whole volume).
        whole = held is not None and order.quantity >= abs(held.quantity)
        kind = "POSITION_CLOSE_ID" if whole else "POSITION_PARTIAL"
        rec = TicketRecord(client_order_id=coid, symbol=order.symbol, side=order.side, action_type=kind,
                           volume=order.quantity, sent_s=int(time.time()) - 1, position_id=ticket)  # fmt: skip
        self.records[coid] = rec
        await self.store.put(rec)
        payload: dict[str, Any] = {"action": "TRADE", "actionType": kind, "symbol": order.symbol, "id": ticket,
                                   "comment": coid}  # fmt: skip
        if not whole:
            payload["volume"] = float(order.quantity)
        reply = await self._trade(payload, rec)
        rec.order = int(reply.get("order") or 0) or rec.order
        volume, px, deal = num(reply.get("volume")), num(reply.get("price")), reply.get("deal")
        if volume > 0:
            fill_id = str(deal) if deal is not None else f"o{rec.order}"
            rec.fills.append(BrokerFill(fill_id=fill_id, quantity=volume, price=px, ts_ns=time.time_ns(),
                                        position_id=str(ticket)))  # fmt: skip
        # a position smaller than the order: it is closed, the rest can never fill (a ticket does not flip)
        rec.state = "FILLED" if volume >= rec.volume else "CANCELED"
        await self.store.put(rec)
        return rec.view()

    async def _trade(self, payload: dict[str, Any], rec: TicketRecord | None) -> dict[str, Any]:
        """Send a TRADE with the retcode discipline: one retry on requote/price change, backoff on too many
        requests, unknown outcome on connection and timeout."""
        price_retried, backoffs = False, 0
        while True:
            try:
                reply = await self.request(payload, trade=True)
            except BrokerConnectionError:
                if rec is not None:
                    await self._mark_unknown(rec)
                raise
            retcode = int(reply.get("retcode") or 0)
            if retcode in PRICE_RETRY and not price_retried:
                price_retried = True
                continue
            if retcode == TOO_MANY and backoffs < 3:
                await asyncio.sleep(0.05 * 2**backoffs)
                backoffs += 1
                continue
            if any(e.get("lastError") == "4301" for e in reply.get("_errors_before", ())):
                raise SymbolNotFoundError(f"unknown symbol {payload.get('symbol')}", code="4301")
            err = retcode_error(retcode, reply.get("desription"))
            if err is not None:
                if rec is not None:
                    if isinstance(err, BrokerConnectionError):
                        await self._mark_unknown(rec)
                    else:
                        rec.state = "REJECTED"
                        await self.store.put(rec)
                raise err
            return reply

    async def _mark_unknown(self, rec: TicketRecord) -> None:
        rec.state = "unknown"
        await self.store.put(rec)
        self.log.warning("order outcome unknown until a status query resolves it", client_order_id=rec.client_order_id)

    async def cancel_order(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        rec = self.records.get(client_order_id)
        if rec is None:
            raise OrderNotFoundError(f"no MT5 order for {client_order_id}")
        current = await self.get_order_status(client_order_id)
        if current.state not in (BrokerOrderState.NEW, BrokerOrderState.PARTIALLY_FILLED):
            return current
        payload = {"action": "TRADE", "actionType": "ORDER_CANCEL", "symbol": rec.symbol, "id": rec.order}
        try:
            await self._trade(payload, None)
        except OrderError:
            return await self.get_order_status(client_order_id)  # filled or gone meanwhile
        rec.state = "CANCELED"
        await self.store.put(rec)
        return rec.view()

    async def modify_order(
        self,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> BrokerOrder:
        rec = self.records.get(client_order_id)
        if rec is None:
            raise OrderNotFoundError(f"no MT5 order for {client_order_id}")
        if quantity is not None and quantity != rec.volume:
            raise ModificationError("MT5 cannot change the volume of a pending order")
        price = limit_price if limit_price is not None else stop_price
        if price is None:
            return rec.view()
        payload = {"action": "TRADE", "actionType": "ORDER_MODIFY", "symbol": rec.symbol, "id": rec.order,
                   "price": float(price)}  # fmt: skip
        try:
            await self._trade(payload, None)
        except ModificationError:
            raise
        except OrderError as err:
            raise ModificationError(err.message, code=err.code) from None
        rec.price = price
        await self.store.put(rec)
        return rec.view()

    async def get_order_status(self, client_order_id: str, broker_order_id: str | None = None) -> BrokerOrder:
        rec = self.records.get(client_order_id)
        if rec is None:
            raise OrderNotFoundError(f"no MT5 order for {client_order_id}")
        if rec.state in ("sending", "unknown"):
            found = await self._resolve(rec)
            if found is None:
                raise OrderNotFoundError(f"{client_order_id} never reached MT5")
            return found
        if rec.state in ("NEW", "PARTIALLY_FILLED"):
            await self._refresh_working(rec)
        return rec.view()

    async def get_order_book(self, symbol: str, depth: int = 10) -> OrderBook:
        reply = await self.request({"action": "BOOK", "symbol": symbol, "depth": depth})
        if reply.get("error") is False and isinstance(reply.get("bids"), list):
            return OrderBook(
                symbol=symbol,
                bids=[BookLevel(num(p), num(s)) for p, s in reply["bids"]][:depth],
                asks=[BookLevel(num(p), num(s)) for p, s in reply["asks"]][:depth],
                ts_ns=time.time_ns(),
            )
        if reply.get("lastError") == "4301":
            raise SymbolNotFoundError(f"unknown symbol {symbol}", code="4301")
        tick = self.ticks.get(symbol)  # an EA without BOOK: one level from the last tick
        if tick is None:
            raise BrokerError(f"no book from the EA and no tick yet for {symbol}")
        return OrderBook(symbol=symbol, bids=[BookLevel(tick.bid, ZERO)], asks=[BookLevel(tick.ask, ZERO)],
                         ts_ns=tick.ts_ns)  # fmt: skip

    async def symbol_info(self, symbol: str) -> InstrumentOverride | None:
        """What the EA says about a symbol (SYMBOLINFO extension); None when it does not answer it."""
        r = await self.request({"action": "SYMBOLINFO", "symbol": symbol})
        if r.get("error") is not False or "contract_size" not in r:
            return None
        return InstrumentOverride(
            kind="forex" if r.get("calc_mode") == "FOREX" else "cfd",
            base_currency=r.get("currency_base"),
            quote_currency=r.get("currency_profit"),
            contract_size=num(r["contract_size"]),
            lot_step=num(r.get("volume_step")),
            min_lot=num(r.get("volume_min")),
            max_lot=num(r.get("volume_max")),
            tick_size=num(r.get("point")),
        )

    async def instruments(self) -> dict[str, InstrumentOverride]:
        """The configured symbols as the EA describes them. An EA without the SYMBOLINFO extension answers
        nothing (the instruments file stands); a symbol it cannot describe is logged and left out."""
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

    async def get_positions(self) -> list[BrokerPosition]:
        reply = await self.request({"action": "POSITIONS"})
        seen: dict[int, BrokerPosition] = {}
        for p in reply.get("positions") or []:
            if not isinstance(p, dict) or p.get("id") is None:
                continue  # the EA lists an empty object when there are no positions
            pid = int(p["id"])
            if pid in seen:
                self.log.warning("EA listing repeats a position (hedging quirk of the upstream EA)", position_id=pid)
                continue
            sign = -1 if p.get("type") == "POSITION_TYPE_SELL" else 1
            seen[pid] = BrokerPosition(symbol=str(p.get("symbol")), quantity=num(p.get("volume")) * sign,
                                       avg_price=num(p.get("open")), position_id=str(pid))  # fmt: skip
        return list(seen.values())

    # ------------------------------------------------------------------------------ reconciliation

    async def _orders_open(self) -> dict[int, dict[str, Any]]:
        reply = await self.request({"action": "ORDERS"})
        out = {}
        for o in reply.get("orders") or []:
            if isinstance(o, dict) and o.get("id") is not None:
                out[int(o["id"])] = o  # ORDERS ids are strings
        return out

    async def _deals(self, since_s: int) -> list[dict[str, Any]]:
        reply = await self.request({"action": "HISTORY", "actionType": "TRADES", "symbol": "", "fromDate": since_s})
        return [d for d in reply.get("trades") or [] if isinstance(d, dict) and d.get("ticket") is not None]

    def _claimed(self) -> tuple[set[str], set[int]]:
        fills = {f.fill_id for r in self.records.values() for f in r.fills}
        orders = {r.order for r in self.records.values() if r.order is not None}
        return fills, orders

    async def _refresh_working(self, rec: TicketRecord) -> None:
        if rec.order is None or rec.order in await self._orders_open():
            return
        deals = [d for d in await self._deals(rec.sent_s) if d.get("order") == rec.order]
        if not deals and self._stock_history(await self._deals(rec.sent_s)):
            deals = self._match_deals(rec, await self._deals(rec.sent_s))
            if len(deals) > 1:
                self._report_ambiguous(rec.client_order_id, [int(d["ticket"]) for d in deals], "fill")
                return
        known = {f.fill_id for f in rec.fills}
        for d in deals:
            if str(d["ticket"]) not in known:
                if d.get("position_id") is not None:
                    rec.position_id = int(d["position_id"])
                rec.fills.append(BrokerFill(fill_id=str(d["ticket"]), quantity=num(d.get("volume")),
                                            price=num(d.get("price")), commission=-num(d.get("commission")),
                                            commission_asset=self.currency, position_id=self._pid(rec),
                                            ts_ns=int(d.get("time") or 0) * 10**9))  # fmt: skip
        filled = sum((f.quantity for f in rec.fills), ZERO)
        rec.state = "FILLED" if filled >= rec.volume else "CANCELED"  # gone from ORDERS: the rest was canceled
        await self.store.put(rec)

    @staticmethod
    def _stock_history(deals: list[dict[str, Any]]) -> bool:
        return bool(deals) and all("order" not in d for d in deals)

    def _match_deals(self, rec: TicketRecord, deals: list[dict[str, Any]]) -> list[dict[str, Any]]:
        claimed, _ = self._claimed()
        side = "Buy" if rec.side is Side.BUY else "Sell"
        return [
            d for d in deals
            if d.get("symbol") == rec.symbol and d.get("type") == side and num(d.get("volume")) == rec.volume
            and rec.sent_s - 1 <= int(d.get("time") or 0) <= rec.sent_s + self.match_window_s
            and str(d["ticket"]) not in claimed
            and (d.get("entry") in (0, 2, None) if rec.action_type in MARKET else d.get("entry") in (1, None))
            and (rec.action_type in MARKET or d.get("position_id") in (None, rec.position_id))
            and (rec.price is None or num(d.get("price")) == rec.price or "LIMIT" not in rec.action_type)
        ]  # fmt: skip

    def _report_ambiguous(self, key: str, tickets: list[int], kind: str) -> None:
        if self.ambiguous.get(key) != tickets:
            self.ambiguous[key] = tickets
            metrics.MT5_AMBIGUOUS.labels(self.broker_id, kind).inc()
            self.log.error("ambiguous MT5 tickets: reported to the operator, never guessed", key=key, tickets=tickets)

    async def _resolve(self, rec: TicketRecord) -> BrokerOrder | None:
        """Resolve an order whose TRADE reply was lost: its outcome, or None when it never reached MT5.
        Raises BrokerConnectionError while the EA is unreachable or when the match is ambiguous."""
        if rec.order is None:
            _, claimed_orders = self._claimed()
            deals = await self._deals(rec.sent_s - 1)
            side = "Buy" if rec.side is Side.BUY else "Sell"
            if rec.action_type in DEALING:
                matches = [d for d in self._match_deals(rec, deals)
                           if d.get("order") is None or int(d["order"]) not in claimed_orders]  # fmt: skip
                candidates = sorted({int(d["order"]) if d.get("order") is not None else -int(d["ticket"])
                                     for d in matches})  # fmt: skip
            else:
                open_orders = await self._orders_open()
                candidates = sorted(
                    t for t, o in open_orders.items()
                    if t not in claimed_orders and o.get("symbol") == rec.symbol and o.get("type") == rec.action_type
                    and num(o.get("volume")) == rec.volume and (rec.price is None or num(o.get("open")) == rec.price)
                )  # fmt: skip
                matches = []
                del side
            if not candidates:
                rec.state = "sending"
                await self.store.put(rec)
                return None
            if len(candidates) > 1:
                self._report_ambiguous(rec.client_order_id, candidates, "unknown_outcome")
                raise BrokerConnectionError(f"{rec.client_order_id}: {len(candidates)} MT5 tickets could be it")
            if candidates[0] < 0:  # stock EA history: the deal, without its order
                d = matches[0]
                rec.fills = [BrokerFill(fill_id=str(d["ticket"]), quantity=num(d["volume"]), price=num(d["price"]))]
                rec.order = -candidates[0]
                rec.state = "FILLED"
                await self.store.put(rec)
                return rec.view()
            rec.order = candidates[0]
            self.log.info("unknown outcome matched uniquely", client_order_id=rec.client_order_id, order=rec.order)
        rec.state = "NEW" if rec.action_type not in DEALING else "PARTIALLY_FILLED"
        if rec.state == "PARTIALLY_FILLED" and not rec.fills:
            rec.state = "NEW"
        await self._refresh_working_any(rec)
        return rec.view()

    async def _refresh_working_any(self, rec: TicketRecord) -> None:
        if rec.action_type in DEALING:
            deals = [d for d in await self._deals(rec.sent_s - 1) if d.get("order") == rec.order]
            for d in deals:
                if all(f.fill_id != str(d["ticket"]) for f in rec.fills):
                    if d.get("position_id") is not None:
                        rec.position_id = int(d["position_id"])
                    rec.fills.append(BrokerFill(fill_id=str(d["ticket"]), quantity=num(d.get("volume")),
                                                price=num(d.get("price")), commission=-num(d.get("commission")),
                                                commission_asset=self.currency,
                                                position_id=self._pid(rec)))  # fmt: skip
            filled = sum((f.quantity for f in rec.fills), ZERO)
            rec.state = "FILLED" if filled >= rec.volume else ("PARTIALLY_FILLED" if filled else "REJECTED")
            await self.store.put(rec)
        else:
            await self._refresh_working(rec)

    async def poll_working(self) -> None:
        """Pending orders fill on the server without a trade event: look at working orders each heartbeat."""
        for rec in list(self.records.values()):
            if rec.state in ("NEW", "PARTIALLY_FILLED") and rec.order is not None:
                before = (rec.state, len(rec.fills))
                await self._refresh_working(rec)
                if (rec.state, len(rec.fills)) != before:
                    self._emit(rec.view())
            elif rec.state == "unknown":
                await self._emit_resolution(rec)

    async def reconcile(self) -> None:
        """On every (re)connect: resolve unknown outcomes, refresh working orders (a fill missed while away is
        emitted once), resubscribe ticks."""
        for symbol in self.symbols:
            with contextlib.suppress(BrokerConnectionError):
                await self.request({"action": "CONFIG", "symbol": symbol, "chartTF": "TICK"})
        for rec in list(self.records.values()):
            if rec.state in ("unknown", "sending"):
                await self._emit_resolution(rec)
            elif rec.state in ("NEW", "PARTIALLY_FILLED"):
                before = (rec.state, len(rec.fills))
                await self._refresh_working(rec)
                if (rec.state, len(rec.fills)) != before:
                    self._emit(rec.view())
        self.log.info("reconciled with MT5", records=len(self.records), ambiguous=len(self.ambiguous))
