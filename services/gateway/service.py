from __future__ import annotations

import asyncio
import time

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from ordermesh import metrics
from ordermesh.broker import BrokerConnectionError, BrokerError, BrokerOrder, BrokerOrderState
from ordermesh.config import OrderMeshConfig
from ordermesh.execution import (
    broker_rejection,
    cancel_rejected,
    cancel_reports,
    modify_rejected,
    modify_reports,
    rejection,
    reports_for,
)
from ordermesh.instruments import InstrumentOverride, encode_override, instrument_key
from ordermesh.log import bind_ids
from ordermesh.paper import PaperBroker
from ordermesh.registry import BrokerRegistry, PaperSettings
from ordermesh.runtime import Service
from ordermesh.subjects import COMMANDS, KV_GATEWAY, KV_INSTRUMENTS, kv_key
from ordermesh.wire import (
    COMMAND_CODEC,
    CancelOrder,
    Command,
    ExecEvent,
    Heartbeat,
    ModifyOrder,
    OrderFilled,
    PlaceOrder,
    RejectCategory,
    encode,
)


class GatewayService(Service):
    name = "gateway"

    def __init__(self, config: OrderMeshConfig, broker_id: str, **kw: object) -> None:
        self.broker_id = broker_id
        self.registry = BrokerRegistry(config.brokers)
        self.settings = self.registry.settings(broker_id)  # ConfigError naming the problem
        super().__init__(config, **kw)  # type: ignore[arg-type]
        self.broker_connected = False
        self._orders: dict[str, PlaceOrder] = {}  # client order id -> the command that placed it

    def default_http_port(self) -> int:
        return self.config.http.gateway_base + sorted(self.config.brokers).index(self.broker_id)

    async def setup(self) -> None:
        self.adapter = self.registry.adapter(self.broker_id)
        await self.adapter.connect()
        self.broker_connected = await self.adapter.validate_connection()
        metrics.BROKER_CONNECTED.labels(self.broker_id).set(1 if self.broker_connected else 0)
        self.consume(
            stream=COMMANDS,
            durable=f"gw-{self.broker_id}",
            filter_subject=self.subjects.cmd(self.broker_id),
            codec=COMMAND_CODEC,
            handler=self.on_command,
            lane=lambda cmd: cmd.client_order_id,
        )
        self.spawn(self._order_updates(), "order-updates")
        if isinstance(self.adapter, PaperBroker):
            assert isinstance(self.settings, PaperSettings)
            await self.report_instruments(self.settings)
            self.spawn(self._paper_market(self.adapter), "paper-market")

    async def report_instruments(self, settings: PaperSettings) -> None:
        """Tell the router (KV ``om_instruments``) which symbols this venue trades, with their tick sizes."""
        kv = await self.bus.kv(KV_INSTRUMENTS)
        for symbol, feed in settings.symbols.items():
            report = InstrumentOverride(tick_size=feed.tick_size)
            await kv.put(instrument_key(self.broker_id, symbol), encode_override(report))

    async def teardown(self) -> None:
        await self.adapter.close()

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            service=self.name,
            instance=self.instance,
            started_ns=self.started_ns,
            connected=self.broker_connected,
            broker_id=self.broker_id,
            metrics_url=self.http_url,
        )

    def health(self) -> dict[str, object]:
        return {"nats_connected": self.bus.connected, "broker_connected": self.broker_connected}

    # ------------------------------------------------------------------------------ commands

    async def on_command(self, cmd: Command, msg: Msg) -> None:
        with bind_ids(client_order_id=cmd.client_order_id, command_id=cmd.command_id):
            if cmd.command_expires_ns is not None and time.time_ns() > cmd.command_expires_ns:
                self.log.warning("command expired before execution; refused")
                metrics.COMMANDS.labels(self.broker_id, type(cmd).__name__, "expired").inc()
                if isinstance(cmd, PlaceOrder):
                    await self.publish_reports(
                        cmd, [rejection(cmd, RejectCategory.EXPIRED, "command expired before it reached the broker")]
                    )
                return
            if isinstance(cmd, PlaceOrder):
                await self.on_place(cmd)
            elif isinstance(cmd, CancelOrder):
                await self.on_cancel(cmd)
            elif isinstance(cmd, ModifyOrder):
                await self.on_modify(cmd)

    async def call(self, operation: str, coro: object) -> BrokerOrder:
        started = time.perf_counter()
        try:
            return await coro  # type: ignore[misc]
        finally:
            metrics.BROKER_REQUEST_SECONDS.labels(self.broker_id, operation).observe(time.perf_counter() - started)

    async def on_place(self, cmd: PlaceOrder) -> None:
        with bind_ids(intent_id=cmd.intent_id):
            self._orders[cmd.client_order_id] = cmd
            try:
                order = await self.call("place_order", self.adapter.place_order(cmd))
            except BrokerConnectionError:
                # Unknown outcome: never reject by guess. Redelivery retries; the adapter is idempotent on the
                # client order id, so the retry finds the order if the first attempt reached the broker.
                metrics.COMMANDS.labels(self.broker_id, "PlaceOrder", "unknown").inc()
                raise
            except BrokerError as err:
                metrics.COMMANDS.labels(self.broker_id, "PlaceOrder", "rejected").inc()
                self.log.info("order rejected by broker", reason=err.message)
                await self.publish_reports(cmd, [broker_rejection(cmd, err)])
                return
            metrics.COMMANDS.labels(self.broker_id, "PlaceOrder", "ok").inc()
            metrics.HOP_SECONDS.labels("command_to_ack").observe(max(0, time.time_ns() - cmd.ts_ns) / 1e9)
            await self.publish_reports(cmd, reports_for(cmd, order))
            self._forget_if_done(order)
            if order.state in (BrokerOrderState.NEW, BrokerOrderState.PARTIALLY_FILLED):
                await self.remember(cmd)

    def _forget_if_done(self, order: BrokerOrder) -> None:
        # Only working orders need their command kept (to report fills that come later).
        if order.state not in (BrokerOrderState.NEW, BrokerOrderState.PARTIALLY_FILLED):
            self._orders.pop(order.client_order_id, None)

    async def on_cancel(self, cmd: CancelOrder) -> None:
        with bind_ids(intent_id=cmd.intent_id or None):
            try:
                order = await self.call(
                    "cancel_order", self.adapter.cancel_order(cmd.client_order_id, cmd.broker_order_id)
                )
            except BrokerConnectionError:
                raise  # unknown outcome: redelivered, and the cancel is idempotent
            except BrokerError as err:
                metrics.COMMANDS.labels(self.broker_id, "CancelOrder", "rejected").inc()
                self.log.info("cancel refused by broker", reason=err.message)
                await self.publish_reports(None, [cancel_rejected(cmd, err.message)], strategy_id=cmd.strategy_id)
                return
            events = cancel_reports(cmd, order)
            metrics.COMMANDS.labels(self.broker_id, "CancelOrder", type(events[0]).__name__).inc()
            await self.publish_reports(None, events, strategy_id=cmd.strategy_id)
            self._forget_if_done(order)

    async def on_modify(self, cmd: ModifyOrder) -> None:
        with bind_ids(intent_id=cmd.intent_id or None):
            try:
                order = await self.call(
                    "modify_order",
                    self.adapter.modify_order(
                        cmd.client_order_id,
                        quantity=cmd.quantity,
                        limit_price=cmd.limit_price,
                        stop_price=cmd.stop_price,
                    ),
                )
            except BrokerConnectionError:
                raise
            except BrokerError as err:
                metrics.COMMANDS.labels(self.broker_id, "ModifyOrder", "rejected").inc()
                self.log.info("modify refused by broker", reason=err.message)
                await self.publish_reports(None, [modify_rejected(cmd, err.message)], strategy_id=cmd.strategy_id)
                return
            metrics.COMMANDS.labels(self.broker_id, "ModifyOrder", "ok").inc()
            place = self._orders.get(cmd.client_order_id)
            if place is not None:  # later fills must be reported against the new terms
                self._orders[cmd.client_order_id] = msgspec.structs.replace(
                    place, quantity=order.quantity, limit_price=order.limit_price
                )
            await self.publish_reports(None, modify_reports(cmd, order), strategy_id=cmd.strategy_id)

    async def publish_reports(
        self, cmd: PlaceOrder | None, events: list[ExecEvent], *, strategy_id: str | None = None
    ) -> None:
        strategy = strategy_id or (cmd.strategy_id if cmd else "")
        subject = self.subjects.exec(self.broker_id, strategy)
        for event in events:
            await self.bus.publish(subject, event, msg_id=event.event_id)
            if isinstance(event, OrderFilled):
                metrics.FILLS.labels(self.name, self.broker_id).inc()
                if event.intent_ts_ns:
                    metrics.HOP_SECONDS.labels("intent_to_fill").observe(
                        max(0, time.time_ns() - event.intent_ts_ns) / 1e9
                    )

    # -------------------------------------------------------------------------- paper market

    async def _paper_market(self, broker: PaperBroker) -> None:
        """Drive the synthetic feed: publish quotes and report fills of resting orders that the move crossed."""
        assert isinstance(self.settings, PaperSettings)
        interval = self.settings.quote_interval_ms / 1000
        while True:
            for quote in broker.feed.step():
                try:
                    await self.bus.publish_core(self.subjects.md(self.broker_id, quote.symbol), quote)
                    metrics.QUOTES.labels(self.broker_id).inc()
                except nats.errors.Error:
                    pass  # quotes are latest-value: the next one replaces a lost one
                for order, _fill in broker.on_quote(quote):
                    cmd = self._orders.get(order.client_order_id)
                    if cmd is not None:
                        await self._publish_until_stored(cmd, reports_for(cmd, order))
                        self._forget_if_done(order)
            await asyncio.sleep(interval)

    async def _publish_until_stored(self, cmd: PlaceOrder, events: list[ExecEvent]) -> None:
        # A fill is a fact at the venue: keep trying until JetStream has it (ids make retries harmless).
        delay = 0.1
        while True:
            try:
                await self.publish_reports(cmd, events)
                return
            except (TimeoutError, nats.errors.Error) as exc:
                self.log.warning("publishing fill failed; retrying", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # ----------------------------------------------------------------------- asynchronous updates

    async def remember(self, cmd: PlaceOrder) -> None:
        """Keep a working order's command (KV ``om_gateway``): its later fills are reported with its ids, even
        after a restart of this gateway."""
        kv = await self.bus.kv(KV_GATEWAY)
        await kv.put(kv_key(self.broker_id, cmd.client_order_id), encode(cmd))

    async def command_for(self, client_order_id: str) -> PlaceOrder | None:
        cmd = self._orders.get(client_order_id)
        if cmd is not None:
            return cmd
        try:
            entry = await (await self.bus.kv(KV_GATEWAY)).get(kv_key(self.broker_id, client_order_id))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        found = COMMAND_CODEC.decode(entry.value)
        return found if isinstance(found, PlaceOrder) else None

    async def _order_updates(self) -> None:
        """Report what the adapter learns on its own (trade events, polls): fills, cancels, expiries."""
        async for order in self.adapter.order_updates():
            with bind_ids(client_order_id=order.client_order_id):
                cmd = await self.command_for(order.client_order_id)
                if cmd is None:
                    # Not an order of ours (or one whose command is gone): the adapter's reconciliation
                    # reports such tickets; a report without its intent is never invented here.
                    metrics.UNKNOWN_ORDER_UPDATES.labels(self.broker_id).inc()
                    self.log.warning("update for an order this gateway does not know", state=order.state.value)
                    continue
                await self._publish_until_stored(cmd, reports_for(cmd, order))
                self._forget_if_done(order)
