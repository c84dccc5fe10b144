from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, NoKeysError

from ordermesh.brokers.model import (
    BrokerConnectionError,
    BrokerError,
    BrokerOrder,
    BrokerOrderState,
    OrderNotFoundError,
)
from ordermesh.brokers.registry import BrokerRegistry
from ordermesh.brokers.reports import (
    attached_command,
    broker_rejection,
    cancel_rejected,
    cancel_reports,
    modify_rejected,
    modify_reports,
    rejection,
)
from ordermesh.contract.codec import BROKER_POSITIONS_CODEC, COMMAND_CODEC, BadMessage, encode, loose_fields, texts
from ordermesh.contract.ids import order_event_id
from ordermesh.contract.subjects import (
    COMMANDS,
    KV_GATEWAY,
    KV_INSTRUMENTS,
    KV_LEASES,
    gateway_lease,
    kv_key,
    kv_key_parts,
)
from ordermesh.contract.wire import (
    BrokerPositionsReply,
    BrokerPositionView,
    CancelOrder,
    Command,
    ErrorReply,
    ExecEvent,
    Heartbeat,
    ModifyOrder,
    OrderCancelRejected,
    OrderFilled,
    OrderModifyRejected,
    OrderRejected,
    PlaceOrder,
    RejectCategory,
    UnresolvedReply,
)
from ordermesh.platform import metrics
from ordermesh.platform.auth import gateway_identity
from ordermesh.platform.config import OrderMeshConfig
from ordermesh.platform.lease import Fences, Lease
from ordermesh.platform.log import bind_ids
from ordermesh.platform.runtime import BUS_UNAVAILABLE, NotOwner, Service
from ordermesh.sizing.instruments import encode_override, instrument_key


