from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from ordermesh.brokers.registry import BrokerRegistry
from ordermesh.contract.codec import (
    CONTROL_CODEC,
    EXEC_CODEC,
    HEARTBEAT_CODEC,
    ORDER_CODEC,
    QUOTE_CODEC,
    BadMessage,
    loose_fields,
    text,
    texts,
)
from ordermesh.contract.ids import client_order_id, new_intent_id
from ordermesh.contract.subjects import (
    EXEC,
    KV_ACCOUNTS,
    KV_CONTROL,
    KV_INSTRUMENTS,
    KV_ORDERS,
    ORDERS,
    kv_key,
    kv_key_parts,
)
from ordermesh.contract.wire import (
    AccountState,
    CancelAll,
    CancelOrder,
    CancelRequest,
    ControlReply,
    ExecEvent,
    Fixed,
    Intent,
    OrderDenied,
    OrderFilled,
    OrderRequest,
    OrderStatus,
    Quote,
    RegistryReload,
    RejectCategory,
    SetTradingState,
    Side,
    TradingState,
    TradingStateQuery,
)
from ordermesh.platform import metrics
from ordermesh.platform.bus import Bus, KVMirror, stream_seq
from ordermesh.platform.config import ConfigError, OrderMeshConfig, load_config, unknown_account
from ordermesh.platform.log import bind_ids
from ordermesh.platform.runtime import RetryLater, Service
from ordermesh.routing.orders import Applied, Ev, InvalidTransition, OrderRecord
from ordermesh.routing.risk import (
    DailyLossRule,
    OrderToCheck,
    RiskEngine,
    RiskLimits,
    RiskView,
    TradingStates,
    flatten_plan,
)
from ordermesh.routing.routes import choose_broker, deny, place_command
from ordermesh.sizing.instruments import (
    InstrumentOverride,
    InstrumentSpec,
    PriceOf,
    conversion_rate,
    decode_override,
    load_instruments,
    margin_per_lot,
)


class OrderStore:
    """Orders by client order id: memory in front of the ``om_orders`` KV bucket (the state of record, so a
    restarted router continues where it stopped). Open orders stay in memory; a finished one is evicted once
    written. ``locked(coid)`` serialises the order and exec consumers on one order while different orders
    proceed concurrently. Every write also updates the risk exposure (positions and open orders)."""

    def __init__(self, bus: Bus, exposure: Any) -> None:
        self._bus = bus
        self._exposure = exposure
        self._cache: dict[str, OrderRecord] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._seen: dict[str, tuple[Decimal, Decimal, int]] = {}  # coid -> (filled, leaves, open) last counted

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

    async def load(self) -> int:
        """Rebuild memory and exposure from every record in the bucket (at start)."""
        kv = await self._bus.kv(KV_ORDERS)
        watcher = await kv.watchall(ignore_deletes=True)
        n = 0
        try:
            while (entry := await watcher.updates(timeout=30.0)) is not None:
                if entry.value:
                    self._count(msgspec.msgpack.decode(entry.value, type=OrderRecord))
                    n += 1
        finally:
            await watcher.stop()
        return n

    def _count(self, rec: OrderRecord) -> None:
        filled, leaves, was_open = self._seen.get(rec.client_order_id, (Decimal(0), Decimal(0), 0))
        now_open = 1 if rec.is_open else 0
        ex = self._exposure
        if rec.filled_qty != filled:
            ex.add_fill(rec.account, rec.strategy_id, rec.symbol, (rec.filled_qty - filled) * rec.side.sign)
        if rec.leaves_qty != leaves or now_open != was_open:
            ex.add_open(
                rec.account, rec.strategy_id, rec.symbol, rec.side, rec.leaves_qty - leaves, now_open - was_open
            )
        if rec.is_open:
            self._seen[rec.client_order_id] = (rec.filled_qty, rec.leaves_qty, now_open)
            self._cache[rec.client_order_id] = rec
        else:
            # finished: its fills stay in the position; nothing more to track
            self._seen.pop(rec.client_order_id, None)
            self._cache.pop(rec.client_order_id, None)

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
        return msgspec.msgpack.decode(entry.value, type=OrderRecord)

    async def put(self, rec: OrderRecord) -> None:
        await (await self._bus.kv(KV_ORDERS)).put(kv_key(rec.client_order_id), msgspec.msgpack.encode(rec))
        self._count(rec)

    def open_records(self) -> list[OrderRecord]:
        return list(self._cache.values())


