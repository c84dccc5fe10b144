from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

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
    KV_LEASES,
    KV_ORDERS,
    ORDERS,
    kv_key,
    kv_key_parts,
    router_durables,
    router_lease,
)
from ordermesh.contract.wire import (
    AccountState,
    CancelAll,
    CancelOrder,
    CancelRequest,
    ControlReply,
    ExecEvent,
    Fence,
    Fixed,
    Heartbeat,
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
from ordermesh.platform.lease import Lease, lease_token
from ordermesh.platform.log import bind_ids
from ordermesh.platform.runtime import Consuming, NotOwner, RetryLater, Service
from ordermesh.routing.orders import Applied, Ev, InvalidTransition, OrderRecord
from ordermesh.routing.partitions import accounts_of, partition_of, rebalance
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

    async def load(self, accounts: Iterable[str] | None = None) -> int:
        """Rebuild memory and exposure from the bucket's records (of ``accounts``; all when None): at start, and
        when this router takes a partition (what its previous owner wrote is the state of record)."""
        wanted = None if accounts is None else set(accounts)
        kv = await self._bus.kv(KV_ORDERS)
        watcher = await kv.watchall(ignore_deletes=True)
        n = 0
        try:
            while (entry := await watcher.updates(timeout=30.0)) is not None:
                if entry.value:
                    rec = msgspec.msgpack.decode(entry.value, type=OrderRecord)
                    if wanted is None or rec.account in wanted:
                        self._count(rec)
                        n += 1
        finally:
            await watcher.stop()
        return n

    def forget(self, accounts: Iterable[str]) -> None:
        """Drop what memory holds of ``accounts`` (a partition given up, or about to be reloaded)."""
        gone = set(accounts)
        for coid in [c for c, rec in self._cache.items() if rec.account in gone]:
            del self._cache[coid]
            self._seen.pop(coid, None)
        self._exposure.forget(gone)

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


@dataclass
class HeldPartition:
    """A partition this router holds: its lease (the fencing token of every command), accounts and consumers."""

    partition: int
    lease: Lease
    accounts: list[str]
    consumers: list[Consuming] = field(default_factory=list)
    control: Any = None  # the subscription answering control requests forwarded to the owner


#: A router whose heartbeat has not been heard for this long no longer counts when partitions are shared out.
ROUTER_STALE_S = 3.0

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
        self.partitions = config.router.partitions
        self.held: dict[int, HeldPartition] = {}
        #: lease key -> (holder, token, when its last write was seen): who holds which partition, from the watch
        self.leases: dict[str, tuple[str, int, float]] = {}
        self.routers_seen: dict[str, float] = {}  # router instance -> when its heartbeat was last heard
        #: accounts whose trading state this router changed and has not written yet (a watch must not undo it)
        self._dirty: set[str] = set()
        self._control_lock = asyncio.Lock()

    def default_http_port(self) -> int:
        return self.config.http.router

    # ------------------------------------------------------------------------------------ setup

    async def setup(self) -> None:
        self.store = OrderStore(self.bus, self.view.exposure)
        await self.load_control()
        s = self.subjects
        self._mirrors.append(await self.bus.kv_mirror(KV_ACCOUNTS, self.on_account))
        self._mirrors.append(await self.bus.kv_mirror(KV_INSTRUMENTS, self.instruments.on_report))
        self._mirrors.append(await self.bus.kv_mirror(KV_CONTROL, self.on_control_state))
        self._mirrors.append(await self.bus.kv_mirror(KV_LEASES, keys="router.>", on_entry=self.on_lease))
        await self.bus.subscribe(f"{s.prefix}.md.>", self.on_quote)
        await self.bus.subscribe(f"{s.prefix}.health.gateway.>", self.on_heartbeat)
        await self.bus.subscribe(f"{s.prefix}.health.router.>", self.on_router_heartbeat)
        await self.bus.subscribe(s.all_ctl, self.on_control, queue="router")
        # every router reloads its registry (each answers; the asker takes the first answer)
        await self.bus.subscribe(s.ctl("registry.reload"), self.on_registry_reload)
        await self.rebalance()  # the first share of partitions before the service counts as started
        self.spawn(self._partitions_loop(), "partitions")

    # ------------------------------------------------------------------------------ partitions

    @property
    def lease_period_s(self) -> float:
        return max(0.2, self.config.nats.lease_ttl_s / 3)

    def on_lease(self, key: str, value: bytes | None, revision: int) -> None:
        found = lease_token(value, revision)
        if found is None:
            self.leases.pop(key, None)
        else:
            self.leases[key] = (found[0], found[1], time.monotonic())

    async def on_router_heartbeat(self, msg: Msg) -> None:
        with contextlib.suppress(BadMessage):
            hb = HEARTBEAT_CODEC.decode(msg.data)
            if hb.service == self.name:
                self.routers_seen[hb.instance] = time.monotonic()

    def live_routers(self) -> int:
        now = time.monotonic()
        others = {i for i, seen in self.routers_seen.items() if now - seen < ROUTER_STALE_S and i != self.instance}
        return 1 + len(others)

    def free_partitions(self) -> list[int]:
        """Partitions nobody seems to hold: no lease key, or one not renewed for a whole ttl (expired; the server
        removes such a key without telling watchers)."""
        now, ttl = time.monotonic(), self.config.nats.lease_ttl_s
        out = []
        for p in range(self.partitions):
            if p in self.held:
                continue
            seen = self.leases.get(router_lease(p))
            if seen is None or now - seen[2] > ttl:
                out.append(p)
        return out

    async def _partitions_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_period_s)
            try:
                await self.rebalance()
            except (TimeoutError, nats.errors.Error) as exc:
                self.log.warning("partition leases not renewed this round", error=str(exc) or type(exc).__name__)

    async def rebalance(self) -> None:
        """Renew what this router holds (drop what it lost), then take or give up partitions toward its share."""
        for p, held in list(self.held.items()):
            if not await held.lease.renew():
                self.log.warning("partition lost", partition=p)
                await self.drop(p, drain_s=0.0)
        take, give = rebalance(self.instance, self.held, self.free_partitions(), self.live_routers(), self.partitions)
        for p in give:
            await self.drop(p, drain_s=2.0)
        kv = await self.bus.kv(KV_LEASES)
        got = []
        for p in take:
            lease = Lease(kv, router_lease(p), self.instance, self.config.nats.lease_ttl_s)
            if await lease.acquire():
                got.append((p, lease))
        if got:
            try:
                await self.take(got)
            except BaseException:
                # not routed after all (NATS did not answer while loading): what was started stops, the leases go
                for p, lease in got:
                    if p in self.held:
                        await self.drop(p, drain_s=0.0)
                    await lease.release()
                raise

    async def take(self, got: list[tuple[int, Lease]]) -> None:
        """Start routing partitions just leased: their records reloaded (the state of record, whoever wrote it),
        then their consumers, which resume where the previous owner's acks left them."""
        s = self.subjects
        accounts = {p: accounts_of(p, self.config.accounts, self.partitions) for p, _ in got}
        everyone = [a for accs in accounts.values() for a in accs]
        self.store.forget(everyone)
        loaded = await self.store.load(everyone) if self.partitions > 1 else await self.store.load()
        for p, lease in got:
            held = self.held[p] = HeldPartition(p, lease, accounts[p])
            orders, exec_ = router_durables(p)
            # one partition: every order subject (an account missing from this config still gets its denial)
            filters = (s.all_orders,) if self.partitions == 1 else tuple(s.order(a) for a in accounts[p])
            if filters:
                held.consumers.append(
                    self.start_consuming(
                        stream=ORDERS,
                        durable=orders,
                        filter_subject=filters,
                        codec=ORDER_CODEC,
                        handler=self.on_order,
                        lane=lambda req: f"{req.intent.account}\x1f{req.intent.intent_id}",
                        on_bad=self.on_bad_order,
                    )
                )
            held.consumers.append(
                self.start_consuming(
                    stream=EXEC,
                    durable=exec_,
                    filter_subject=s.all_exec,
                    codec=EXEC_CODEC,
                    handler=self._exec_handler(p),
                    lane=lambda event: event.client_order_id,
                )
            )
            held.control = await self.bus.subscribe(s.partition_ctl(p), self._partition_control_handler(p))
            metrics.ROUTER_PARTITIONS.labels(str(p)).set(1)
        self.log.info(
            "partitions taken",
            partitions=sorted(p for p, _ in got),
            held=sorted(self.held),
            orders=loaded,
            open_orders=len(self.store.open_records()),
        )

    async def drop(self, p: int, drain_s: float) -> None:
        """Stop routing partition ``p``: consumers stopped (what is in hand finishes for up to ``drain_s``; the
        rest goes back to the server), its lease released when given up (lost: nothing to release)."""
        held = self.held.pop(p, None)
        if held is None:
            return
        if held.control is not None:
            with contextlib.suppress(Exception):
                await held.control.unsubscribe()
        await asyncio.gather(*(c.stop(drain_s) for c in held.consumers))
        if drain_s:
            await held.lease.release()
        self.store.forget(held.accounts)
        metrics.ROUTER_PARTITIONS.labels(str(p)).set(0)
        self.log.info("partition given up" if drain_s else "partition dropped", partition=p, held=sorted(self.held))

    def fence(self, account: str) -> Fence:
        """The fence of a command for ``account``; NotOwner when this router does not hold its partition now."""
        p = partition_of(account, self.partitions)
        held = self.held.get(p)
        if held is None or not held.lease.held:
            raise NotOwner(f"partition {p} (account {account}) is not held by this router")
        return Fence(lease=held.lease.key, token=held.lease.token)

    def owns(self, account: str) -> bool:
        held = self.held.get(partition_of(account, self.partitions))
        return held is not None and held.lease.held

    def heartbeat(self) -> Heartbeat:
        hb = super().heartbeat()
        held = ",".join(str(p) for p in sorted(self.held))
        return msgspec.structs.replace(hb, detail={"partitions": held, "of": str(self.partitions)})

    async def teardown(self) -> None:
        for m in self._mirrors:
            await m.stop()

    def refresh_metrics(self) -> None:
        metrics.ROUTER_PARTITIONS_CONFIGURED.set(self.partitions)
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
        if not self.owns(state.account):
            return  # its owner keeps its day start and runs its kill switch
        known = self.day_start.get(state.account)
        if known is None or known[0] != day:
            self.day_start[state.account] = (day, state.equity)
            self._dirty.add(state.account)
            self.spawn(self.save_control_until_stored(), "save-control")
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
            self._dirty.add(account)
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
        self._dirty.add(account)
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
            self.fence(intent.account)  # not ours (any more): back to the server for the owner
            async with self.store.locked(coid):
                existing = await self.store.get(coid)
                if existing is not None:
                    # Already decided: a repeat of the same intent never reaches a broker again.
                    self.log.info("duplicate order request ignored", status=existing.status.value)
                    metrics.MESSAGES.labels(self.name, "router", "duplicate").inc()
                    if existing.status is OrderStatus.DENIED and self.recent(existing):
                        # recorded, maybe not published (a crash in between): the same denial again, which the
                        # stream drops if it has it (a replay long after has long had it: nothing sent)
                        await self.publish_denial(existing.denial())
                    return
                started = time.perf_counter()
                try:
                    decision = self.decide(req, coid)
                except (ArithmeticError, ValueError) as exc:
                    # Figures the risk arithmetic cannot handle: refused to the strategy, counted, never retried.
                    self.bad_message(msg.subject, "unprocessable", repr(exc))
                    decision = deny(req, coid, RejectCategory.INVALID, f"unprocessable: {exc!r}"[:500])
                metrics.ROUTER_DECISION_SECONDS.observe(time.perf_counter() - started)
                fence = self.fence(intent.account)  # checked again just before anything leaves
                if isinstance(decision, OrderDenied):
                    # Record first: a redelivery (after a crash, or to the partition's next owner) finds the
                    # decision and repeats the same denial instead of deciding again, maybe otherwise.
                    rec = OrderRecord.denied(decision, intent.side, req.quantity)
                    await self.store.put(rec)
                    await self.publish_denial(decision)
                    metrics.REFUSALS.labels(self.name, decision.category.value).inc()
                    metrics.ORDERS.labels(OrderStatus.DENIED.value).inc()
                    self.log.info("order denied", reason=decision.reason)
                    return
                cmd = msgspec.structs.replace(decision, fence=fence)
                # Command first, record second: a crash in between redelivers this request, which finds no
                # record and republishes the same command id, dropped by the stream as a duplicate.
                await self.bus.publish(self.subjects.cmd(cmd.broker_id), cmd, msg_id=cmd.command_id)
                rec = OrderRecord.from_command(cmd)
                rec.transition(Ev.SUBMIT)
                await self.store.put(rec)
            metrics.ORDERS.labels(OrderStatus.SUBMITTED.value).inc()
            metrics.HOP_SECONDS.labels("order_to_command").observe(max(0, time.time_ns() - req.ts_ns) / 1e9)
            self.log.debug("order submitted", broker_id=cmd.broker_id, quantity=str(cmd.quantity))

    def recent(self, rec: OrderRecord) -> bool:
        """Written within the streams' duplicate window (a repeat published now would still be dropped)."""
        return time.time_ns() - rec.updated_ns < self.config.nats.duplicate_window_s * 1e9

    async def publish_denial(self, denial: OrderDenied) -> None:
        subject = self.subjects.reject(denial.strategy_id)
        await self.bus.publish(subject, denial, msg_id=f"deny:{denial.client_order_id}")

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
                self._dirty.add(intent.account)
                self.spawn(self.save_control_until_stored(), "save-control")
            return deny(req, coid, denial.category, denial.detail)
        return place_command(req, coid, broker_id, self.config.router.command_ttl_s, time.time_ns())

    def _exec_handler(self, partition: int) -> Callable[[ExecEvent, Msg], Any]:
        """Partition ``partition``'s exec consumer reads every report and acts on its own accounts' only."""

        async def on_exec(event: ExecEvent, msg: Msg) -> None:
            if partition_of(event.account, self.partitions) != partition:
                return  # another partition's: its own consumer has it
            self.fence(event.account)  # the partition was lost meanwhile: left to the next owner
            await self.on_exec(event, msg)

        return on_exec

    async def on_exec(self, event: ExecEvent, msg: Msg) -> None:
        with bind_ids(intent_id=event.intent_id, client_order_id=event.client_order_id):
            async with self.store.locked(event.client_order_id):
                rec = await self.store.get(event.client_order_id)
                if rec is None and event.parent_client_order_id is not None:
                    parent = await self.store.get(event.parent_client_order_id)
                    if parent is not None and not parent.filled_qty and not isinstance(event, OrderFilled):
                        # the parent's fill (in another lane) is not applied yet: the child's size is what it filled
                        raise RetryLater(f"parent {parent.client_order_id} of {event.client_order_id} not filled yet")
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
        if entry.value:
            self.apply_control(msgspec.msgpack.decode(entry.value, type=ControlState))

    def apply_control(self, state: ControlState) -> None:
        """Take the shared trading states and day starts (any router may have changed them), keeping those of
        accounts this router changed and has not written yet."""
        keep = self._dirty
        self.trading.global_state = state.global_state
        mine = {a: ts for a, ts in self.trading.accounts.items() if a in keep}
        self.trading.accounts.clear()
        self.trading.accounts.update({a: ts for a, ts in state.accounts.items() if a not in keep} | mine)
        strategies = {k: ts for k, ts in self.trading.strategies.items() if k[0] in keep}
        self.trading.strategies.clear()
        for account, by_strategy in state.strategies.items():
            if account not in keep:
                for strategy, ts in by_strategy.items():
                    self.trading.strategies[(account, strategy)] = ts
        self.trading.strategies.update(strategies)
        for account, started in state.day_start.items():
            if account not in keep:
                self.day_start[account] = started

    def on_control_state(self, key: str, value: bytes | None) -> None:
        if key != "router" or not value:
            return
        try:
            self.apply_control(msgspec.msgpack.decode(value, type=ControlState))
        except (msgspec.DecodeError, ValueError):
            self.bad_message(f"$KV.{KV_CONTROL}.{key}", "decode", "control state")

    async def update_control(self, change: Callable[[ControlState], None]) -> ControlState:
        """Change the shared control state (KV ``om_control``, key ``router``) by revision: routers never overwrite
        each other's changes; a conflict re-reads and applies ``change`` again."""
        kv = await self.bus.kv(KV_CONTROL)
        async with self._control_lock:
            for _ in range(50):
                try:
                    entry = await kv.get("router")
                    revision = int(entry.revision or 0)
                    state = msgspec.msgpack.decode(entry.value, type=ControlState) if entry.value else ControlState()
                except KeyNotFoundError:
                    revision, state = 0, ControlState()
                change(state)
                data = msgspec.msgpack.encode(state)
                try:
                    if revision:
                        await kv.update("router", data, last=revision)
                    else:
                        await kv.create("router", data)
                except KeyWrongLastSequenceError:
                    continue
                self._dirty.clear()
                self.apply_control(state)
                return state
        raise RuntimeError("the control state kept changing under this router; try again")

    async def save_control_until_stored(self) -> None:
        """:meth:`save_control` in the background: tried again while NATS does not answer (a leader election),
        never stopping the router for it."""
        delay = 0.2
        while True:
            try:
                await self.save_control()
                return
            except (TimeoutError, nats.errors.Error) as exc:
                self.log.warning("control state not saved; retrying", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def save_control(self) -> None:
        """Write what this router decided for the accounts it owns (trading states, day starts)."""
        mine = {a for a in self.config.accounts if self.owns(a)} | self._dirty

        def change(state: ControlState) -> None:
            for account in mine:
                ts = self.trading.accounts.get(account)
                if ts is None:
                    state.accounts.pop(account, None)
                else:
                    state.accounts[account] = ts
                strategies = {st: v for (a, st), v in self.trading.strategies.items() if a == account}
                if strategies:
                    state.strategies[account] = strategies
                if account in self.day_start:
                    state.day_start[account] = self.day_start[account]

        await self.update_control(change)

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

    async def accepted_control(self, msg: Msg) -> Any:
        """The control request in ``msg``, or None when it was refused (counted and answered with the reason)."""
        try:
            req = CONTROL_CODEC.decode(msg.data)
        except BadMessage as exc:
            self.bad_message(msg.subject, exc.reason, exc.detail)
            await self.respond(msg, ControlReply(ok=False, detail=f"{exc.reason}: {exc.detail}"))
            return None
        refusal = self.control_refusal(msg.subject, req)
        if refusal:
            self.bad_message(msg.subject, "control_subject", refusal)
            await self.respond(msg, ControlReply(ok=False, detail=refusal))
            return None
        return req

    async def on_registry_reload(self, msg: Msg) -> None:
        """``ctl.registry.reload`` reaches every router (no queue group): each reloads and answers."""
        if await self.accepted_control(msg) is not None:
            await self.respond(msg, await self.reload_registry())

    async def on_control(self, msg: Msg) -> None:
        if msg.subject == self.subjects.ctl("registry.reload"):
            return  # answered by every router's own subscription (on_registry_reload)
        req = await self.accepted_control(msg)
        if req is None:
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
                TradingStates().set(req.state, req.account, req.strategy_id)  # refused before anything is written
            except ValueError as exc:
                return ControlReply(ok=False, detail=str(exc))
            await self.update_control(lambda state: set_trading(state, req))
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
            p = partition_of(req.account, self.partitions)
            if p not in self.held:
                return await self.forward(p, req)
            coid = req.client_order_id or client_order_id(req.account, req.intent_id or "")
            return await self.cancel(coid, requested_by=req.strategy_id)
        if isinstance(req, CancelAll):
            return await self.cancel_all(req)
        if isinstance(req, RegistryReload):
            return await self.reload_registry()
        return ControlReply(ok=False, detail=f"{type(req).__name__} is not handled by the router")

    async def forward(self, p: int, req: Any) -> ControlReply:
        """A control request about partition ``p``, which another router holds: asked of its owner."""
        try:
            data = await self.bus.request(self.subjects.partition_ctl(p), req, timeout=5.0)
            reply = CONTROL_CODEC.decode(data)
        except (TimeoutError, nats.errors.Error, BadMessage) as exc:
            why = "no router holds it right now" if isinstance(exc, nats.errors.NoRespondersError) else repr(exc)
            return ControlReply(ok=False, detail=f"partition {p}: {why}; try again in a few seconds")
        return reply if isinstance(reply, ControlReply) else ControlReply(ok=False, detail="unexpected reply")

    async def cancel_all(self, req: CancelAll) -> ControlReply:
        """Cancel-all over every partition: this router's own, and each other one asked of its owner."""
        partitions = [partition_of(req.account, self.partitions)] if req.account else range(self.partitions)
        sent, problems = 0, []
        for p in partitions:
            reply = await (self.cancel_all_held(req, p) if p in self.held else self.forward(p, req))
            if reply.ok:
                sent += reply.count or 0
            else:
                problems.append(reply.detail)
        detail = f"{sent} cancel(s) sent" + "".join(f"; {p}" for p in problems)
        return ControlReply(ok=not problems, detail=detail, count=sent)

    async def cancel_all_held(self, req: CancelAll, p: int) -> ControlReply:
        sent = 0
        for rec in self.store.open_records():
            if partition_of(rec.account, self.partitions) != p:
                continue
            if (req.account and rec.account != req.account) or (req.strategy_id and rec.strategy_id != req.strategy_id):
                continue
            if rec.status is OrderStatus.PENDING_CANCEL:
                continue  # a cancel is already on its way
            if (await self.cancel(rec.client_order_id, requested_by=None)).ok:
                sent += 1
        return ControlReply(ok=True, detail=f"{sent} cancel(s) sent", count=sent)

    def _partition_control_handler(self, p: int) -> Callable[[Msg], Any]:
        """Requests forwarded to the owner of partition ``p`` (``om.router.p<k>.ctl``): cancels of its orders."""

        async def on_partition_control(msg: Msg) -> None:
            try:
                req = CONTROL_CODEC.decode(msg.data)
            except BadMessage as exc:
                self.bad_message(msg.subject, exc.reason, exc.detail)
                await self.respond(msg, ControlReply(ok=False, detail=f"{exc.reason}: {exc.detail}"))
                return
            try:
                if isinstance(req, CancelAll):
                    reply = await self.cancel_all_held(req, p)
                elif isinstance(req, CancelRequest) and partition_of(req.account, self.partitions) == p:
                    coid = req.client_order_id or client_order_id(req.account, req.intent_id or "")
                    reply = await self.cancel(coid, requested_by=req.strategy_id)
                else:
                    reply = ControlReply(ok=False, detail=f"{type(req).__name__} is not answered on {msg.subject}")
            except NotOwner as exc:
                reply = ControlReply(ok=False, detail=f"{exc}; try again in a few seconds")
            except Exception as exc:  # a control request must always be answered
                self.log.exception("forwarded control request failed", request=type(req).__name__)
                reply = ControlReply(ok=False, detail=f"{type(exc).__name__}: {exc}")
            await self.respond(msg, reply)

        return on_partition_control

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
            fence = self.fence(rec.account)
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
                fence=fence,
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


def set_trading(state: ControlState, req: SetTradingState) -> None:
    """Apply an operator's trading-state change to the shared control state."""
    if req.strategy_id is not None and req.account is not None:
        state.strategies.setdefault(req.account, {})[req.strategy_id] = req.state
    elif req.account is not None:
        state.accounts[req.account] = req.state
    else:
        state.global_state = req.state


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
