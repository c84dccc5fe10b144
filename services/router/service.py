from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from ordermesh import metrics
from ordermesh.bus import Bus, stream_seq
from ordermesh.ids import client_order_id, place_command_id
from ordermesh.log import bind_ids
from ordermesh.orders import Applied, Ev, InvalidTransition, OrderRecord
from ordermesh.routing import decide
from ordermesh.runtime import RetryLater, Service
from ordermesh.subjects import EXEC, KV_ORDERS, ORDERS, kv_key
from ordermesh.wire import EXEC_CODEC, ORDER_CODEC, ExecEvent, OrderDenied, OrderRequest, OrderStatus


class OrderStore:
    """Orders by client order id: memory in front of the ``om_orders`` KV bucket (the state of record, so a
    restarted router continues where it stopped). Open orders stay in memory; a finished one is evicted once
    written. ``locked(coid)`` serialises the order and exec consumers on one order while different orders
    proceed concurrently."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._cache: dict[str, OrderRecord] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def locked(self, coid: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(coid) or (asyncio.Lock(), 0)
        self._locks[coid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[coid]
            if users == 1:
                del self._locks[coid]
            else:
                self._locks[coid] = (lock, users - 1)

    async def get(self, coid: str) -> OrderRecord | None:
        rec = self._cache.get(coid)
        if rec is not None:
            return rec
        try:
            entry = await (await self._bus.kv(KV_ORDERS)).get(kv_key(coid))
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        rec = msgspec.msgpack.decode(entry.value, type=OrderRecord)
        if rec.is_open:
            self._cache[coid] = rec
        return rec

    async def put(self, rec: OrderRecord) -> None:
        await (await self._bus.kv(KV_ORDERS)).put(kv_key(rec.client_order_id), msgspec.msgpack.encode(rec))
        if rec.is_open:
            self._cache[rec.client_order_id] = rec
        else:
            self._cache.pop(rec.client_order_id, None)

    @property
    def open_orders(self) -> int:
        return len(self._cache)


class RouterService(Service):
    name = "router"

    def default_http_port(self) -> int:
        return self.config.http.router

    async def setup(self) -> None:
        self.store = OrderStore(self.bus)
        self.consume(
            stream=ORDERS,
            durable="router",
            filter_subject=self.subjects.all_orders,
            codec=ORDER_CODEC,
            handler=self.on_order,
            lane=lambda req: f"{req.intent.account}\x1f{req.intent.intent_id}",
        )
        self.consume(
            stream=EXEC,
            durable="router-exec",
            filter_subject=self.subjects.all_exec,
            codec=EXEC_CODEC,
            handler=self.on_exec,
            lane=lambda event: event.client_order_id,
        )

    async def on_order(self, req: OrderRequest, msg: Msg) -> None:
        intent = req.intent
        coid = client_order_id(intent.account, intent.intent_id)
        with bind_ids(intent_id=intent.intent_id, client_order_id=coid, strategy_id=intent.strategy_id):
            async with self.store.locked(coid):
                existing = await self.store.get(coid)
                if existing is not None:
                    # Already sent: a repeat of the same intent never reaches a broker again.
                    self.log.info("duplicate order request ignored", status=existing.status.value)
                    metrics.MESSAGES.labels(self.name, "router", "duplicate").inc()
                    return
                decision = decide(req, coid, self.config.router, set(self.config.gateways), time.time_ns())
                if isinstance(decision, OrderDenied):
                    await self.bus.publish(self.subjects.reject(intent.strategy_id), decision, msg_id=f"deny:{coid}")
                    metrics.DENIALS.labels(decision.category.value).inc()
                    metrics.ORDERS.labels(OrderStatus.DENIED.value).inc()
                    self.log.info("order denied", reason=decision.reason)
                    return
                cmd = decision
                # Command first, record second: a crash in between redelivers this request, which finds no
                # record and republishes the same command id, dropped by the stream as a duplicate.
                await self.bus.publish(self.subjects.cmd(cmd.broker_id), cmd, msg_id=place_command_id(coid))
                rec = OrderRecord.from_command(cmd)
                rec.transition(Ev.SUBMIT)
                await self.store.put(rec)
            metrics.ORDERS.labels(OrderStatus.SUBMITTED.value).inc()
            metrics.HOP_SECONDS.labels("order_to_command").observe(max(0, time.time_ns() - req.ts_ns) / 1e9)
            self.log.debug("order submitted", broker_id=cmd.broker_id, quantity=str(cmd.quantity))

    async def on_exec(self, event: ExecEvent, msg: Msg) -> None:
        with bind_ids(intent_id=event.intent_id, client_order_id=event.client_order_id):
            async with self.store.locked(event.client_order_id):
                rec = await self.store.get(event.client_order_id)
                if rec is None:
                    # The order's record may not be written yet (a redelivered order request after a restart):
                    # try again shortly; the runtime gives up, counted, after max_attempts.
                    raise RetryLater(f"no order record for {event.client_order_id} yet (seq {stream_seq(msg)})")
                before = rec.status
                try:
                    applied = rec.apply(event)
                except InvalidTransition as exc:
                    # Logged and counted; the record stays as it was and nothing is fanned out.
                    metrics.INVALID_EVENTS.labels(type(event).__name__, before.value).inc()
                    self.log.warning("invalid order event refused", event=type(event).__name__, detail=str(exc))
                    return
                if applied is Applied.DUPLICATE:
                    metrics.MESSAGES.labels(self.name, "router-exec", "duplicate").inc()
                    return
                await self.store.put(rec)
            if rec.status is not before:
                metrics.ORDERS.labels(rec.status.value).inc()