class GatewayService(Service):
    name = "gateway"

    def __init__(self, config: OrderMeshConfig, broker_id: str, **kw: object) -> None:
        self.broker_id = broker_id
        self.registry = BrokerRegistry(config.brokers)
        self.settings = self.registry.settings(broker_id)  # ConfigError naming the problem
        super().__init__(config, **kw)  # type: ignore[arg-type]
        self._validated = False
        self._stored: set[str] = set()  # client order ids whose command is in KV om_gateway
        self._orders: dict[str, PlaceOrder] = {}  # client order id -> the command that placed it
        #: the highest token known of each router lease: commands from a router that lost its partition are refused
        self.fences = Fences()
        self._activity: list[Any] = []  # what runs while active: the command consumer, tasks, subscriptions
        self.active = False  # holds the broker connection's lease (else: a standby, waiting for it)

    @property
    def identity(self) -> str:
        return gateway_identity(self.broker_id)

    def default_http_port(self) -> int:
        return self.config.http.gateway_base + sorted(self.config.brokers).index(self.broker_id)

    async def setup(self) -> None:
        self._mirrors = [await self.bus.kv_mirror(KV_LEASES, keys="router.>", on_entry=self.fences.on_entry)]
        ttl = self.config.nats.lease_ttl_s
        self.lease = Lease(await self.bus.kv(KV_LEASES), gateway_lease(self.broker_id), self.instance, ttl)
        metrics.GATEWAY_ACTIVE.labels(self.broker_id).set(0)
        held = await self.lease.acquire()
        # renewals run from now on, also while an activation (a slow broker connect) is under way
        self.spawn(self._lease_loop(), "lease")
        if held:
            await self.try_activate()  # active before the service counts as started
        else:
            self.log.info("standby: another gateway of this broker connection is active", lease=self.lease.key)

    async def _lease_loop(self) -> None:
        """A standby takes the lease once it is free and activates; the active one renews it. One that loses it
        (it could not renew in time: NATS unreachable, the process paused) deactivates at once and waits again:
        another gateway may be active by now."""
        period = max(0.2, self.lease.ttl_s / 3)
        while True:
            await asyncio.sleep(period)
            if self.lease.token:  # held: active, or activating
                if not await self.lease.renew():
                    self.log.error("broker connection lease lost: deactivating, then waiting as a standby")
                    await self.deactivate()
            elif await self.lease.acquire():
                self.spawn(self.try_activate(), "activate")

    async def try_activate(self) -> None:
        """:meth:`activate`; when NATS does not answer meanwhile, back to standby and the lease given back (the
        next round, or another gateway, tries again)."""
        try:
            await self.activate()
        except BUS_UNAVAILABLE as exc:
            self.log.warning("activation failed: NATS did not answer; standing by", error=repr(exc))
            await self.deactivate()
            await self.lease.release()
            return
        if not self.lease.held:  # lost while activating: not active after all
            await self.deactivate()

    async def activate(self) -> None:
        """Holding the lease: connect to the broker, settle what the previous active gateway left (orders it
        had placed and not reported: looked up at the broker), then take commands."""
        self.log.info("active: this gateway holds the broker connection", lease=self.lease.key, token=self.lease.token)
        self.adapter = self.registry.adapter(self.broker_id)
        caps = self.adapter.capabilities
        if caps.state_bucket is not None:
            self.adapter.use_state_store(await self.bus.kv(caps.state_bucket))
        await self.adapter.connect()
        self._validated = await self.adapter.validate_connection()
        metrics.BROKER_CONNECTED.labels(self.broker_id).set(1 if self.broker_connected else 0)
        if not caps.keeps_commands:
            # what was working when this gateway stopped: the adapter looks each up and reports what became of it
            await self.adapter.resume(await self.remembered())
        self.active = True
        metrics.GATEWAY_ACTIVE.labels(self.broker_id).set(1)
        self._activity = [
            self.start_consuming(
                stream=COMMANDS,
                durable=f"gw-{self.broker_id}",
                filter_subject=self.subjects.cmd(self.broker_id),
                codec=COMMAND_CODEC,
                handler=self.on_command,
                lane=lambda cmd: cmd.client_order_id,
                on_bad=self.on_bad_command,
            )
        ]
        self._activity.append(self.spawn(self._order_updates(), "order-updates"))
        self._activity.append(
            await self.bus.subscribe(self.subjects.q(f"unresolved.{self.broker_id}"), self.on_unresolved_query)
        )
        self._activity.append(
            await self.bus.subscribe(self.subjects.q(f"broker_positions.{self.broker_id}"), self.on_broker_positions)
        )
        if caps.reports_instruments:
            await self.report_instruments()
        if caps.streams_quotes:
            self._activity.append(self.spawn(self._forward_quotes(), "quotes"))

    async def deactivate(self) -> None:
        """Back to standby: no commands taken, no broker connection; what was in hand goes back to the server."""
        self.active = False
        metrics.GATEWAY_ACTIVE.labels(self.broker_id).set(0)
        for part in reversed(self._activity):
            with contextlib.suppress(Exception):
                if isinstance(part, asyncio.Task):
                    part.cancel()
                    await asyncio.gather(part, return_exceptions=True)
                elif hasattr(part, "unsubscribe"):
                    await part.unsubscribe()
                else:
                    await part.stop()
        self._activity = []
        with contextlib.suppress(Exception):
            await self.adapter.close()
        self._orders.clear()
        self._stored.clear()

    async def report_instruments(self) -> None:
        """What the broker says about its symbols goes to KV ``om_instruments`` (the sizer and the router read
        it). When it cannot say, the instruments file stands and the report is made on the next start."""
        try:
            reports = await self.adapter.instruments()
        except BrokerError as exc:
            self.log.warning("instrument specs not available", error=exc.message)
            return
        kv = await self.bus.kv(KV_INSTRUMENTS)
        for symbol, report in reports.items():
            await kv.put(instrument_key(self.broker_id, symbol), encode_override(report))

    @property
    def broker_connected(self) -> bool:
        """The adapter's own view when it keeps one (heartbeats), else the check made at start."""
        connected = self.adapter.connected if hasattr(self, "adapter") else None
        return connected if connected is not None else self._validated

    async def teardown(self) -> None:
        for mirror in getattr(self, "_mirrors", []):
            await mirror.stop()
        if hasattr(self, "adapter"):
            await self.adapter.close()
        if getattr(self, "lease", None) is not None and self.lease.held:
            await self.lease.release()  # a clean stop hands over at once; a crash hands over at expiry

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            service=self.name,
            instance=self.instance,
            started_ns=self.started_ns,
            connected=self.broker_connected,
            broker_id=self.broker_id,
            metrics_url=self.http_url,
            detail={"role": "active" if self.active else "standby"},
        )

    def health(self) -> dict[str, object]:
        # a standby is healthy while it is connected to NATS and waiting (it has no broker connection yet)
        return {"nats_connected": self.bus.connected, "broker_connected": self.broker_connected or not self.active}

    @property
    def metric_groups(self) -> tuple[str, ...]:
        return metrics.gateway_groups(self.settings.type)

    def metric_values(self) -> dict[str, tuple[str, ...]]:
        return {**super().metric_values(), "broker_id": (self.broker_id,)}

    def refresh_metrics(self) -> None:
        metrics.BROKER_CONNECTED.labels(self.broker_id).set(1 if self.broker_connected else 0)
        if hasattr(self, "adapter"):
            metrics.BROKER_UNRESOLVED.labels(self.broker_id).set(len(self.adapter.unresolved()))

    # ------------------------------------------------------------------------------ commands

    async def on_command(self, cmd: Command, msg: Msg) -> None:
        with bind_ids(client_order_id=cmd.client_order_id, command_id=cmd.command_id):
            if not self.lease.held:
                raise NotOwner("this gateway no longer holds the broker connection")
            if cmd.fence is not None:
                why = self.fences.refusal(cmd.fence.lease, cmd.fence.token)
                if why:
                    await self.on_fenced(cmd, why)
                    return
            if cmd.command_expires_ns is not None and time.time_ns() > cmd.command_expires_ns:
                self.log.warning("command expired before execution; refused")
                metrics.COMMANDS.labels(self.broker_id, type(cmd).__name__, "expired").inc()
                if isinstance(cmd, PlaceOrder):
                    await self.publish_reports(
                        cmd, [rejection(cmd, RejectCategory.EXPIRED, "command expired before it reached the broker")]
                    )
                return
            if isinstance(cmd, PlaceOrder):
                if msg.metadata.num_delivered > 1 and not self.adapter.capabilities.keeps_commands:
                    # delivered again: the first delivery may have placed it (even finished it) before we died
                    await self.adapter.resume([cmd])
                await self.on_place(cmd)
            elif isinstance(cmd, CancelOrder):
                await self.on_cancel(cmd)
            elif isinstance(cmd, ModifyOrder):
                await self.on_modify(cmd)

    async def on_fenced(self, cmd: Command, why: str) -> None:
        """A command from a router that no longer holds its partition is not executed. A placement is refused with
        the reason, unless the broker already has the order (an earlier delivery placed it while the lease was
        valid): then it is reported as it stands, never placed again."""
        self.log.warning("command from a deposed router refused", reason=why)
        metrics.COMMANDS.labels(self.broker_id, type(cmd).__name__, "fenced").inc()
        if isinstance(cmd, PlaceOrder):
            try:
                order = await self.adapter.get_order_status(cmd.client_order_id)
            except OrderNotFoundError:
                await self.publish_reports(cmd, [rejection(cmd, RejectCategory.ROUTING, why)])
                return
            await self.publish_reports(cmd, self.adapter.take_reports(cmd, order))
            await self._after_report(cmd, order)
        elif isinstance(cmd, CancelOrder):
            await self.publish_reports(None, [cancel_rejected(cmd, why)], strategy_id=cmd.strategy_id)
        elif isinstance(cmd, ModifyOrder):
            await self.publish_reports(None, [modify_rejected(cmd, why)], strategy_id=cmd.strategy_id)

    async def on_bad_command(self, msg: Msg, exc: BadMessage) -> None:
        """A command that does not decode (a quantity of 1e999999, NaN, a wrong type) is answered with the refusal
        its kind calls for, when it names its order: ids readable and the broker this gateway's."""
        fields = loose_fields(msg.data)
        found = texts(fields, "command_id", "client_order_id", "strategy_id", "account", "broker_id", "symbol")
        if found is None:
            return
        command_id, coid, strategy_id, account, broker_id, symbol = found
        if broker_id != self.broker_id or self.subjects.cmd(broker_id) != msg.subject:
            return
        intent = texts(fields, "intent_id")
        common = dict(
            client_order_id=coid,
            intent_id=intent[0] if intent else "",
            strategy_id=strategy_id,
            account=account,
            broker_id=broker_id,
            symbol=symbol,
        )
        reason = f"INVALID: {exc.reason}: {exc.detail}"[:500]
        kind = fields.get("type")
        event: ExecEvent
        if kind == "place_order":
            event = OrderRejected(
                event_id=order_event_id(coid, "rejected"), category=RejectCategory.INVALID, reason=reason, **common
            )
        elif kind == "cancel_order":
            event = OrderCancelRejected(
                event_id=order_event_id(coid, "cancel_rejected", command_id), reason=reason, **common
            )
        elif kind == "modify_order":
            event = OrderModifyRejected(
                event_id=order_event_id(coid, "modify_rejected", command_id), reason=reason, **common
            )
        else:
            return
        metrics.COMMANDS.labels(self.broker_id, _COMMAND_NAMES[kind], "invalid").inc()
        await self.publish_reports(None, [event], strategy_id=strategy_id)

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
                if not self.adapter.capabilities.keeps_commands:
                    # kept like a working order's: the adapter settles the outcome later (order_updates), maybe
                    # after this gateway restarted, and its reports need the command's ids
                    await self.remember(cmd)
                raise
            except BrokerError as err:
                metrics.COMMANDS.labels(self.broker_id, "PlaceOrder", "rejected").inc()
                self.log.info("order rejected by broker", reason=err.message)
                await self.publish_reports(cmd, [broker_rejection(cmd, err)])
                return
            metrics.COMMANDS.labels(self.broker_id, "PlaceOrder", "ok").inc()
            metrics.HOP_SECONDS.labels("command_to_ack").observe(max(0, time.time_ns() - cmd.ts_ns) / 1e9)
            await self.publish_reports(cmd, self.adapter.take_reports(cmd, order))
            await self._publish_changes()
            working = order.state in (BrokerOrderState.NEW, BrokerOrderState.PARTIALLY_FILLED)
            if working and not self.adapter.capabilities.keeps_commands:
                await self.remember(cmd)
            await self._after_report(cmd, order)

    async def _after_report(self, cmd: PlaceOrder, order: BrokerOrder) -> None:
        """A finished order's command is forgotten (working ones are kept to report later fills); a filled one
        with a stop-loss / take-profit leaves the commands of its protective orders, which the venue holds."""
        if order.state in (BrokerOrderState.NEW, BrokerOrderState.PARTIALLY_FILLED):
            return
        if order.filled_qty > 0 and self.adapter.capabilities.places_protective_orders:
            for kind, price in (("sl", cmd.stop_loss), ("tp", cmd.take_profit)):
                if price is not None:
                    await self.remember(attached_command(cmd, kind, order.filled_qty))  # type: ignore[arg-type]
        await self.forget(order.client_order_id)

    async def forget(self, client_order_id: str) -> None:
        """The order is finished and reported: its command leaves memory and KV ``om_gateway`` (a later restart
        has nothing to resume for it)."""
        self._orders.pop(client_order_id, None)
        if client_order_id not in self._stored:
            return  # never written (finished in its first answer): no KV write for it at all
        self._stored.discard(client_order_id)
        with contextlib.suppress(KeyNotFoundError, nats.errors.Error):
            await (await self.bus.kv(KV_GATEWAY)).delete(kv_key(self.broker_id, client_order_id))

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
            await self._publish_changes()
            if order.state not in (BrokerOrderState.NEW, BrokerOrderState.PARTIALLY_FILLED):
                place = await self.command_for(cmd.client_order_id)
                if place is not None:  # fills before the cancel are reported by the updates; then it is forgotten
                    await self.publish_reports(place, self.adapter.take_reports(place, order))
                    await self._after_report(place, order)

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
                        stop_loss=cmd.stop_loss,
                        take_profit=cmd.take_profit,
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
            await self._publish_changes()

    async def publish_reports(
        self, cmd: PlaceOrder | None, events: list[ExecEvent], *, strategy_id: str | None = None
    ) -> None:
        strategy = strategy_id or (cmd.strategy_id if cmd else "")
        subject = self.subjects.exec(self.broker_id, strategy)
        for event in events:
            ack = await self.bus.publish(subject, event, msg_id=event.event_id)
            if isinstance(event, OrderFilled):
                metrics.FILLS.labels(self.name, self.broker_id).inc()
                if not ack.duplicate:
                    observe_fill(self.broker_id, event)
                if event.intent_ts_ns:
                    metrics.HOP_SECONDS.labels("intent_to_fill").observe(
                        max(0, time.time_ns() - event.intent_ts_ns) / 1e9
                    )
            elif isinstance(event, OrderRejected) and not ack.duplicate:
                metrics.REFUSALS.labels(self.name, event.category.value).inc()

    # ------------------------------------------------------------------------ venue changes and quotes

    async def _publish_changes(self) -> None:
        """Report every order the venue changed and has not reported yet (a venue that keeps its own commands:
        attached SL/TP, triggers, fills, expiries); a finished one leaves memory."""
        for change in self.adapter.take_changes():
            await self._publish_until_stored(change.cmd, change.events)
            if not change.working:
                self._orders.pop(change.cmd.client_order_id, None)

    async def _forward_quotes(self) -> None:
        """Publish the adapter's quotes on ``om.md.<broker>.<symbol>`` (latest value: a lost one is replaced), and
        after each what the venue changed meanwhile (the paper venue matches its orders as its market steps)."""
        async for quote in self.adapter.quotes():
            try:
                await self.bus.publish_core(self.subjects.md(self.broker_id, quote.symbol), quote)
                metrics.QUOTES.labels(self.broker_id).inc()
            except nats.errors.Error:
                pass
            await self._publish_changes()

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
        self._orders[cmd.client_order_id] = cmd
        kv = await self.bus.kv(KV_GATEWAY)
        await kv.put(kv_key(self.broker_id, cmd.client_order_id), encode(cmd))
        self._stored.add(cmd.client_order_id)

    async def remembered(self) -> list[PlaceOrder]:
        """The commands of this broker's orders that were working when the gateway last ran."""
        kv = await self.bus.kv(KV_GATEWAY)
        try:
            keys = await kv.keys()
        except NoKeysError:
            return []
        out = []
        for key in keys:
            if kv_key_parts(key)[0] != self.broker_id:
                continue
            with contextlib.suppress(KeyNotFoundError):
                entry = await kv.get(key)
                if entry.value:
                    found = COMMAND_CODEC.decode(entry.value)
                    if isinstance(found, PlaceOrder):
                        out.append(found)
                        self._stored.add(found.client_order_id)
        return out

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
        if not isinstance(found, PlaceOrder):
            return None
        self._stored.add(client_order_id)
        return found

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
                await self._publish_until_stored(cmd, self.adapter.take_reports(cmd, order))
                await self._after_report(cmd, order)

    async def on_broker_positions(self, msg: Msg) -> None:
        """``om.q.broker_positions.<broker_id>``: what the broker says it holds (the keeper reconciles with it)."""
        try:
            BROKER_POSITIONS_CODEC.decode(msg.data)
            held = await self.adapter.get_positions()
            reply: BrokerPositionsReply | ErrorReply = BrokerPositionsReply(
                broker_id=self.broker_id,
                positions=[
                    BrokerPositionView(
                        symbol=p.symbol, quantity=p.quantity, avg_price=p.avg_price, position_id=p.position_id
                    )
                    for p in held
                ],
            )
        except BadMessage as exc:
            self.bad_message(msg.subject, exc.reason, exc.detail)
            reply = ErrorReply(reason=f"{exc.reason}: {exc.detail}")
        except Exception as exc:  # the broker could not say: answer with the reason, never crash
            reply = ErrorReply(reason=f"{type(exc).__name__}: {exc}")
        await self.respond(msg, reply)

    async def on_unresolved_query(self, msg: Msg) -> None:
        reply = UnresolvedReply(broker_id=self.broker_id, unresolved=self.adapter.unresolved())
        await self.respond(msg, reply)


_COMMAND_NAMES = {"place_order": "PlaceOrder", "cancel_order": "CancelOrder", "modify_order": "ModifyOrder"}


def observe_fill(broker_id: str, fill: OrderFilled) -> None:
    """TCA metrics of one new fill: its slippage (as a ratio: bps / 10,000) and its commission."""
    if fill.slippage_bps is not None:
        metrics.FILL_SLIPPAGE.labels(broker_id, fill.symbol).observe(float(fill.slippage_bps) / 10_000)
    if fill.commission:
        metrics.COMMISSIONS.labels(broker_id, fill.symbol, fill.commission_asset or "").inc(float(fill.commission))