class ControlState(msgspec.Struct, kw_only=True):
    """What the router persists besides orders: trading states and the equity each account started its day with."""

    global_state: TradingState = TradingState.ACTIVE
    accounts: dict[str, TradingState] = msgspec.field(default_factory=dict)
    strategies: dict[str, dict[str, TradingState]] = msgspec.field(default_factory=dict)
    day_start: dict[str, tuple[str, Decimal]] = msgspec.field(default_factory=dict)  # account -> (UTC day, equity)


#: What each control subject accepts (see ordermesh.contract.subjects.CONTROLS).
CONTROL_REQUESTS: dict[str, tuple[type, ...]] = {
    "trading": (SetTradingState, TradingStateQuery),
    "cancel": (CancelRequest,),
    "cancel_all": (CancelAll,),
    "registry.reload": (RegistryReload,),
}


#: How long the kill switch waits for the account to be flat before it halts it anyway.
KILL_FLAT_WAIT_S = 30.0


class RouterService(Service):
    name = "router"

    def __init__(self, config: OrderMeshConfig, *, config_path: str | None = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.config_path = config_path
        self.registry = BrokerRegistry(config.brokers)
        self.trading = TradingStates()
        self.day_start: dict[str, tuple[str, Decimal]] = {}
        self._killing: set[str] = set()  # accounts whose kill switch ran (once per router process)
        self.quotes: dict[tuple[str, str], Quote] = {}
        self.accounts: dict[str, AccountState] = {}
        self.instruments = RouterInstruments(config)
        self.view = RiskView(
            limits=self.limits_for,
            instrument=self.instruments.spec,
            tick_size=self.instruments.tick_size,
            quote=lambda broker, symbol: self.quotes.get((broker, symbol)),
            account_state=self.accounts.get,
            margin_per_lot=self.margin_per_lot,
            to_account_ccy=self.to_account_ccy,
            day_start_equity=lambda account: self.day_start[account][1] if account in self.day_start else None,
            trading=self.trading,
        )
        self.risk = RiskEngine(self.view)
        self._mirrors: list[KVMirror] = []

    def default_http_port(self) -> int:
        return self.config.http.router

    # ------------------------------------------------------------------------------------ setup

    async def setup(self) -> None:
        self.store = OrderStore(self.bus, self.view.exposure)
        loaded = await self.store.load()
        await self.load_control()
        s = self.subjects
        self._mirrors.append(await self.bus.kv_mirror(KV_ACCOUNTS, self.on_account))
        self._mirrors.append(await self.bus.kv_mirror(KV_INSTRUMENTS, self.instruments.on_report))
        await self.bus.subscribe(f"{s.prefix}.md.>", self.on_quote)
        await self.bus.subscribe(f"{s.prefix}.health.gateway.>", self.on_heartbeat)
        await self.bus.subscribe(s.all_ctl, self.on_control, queue="router")
        self.consume(
            stream=ORDERS,
            durable="router",
            filter_subject=s.all_orders,
            codec=ORDER_CODEC,
            handler=self.on_order,
            lane=lambda req: f"{req.intent.account}\x1f{req.intent.intent_id}",
            on_bad=self.on_bad_order,
        )
        self.consume(
            stream=EXEC,
            durable="router-exec",
            filter_subject=s.all_exec,
            codec=EXEC_CODEC,
            handler=self.on_exec,
            lane=lambda event: event.client_order_id,
        )
        self.log.info("router state loaded", orders=loaded, open_orders=len(self.store.open_records()))

    async def teardown(self) -> None:
        for m in self._mirrors:
            await m.stop()

    def refresh_metrics(self) -> None:
        t = self.trading
        metrics.observe_trading(t.global_state, t.accounts, t.strategies, self.config.accounts)
        metrics.observe_daily_loss({a: DailyLossRule().loss(a, self.view) for a in sorted(self.config.accounts)})

    def limits_for(self, account: str) -> RiskLimits:
        return self.config.risk.get(account) or self.config.risk.get("*") or RiskLimits()

    # -------------------------------------------------------------------------------- pricing

    def price_of(self, symbol: str) -> Decimal | None:
        """A mid price for a currency pair or symbol from any broker's latest quote (for conversions)."""
        for (_broker, sym), q in self.quotes.items():
            if sym == symbol:
                return (q.bid + q.ask) / 2
        return None

    def account_currency(self, account: str) -> str:
        acc = self.config.accounts.get(account)
        return acc.currency if acc else "USD"

    def margin_per_lot(self, account: str, broker_id: str, symbol: str, price: Decimal | None) -> Decimal | None:
        return self.instruments.margin_per_lot(broker_id, symbol, price, self.account_currency(account), self.price_of)

    def to_account_ccy(self, account: str, symbol: str, amount: Decimal) -> Decimal | None:
        return self.instruments.to_account_ccy(symbol, amount, self.account_currency(account), self.price_of)

    # ------------------------------------------------------------------------------ listeners

    def on_account(self, key: str, value: bytes | None) -> None:
        if value is None:
            return
        try:
            state = msgspec.msgpack.decode(value, type=AccountState)
        except msgspec.DecodeError:
            return
        self.accounts[state.account] = state
        day = datetime.fromtimestamp(state.ts_ns / 1e9, UTC).date().isoformat()
        known = self.day_start.get(state.account)
        if known is None or known[0] != day:
            self.day_start[state.account] = (day, state.equity)
            self.spawn(self.save_control(), "save-control")
        self._maybe_kill(state.account)

    # ------------------------------------------------------------------------- the kill switch

    def _maybe_kill(self, account: str) -> None:
        """``risk.kill_on_daily_loss``: the day's loss reached the limit, so the router runs the kill switch."""
        if account in self._killing or not self.limits_for(account).kill_on_daily_loss:
            return
        found = DailyLossRule().loss(account, self.view)
        if found is None or found[0] < found[1]:
            return
        self._killing.add(account)
        self.spawn(self._kill(account, f"daily loss {found[0]:.2f} reached the limit {found[1]}"), f"kill:{account}")

    async def _kill(self, account: str, why: str) -> None:
        """REDUCING, every open order canceled, the account flattened by reduce-only intents booked to the holders of
        its side (``routing.risk.flatten_plan``, through the sizer like any intent), then HALTED once flat (or after
        ``KILL_FLAT_WAIT_S``). Never raises: a failure is logged and the account is halted anyway."""
        self.log.warning("kill switch", account=account, reason=why)
        try:
            self.trading.set(TradingState.REDUCING, account, None)
            await self.save_control()
            for rec in self.store.open_records():
                if rec.account == account and rec.status is not OrderStatus.PENDING_CANCEL:
                    await self.cancel(rec.client_order_id, requested_by=None)
            ex = self.view.exposure
            holdings = [(strat, sym, q) for (acc, strat, sym), q in ex.strategy_net.items() if acc == account]
            for strategy, symbol, qty in flatten_plan(holdings):
                intent = Intent(
                    intent_id=new_intent_id(), strategy_id=strategy, account=account, symbol=symbol,
                    side=Side.SELL if qty > 0 else Side.BUY, sizing=Fixed(qty=abs(qty)), reduce_only=True,
                    tags={"kill_switch": why[:100]},
                )  # fmt: skip
                await self.bus.publish(self.subjects.intent(strategy), intent, msg_id=intent.intent_id)
            deadline = time.monotonic() + KILL_FLAT_WAIT_S
            while any(q for (acc, _), q in ex.net.items() if acc == account) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            flat = not any(q for (acc, _), q in ex.net.items() if acc == account)
        except Exception:
            self.log.exception("kill switch failed; halting the account anyway", account=account)
            flat = False
        self.trading.set(TradingState.HALTED, account, None)
        await self.save_control()
        self.log.warning("kill switch done: account halted", account=account, flat=flat)

    async def on_quote(self, msg: Msg) -> None:
        try:
            q = QUOTE_CODEC.decode(msg.data)
        except BadMessage as exc:
            self.bad_message(msg.subject, exc.reason, exc.detail)
            return
        self.quotes[(q.broker_id, q.symbol)] = q

    async def on_heartbeat(self, msg: Msg) -> None:
        try:
            self.registry.on_heartbeat(HEARTBEAT_CODEC.decode(msg.data))
        except BadMessage as exc:
            self.bad_message(msg.subject, exc.reason, exc.detail)

    # --------------------------------------------------------------------------------- orders

    async def on_order(self, req: OrderRequest, msg: Msg) -> None:
        intent = req.intent
        coid = client_order_id(intent.account, intent.intent_id)
        with bind_ids(intent_id=intent.intent_id, client_order_id=coid, strategy_id=intent.strategy_id):
            async with self.store.locked(coid):
                existing = await self.store.get(coid)
                if existing is not None:
                    # Already decided: a repeat of the same intent never reaches a broker again.
                    self.log.info("duplicate order request ignored", status=existing.status.value)
                    metrics.MESSAGES.labels(self.name, "router", "duplicate").inc()
                    return
                started = time.perf_counter()
                try:
                    decision = self.decide(req, coid)
                except (ArithmeticError, ValueError) as exc:
                    # Figures the risk arithmetic cannot handle: refused to the strategy, counted, never retried.
                    self.bad_message(msg.subject, "unprocessable", repr(exc))
                    decision = deny(req, coid, RejectCategory.INVALID, f"unprocessable: {exc!r}"[:500])
                metrics.ROUTER_DECISION_SECONDS.observe(time.perf_counter() - started)
                if isinstance(decision, OrderDenied):
                    await self.bus.publish(self.subjects.reject(intent.strategy_id), decision, msg_id=f"deny:{coid}")
                    metrics.REFUSALS.labels(self.name, decision.category.value).inc()
                    metrics.ORDERS.labels(OrderStatus.DENIED.value).inc()
                    self.log.info("order denied", reason=decision.reason)
                    return
                cmd = decision
                # Command first, record second: a crash in between redelivers this request, which finds no
                # record and republishes the same command id, dropped by the stream as a duplicate.
                await self.bus.publish(self.subjects.cmd(cmd.broker_id), cmd, msg_id=cmd.command_id)
                rec = OrderRecord.from_command(cmd)
                rec.transition(Ev.SUBMIT)
                await self.store.put(rec)
            metrics.ORDERS.labels(OrderStatus.SUBMITTED.value).inc()
            metrics.HOP_SECONDS.labels("order_to_command").observe(max(0, time.time_ns() - req.ts_ns) / 1e9)
            self.log.debug("order submitted", broker_id=cmd.broker_id, quantity=str(cmd.quantity))

    async def on_bad_order(self, msg: Msg, exc: BadMessage) -> None:
        """An order request that does not decode is denied to its strategy when its intent names itself (intent id,
        strategy and account readable, and the account the one of the subject it came on)."""
        fields = loose_fields(msg.data)
        intent = fields.get("intent")
        found = texts(intent, "intent_id", "strategy_id", "account")
        if fields.get("type") != "order_request" or found is None:
            return
        intent_id, strategy_id, account = found
        if self.subjects.order(account) != msg.subject:
            return
        coid = client_order_id(account, intent_id)
        ts = intent.get("ts_ns")  # type: ignore[union-attr]
        denial = OrderDenied(
            intent_id=intent_id,
            client_order_id=coid,
            strategy_id=strategy_id,
            account=account,
            symbol=text(intent, "symbol"),
            category=RejectCategory.INVALID,
            reason=f"INVALID: {exc.reason}: {exc.detail}"[:500],
            intent_ts_ns=ts if isinstance(ts, int) and 0 <= ts < 2**63 else 0,
        )
        await self.bus.publish(self.subjects.reject(strategy_id), denial, msg_id=f"deny:{coid}")
        metrics.REFUSALS.labels(self.name, RejectCategory.INVALID.value).inc()

    def decide(self, req: OrderRequest, coid: str) -> Any:
        """Route, then run every risk rule: a PlaceOrder, or an OrderDenied with its reason."""
        intent = req.intent
        if intent.account not in self.config.accounts:
            return deny(req, coid, RejectCategory.INVALID, unknown_account(intent.account, self.config))
        if req.quantity <= 0:
            return deny(req, coid, RejectCategory.INVALID, f"quantity must be positive, got {req.quantity}")
        broker_id, how = choose_broker(
            intent,
            self.config.router.routes,
            self.config.router.default_broker,
            self.registry.usable(),
            self.registry.healthy,
        )
        if broker_id is None:
            return deny(req, coid, RejectCategory.ROUTING, how)
        order = OrderToCheck(
            account=intent.account,
            strategy_id=intent.strategy_id,
            broker_id=broker_id,
            symbol=intent.symbol,
            side=intent.side,
            quantity=req.quantity,
            order_type=intent.order_type,
            limit_price=intent.limit_price,
            stop_price=intent.stop_price,
            time_in_force=intent.time_in_force,
            expire_at_ns=intent.expire_at_ns,
            reduce_only=intent.reduce_only,
            position_id=intent.position_id,
        )
        denial = self.risk.check(order)
        if denial is not None:
            if denial.rule == "daily_loss":
                self.spawn(self.save_control(), "save-control")
            return deny(req, coid, denial.category, denial.detail)
        return place_command(req, coid, broker_id, self.config.router.command_ttl_s, time.time_ns())

    async def on_exec(self, event: ExecEvent, msg: Msg) -> None:
        with bind_ids(intent_id=event.intent_id, client_order_id=event.client_order_id):
            async with self.store.locked(event.client_order_id):
                rec = await self.store.get(event.client_order_id)
                if rec is None and event.parent_client_order_id is not None:
                    parent = await self.store.get(event.parent_client_order_id)
                    if parent is not None:
                        rec = OrderRecord.child_of(parent, event)
                        self.log.info("venue-created order recorded", parent=parent.client_order_id)
                if (
                    rec is not None
                    and rec.parent_client_order_id is not None
                    and isinstance(event, OrderFilled)
                    and event.order_qty > rec.quantity
                ):
                    rec.quantity = event.order_qty  # the venue grew it with its parent's later fills
                if rec is None:
                    not_ours = self.not_ours(event)
                    if not_ours:
                        # A report no order of ours can ever match: refused now (counted), not retried.
                        self.bad_message(msg.subject, not_ours, f"{type(event).__name__} for {event.client_order_id}")
                        return
                    # The order's record may not be written yet (a redelivered order request after a restart):
                    # try again shortly; the runtime gives up, counted, after max_attempts.
                    raise RetryLater(f"no order record for {event.client_order_id} yet (seq {stream_seq(msg)})")
                before = rec.status
                try:
                    applied = rec.apply(event)
                except (ArithmeticError, ValueError) as exc:
                    self.bad_message(msg.subject, "unprocessable", f"{type(event).__name__}: {exc!r}")
                    return
                except InvalidTransition as exc:
                    # Logged and counted; the record stays as it was and nothing is fanned out.
                    metrics.INVALID_EVENTS.labels(type(event).__name__, before.value).inc()
                    self.log.warning("invalid order event refused", report=type(event).__name__, detail=str(exc))
                    return
                if applied is Applied.DUPLICATE:
                    metrics.MESSAGES.labels(self.name, "router-exec", "duplicate").inc()
                    return
                await self.store.put(rec)
            if rec.status is not before:
                metrics.ORDERS.labels(rec.status.value).inc()

    def not_ours(self, event: ExecEvent) -> str:
        """Why a report without an order record can never have one ("" when it may, later): it comes from a broker
        that is not configured, or its client order id is not one the router derives: from the report's account
        and intent, or that of a venue's stop-loss / take-profit (``<coid>-sl`` of intent ``<intent>-sl``)."""
        if event.broker_id not in self.registry:
            return "unknown_broker"
        coid, intent_id = event.client_order_id, event.intent_id
        if coid == client_order_id(event.account, intent_id):
            return ""
        suffix = coid[-3:]
        attached = suffix in ("-sl", "-tp") and intent_id.endswith(suffix)
        if attached and coid[:-3] == client_order_id(event.account, intent_id[:-3]):
            return ""
        return "unknown_order"

    # -------------------------------------------------------------------------------- control

    async def load_control(self) -> None:
        try:
            entry = await (await self.bus.kv(KV_CONTROL)).get("router")
        except KeyNotFoundError:
            return
        if not entry.value:
            return
        state = msgspec.msgpack.decode(entry.value, type=ControlState)
        self.trading.global_state = state.global_state
        self.trading.accounts.update(state.accounts)
        for account, strategies in state.strategies.items():
            for strategy, ts in strategies.items():
                self.trading.strategies[(account, strategy)] = ts
        self.day_start.update(state.day_start)

    async def save_control(self) -> None:
        strategies: dict[str, dict[str, TradingState]] = {}
        for (account, strategy), ts in self.trading.strategies.items():
            strategies.setdefault(account, {})[strategy] = ts
        state = ControlState(
            global_state=self.trading.global_state,
            accounts=dict(self.trading.accounts),
            strategies=strategies,
            day_start=dict(self.day_start),
        )
        await (await self.bus.kv(KV_CONTROL)).put("router", msgspec.msgpack.encode(state))

    def describe_trading(self) -> str:
        parts = [f"global {self.trading.global_state.value}"]
        parts += [
            f"account {a} {s.value}" for a, s in sorted(self.trading.accounts.items()) if s is not TradingState.ACTIVE
        ]
        parts += [
            f"strategy {a}/{st} {s.value}"
            for (a, st), s in sorted(self.trading.strategies.items())
            if s is not TradingState.ACTIVE
        ]
        return "; ".join(parts)

    async def on_control(self, msg: Msg) -> None:
        try:
            req = CONTROL_CODEC.decode(msg.data)
        except BadMessage as exc:
            self.bad_message(msg.subject, exc.reason, exc.detail)
            await self.respond(msg, ControlReply(ok=False, detail=f"{exc.reason}: {exc.detail}"))
            return
        refusal = self.control_refusal(msg.subject, req)
        if refusal:
            self.bad_message(msg.subject, "control_subject", refusal)
            await self.respond(msg, ControlReply(ok=False, detail=refusal))
            return
        try:
            reply = await self.control(req)
        except Exception as exc:  # a control request must always be answered
            self.log.exception("control request failed", request=type(req).__name__)
            reply = ControlReply(ok=False, detail=f"{type(exc).__name__}: {exc}")
        await self.respond(msg, reply)

    def control_refusal(self, subject: str, req: Any) -> str:
        """Why a control request may not be acted on under ``subject`` ("" if it may): the subject decides what
        a request may be (the server's permissions grant subjects, not message types), and a strategy-scoped
        subject only speaks for its own strategy."""
        parsed = self.subjects.parse_ctl(subject)
        if parsed is None:
            return f"{subject} is not a control subject"
        name, strategy = parsed
        if not isinstance(req, CONTROL_REQUESTS[name]):
            return f"a {type(req).__name__} is not accepted on {subject}"
        if strategy is not None and getattr(req, "strategy_id", None) != strategy:
            return f"{subject} speaks for strategy {strategy!r} only"
        return ""

    async def control(self, req: Any) -> ControlReply:
        if isinstance(req, SetTradingState):
            try:
                self.trading.set(req.state, req.account, req.strategy_id)
            except ValueError as exc:
                return ControlReply(ok=False, detail=str(exc))
            await self.save_control()
            scope = (
                f"strategy {req.account}/{req.strategy_id}"
                if req.strategy_id
                else (f"account {req.account}" if req.account else "global")
            )
            self.log.warning("trading state set", scope=scope, state=req.state.value, reason=req.reason)
            return ControlReply(ok=True, detail=f"{scope} is now {req.state.value} ({self.describe_trading()})")
        if isinstance(req, TradingStateQuery):
            return ControlReply(ok=True, detail=self.describe_trading())
        if isinstance(req, CancelRequest):
            coid = req.client_order_id or client_order_id(req.account, req.intent_id or "")
            return await self.cancel(coid, requested_by=req.strategy_id)
        if isinstance(req, CancelAll):
            sent = 0
            for rec in self.store.open_records():
                if (req.account and rec.account != req.account) or (
                    req.strategy_id and rec.strategy_id != req.strategy_id
                ):
                    continue
                if rec.status is OrderStatus.PENDING_CANCEL:
                    continue  # a cancel is already on its way
                if (await self.cancel(rec.client_order_id, requested_by=None)).ok:
                    sent += 1
            return ControlReply(ok=True, detail=f"{sent} cancel(s) sent")
        if isinstance(req, RegistryReload):
            return await self.reload_registry()
        return ControlReply(ok=False, detail=f"{type(req).__name__} is not handled by the router")

    async def cancel(self, coid: str, requested_by: str | None) -> ControlReply:
        async with self.store.locked(coid):
            rec = await self.store.get(coid)
            if rec is None:
                return ControlReply(ok=False, detail=f"no order {coid}")
            if not rec.is_open:
                return ControlReply(ok=False, detail=f"order {coid} is already {rec.status.value}")
            if rec.status is OrderStatus.PENDING_CANCEL:
                return ControlReply(ok=True, detail=f"order {coid} is already being canceled")
            if requested_by is not None:
                denial = self.risk.check_cancel(rec.account, rec.strategy_id, rec.broker_id)
                if denial is not None:
                    metrics.REFUSALS.labels(self.name, denial.category.value).inc()
                    return ControlReply(ok=False, detail=denial.reason)
            rec.transition(Ev.PENDING_CANCEL)
            n = len(rec.fill_ids)
            cmd = CancelOrder(
                command_id=f"cancel:{coid}:{n}",
                client_order_id=coid,
                intent_id=rec.intent_id,
                strategy_id=rec.strategy_id,
                account=rec.account,
                broker_id=rec.broker_id,
                symbol=rec.symbol,
                broker_order_id=rec.broker_order_id,
                command_expires_ns=time.time_ns() + int(self.config.router.command_ttl_s * 1e9),
            )
            await self.bus.publish(self.subjects.cmd(rec.broker_id), cmd, msg_id=cmd.command_id)
            await self.store.put(rec)
        return ControlReply(ok=True, detail=f"cancel of {coid} sent to {rec.broker_id}")

    async def reload_registry(self) -> ControlReply:
        try:
            fresh = load_config(self.config_path) if self.config_path else load_config()
        except ConfigError as exc:
            return ControlReply(ok=False, detail=f"config error: {exc}")
        self.registry.load(fresh.brokers)
        problems = self.registry.validate()
        self.log.info("broker registry reloaded", brokers=self.registry.ids, problems=len(problems))
        detail = f"{len(self.registry.usable())} usable broker(s): {', '.join(self.registry.usable()) or 'none'}"
        return ControlReply(ok=True, detail="\n".join([detail, *problems]))


class RouterInstruments:
    """Instrument specs for the risk checks: the instruments file, with what gateways report over it. Once a
    gateway has reported any symbol, it is taken to list everything it trades."""

    def __init__(self, config: OrderMeshConfig) -> None:
        path = config.sizer.instruments_file
        self.file: dict[str, InstrumentSpec] = load_instruments(path) if path else {}
        self.reports: dict[tuple[str, str], InstrumentOverride] = {}

    def on_report(self, key: str, value: bytes | None) -> None:
        parts = kv_key_parts(key)
        if len(parts) != 2:
            return
        broker, symbol = parts
        if value is None:
            self.reports.pop((broker, symbol), None)
            return
        try:
            self.reports[(broker, symbol)] = decode_override(value)
        except msgspec.DecodeError:
            return

    def spec(self, broker_id: str, symbol: str) -> InstrumentSpec | None:
        override = self.reports.get((broker_id, symbol))
        if override is None:
            if any(b == broker_id for b, _ in self.reports):
                return None  # the gateway lists what it trades: anything else is not tradable there
            return self.file.get(symbol)
        try:
            return override.apply(self.file.get(symbol))
        except ValueError:
            return None

    def tick_size(self, broker_id: str, symbol: str) -> Decimal | None:
        spec = self.spec(broker_id, symbol)
        return getattr(spec, "tick_size", None)

    def margin_per_lot(
        self, broker_id: str, symbol: str, price: Decimal | None, account_ccy: str, price_of: PriceOf
    ) -> Decimal | None:
        spec = self.spec(broker_id, symbol)
        if spec is None:
            return None
        try:
            value, _ = margin_per_lot(spec, account_ccy, price, price_lookup_fn(price_of, symbol, price))
        except LookupError:
            return None
        return value

    def to_account_ccy(self, symbol: str, amount: Decimal, account_ccy: str, price_of: PriceOf) -> Decimal | None:
        spec = self.file.get(symbol)
        if spec is None or spec.quote_currency == account_ccy:
            return amount
        rate = conversion_rate(spec.quote_currency, account_ccy, price_of)
        return None if rate is None else amount * rate


def price_lookup_fn(price_of: PriceOf, symbol: str, own: Decimal | None) -> PriceOf:
    """``price_of`` that answers ``symbol`` with the order's own price when it has one."""
    return lambda s: own if (s == symbol and own is not None) else price_of(s)
