from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from ordermesh.books.accounting import BookSnapshot, FillRefused, Ledger, Rules, equity_point, reconcile
from ordermesh.brokers.registry import BrokerRegistry
from ordermesh.contract.codec import (
    EXEC_CODEC,
    QUERY_CODEC,
    QUOTE_CODEC,
    RECONCILE_CODEC,
    BadMessage,
    decode_any,
    encode,
)
from ordermesh.contract.subjects import EXEC, KV_ACCOUNTS, KV_KEEPER, kv_key
from ordermesh.contract.wire import (
    AccountQuery,
    AccountState,
    BrokerPositionsQuery,
    BrokerPositionsReply,
    EquityPoint,
    ErrorReply,
    OrderFilled,
    PositionsQuery,
    PositionsReply,
    ReconciliationReport,
)
from ordermesh.platform import metrics
from ordermesh.platform.config import ConfigError, OrderMeshConfig
from ordermesh.platform.log import bind_ids
from ordermesh.platform.runtime import Service
from ordermesh.sizing.instruments import InstrumentSpec, load_instruments

#: An exec event's own time is trusted up to this far past the time the stream stored it: a forged ``ts_ns``
#: years ahead would otherwise move the books' clock and charge swaps for every night in between.
CLOCK_SKEW_NS = 60 * 1_000_000_000


class KeeperService(Service):
    """Applies fills in stream order. Its snapshot (state + last applied exec sequence) lives in the
    ``om_keeper`` bucket; a restart loads it and resumes at the next sequence, so nothing is applied twice and
    nothing is skipped. ``replay=True`` ignores the snapshot and rebuilds from the first message.

    Per fill the work stays in memory; the snapshot and the account states are written every
    ``keeper.snapshot_every`` fills / ``snapshot_interval_s``. Once caught up with the stream (at most
    ``keeper.catch_up_pending`` messages behind) every fill also yields an account state and an equity point,
    written by a background task so the consumer callback never waits on them."""

    name = "keeper"

    def __init__(self, config: OrderMeshConfig, *, replay: bool = False, **kw: object) -> None:
        kw.setdefault("instance", "keeper")
        super().__init__(config, **kw)  # type: ignore[arg-type]
        self.replay = replay
        self.rules = Rules(
            accounts=dict(config.accounts),
            specs=self._load_specs(),
            swaps=dict(config.keeper.swaps),
            rollover_hour_utc=config.keeper.swap_rollover_hour_utc,
            triple_swap_weekday=config.keeper.triple_swap_weekday,
            brokers=frozenset(config.brokers),  # a fill from any other broker is refused
        )
        self.book = Ledger(rules=self.rules, recent_fills=config.keeper.recent_fills)
        self._pending = metrics.CONSUMER_PENDING.labels(self.name, EXEC, self.name)  # set per exec message
        self.quotes: dict[str, tuple[Decimal, Decimal]] = {}
        self._since_snapshot = 0
        self._snapshot_lock = asyncio.Lock()
        self._points: list[EquityPoint] = []
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()

    def _load_specs(self) -> dict[str, InstrumentSpec]:
        try:
            return load_instruments(self.config.sizer.instruments_file)
        except ConfigError as exc:
            # Without specs PnL is per unit of price and no margin is computed; say so, keep running.
            self.log.error("instrument specs not loaded; contract size 1, no margin", error=str(exc))
            return {}

    def default_http_port(self) -> int:
        return self.config.http.keeper

    def metric_values(self) -> dict[str, tuple[str, ...]]:
        return {**super().metric_values(), "broker_id": tuple(sorted(self.config.brokers))}

    def refresh_metrics(self) -> None:
        states = [s for s in map(self.account_state, self.accounts()) if s is not None]
        held = self.book.positions(by_strategy=True, quote_of=self.quote_of)
        metrics.observe_books(states, held, {k: v.quote_currency for k, v in self.rules.specs.items()})

    @property
    def snapshot_key(self) -> str:
        return kv_key("snapshot", self.instance)

    async def setup(self) -> None:
        if not self.replay:
            self.book = Ledger(await self.load_snapshot(), self.rules, recent_fills=self.config.keeper.recent_fills)
        self.log.info("keeper resuming", applied_seq=self.book.applied_seq, fills=self.book.fills_applied)
        metrics.KEEPER_APPLIED_SEQ.set(self.book.applied_seq)
        s = self.subjects
        await self.bus.subscribe(f"{s.prefix}.md.>", self.on_quote)
        await self.bus.subscribe(s.q("positions"), self.on_query, queue="keeper")
        await self.bus.subscribe(s.q("account"), self.on_query, queue="keeper")
        await self.bus.subscribe(s.q("reconcile"), self.on_reconcile_query, queue="keeper")
        await self.bus.ordered_from(EXEC, s.all_exec, self.book.applied_seq + 1, self.on_exec)
        self.spawn(self._snapshot_loop(), "snapshot")
        self.spawn(self._publish_loop(), "publish")
        self.spawn(self._equity_loop(), "equity")
        if self.config.keeper.reconcile_interval_s > 0:
            self.spawn(self._reconcile_loop(), "reconcile")

    async def teardown(self) -> None:
        await self.save_snapshot()

    async def load_snapshot(self) -> BookSnapshot | None:
        try:
            entry = await (await self.bus.kv(KV_KEEPER)).get(self.snapshot_key)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        try:
            snapshot = msgspec.msgpack.decode(entry.value, type=BookSnapshot)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # An unreadable snapshot (older layout): rebuild from the stream rather than guess.
            self.log.error("snapshot unreadable; rebuilding from the stream", error=str(exc))
            return None
        poisoned = Ledger(snapshot, self.rules).poisoned()
        if poisoned:
            # Written before fills were checked (a NaN price, 1e300 lots): the stream, re-applied with the
            # checks, gives the books without the fills that poisoned them.
            self.log.error("snapshot holds impossible values; rebuilding from the stream", problem=poisoned)
            return None
        return snapshot

    async def save_snapshot(self) -> None:
        async with self._snapshot_lock:
            if self._since_snapshot == 0 and self.book.applied_seq == 0:
                return
            data = msgspec.msgpack.encode(self.book.snapshot())
            await (await self.bus.kv(KV_KEEPER)).put(self.snapshot_key, data)
            self._since_snapshot = 0
            await self.publish_accounts()

    # ------------------------------------------------------------------------------ views

    def quote_of(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        return self.quotes.get(symbol)

    def accounts(self) -> list[str]:
        return sorted(set(self.config.accounts) | set(self.book.books))

    def account_state(self, account: str) -> AccountState | None:
        if account not in self.config.accounts and account not in self.book.books:
            return None
        return self.book.account_state(account, self.quote_of, ts_ns=time.time_ns())

    async def publish_accounts(self, accounts: list[str] | None = None) -> None:
        kv = await self.bus.kv(KV_ACCOUNTS)
        for account in accounts if accounts is not None else self.accounts():
            state = self.account_state(account)
            if state is not None:
                await kv.put(kv_key(account), encode(state))

    async def publish_point(self, point: EquityPoint, msg_id: str) -> None:
        await self.bus.publish(self.subjects.equity(point.account), point, msg_id=msg_id)
        metrics.EQUITY_POINTS.labels(point.reason).inc()

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.keeper.snapshot_interval_s)
            if self._since_snapshot:
                try:
                    await self.save_snapshot()
                except (TimeoutError, nats.errors.Error) as exc:
                    self.log.warning("snapshot failed; will retry", error=str(exc) or type(exc).__name__)

    async def _publish_loop(self) -> None:
        """Writes the per-fill account states and equity points queued by ``on_exec`` (coalescing states)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            points, self._points = self._points, []
            dirty, self._dirty = sorted(self._dirty), set()
            try:
                for p in points:
                    await self.publish_point(p, f"equity:{p.account}:{p.applied_seq}")
                await self.publish_accounts(dirty)
            except (TimeoutError, nats.errors.Error) as exc:
                self.log.warning("publishing account state failed", error=str(exc) or type(exc).__name__)

    async def _equity_loop(self) -> None:
        interval = self.config.keeper.equity_interval_s
        while True:
            await asyncio.sleep(interval)
            bucket = int(time.time() / interval)
            try:
                for account in self.accounts():
                    state = self.account_state(account)
                    if state is not None:
                        point = equity_point(state, "interval", self.book.fills_applied)
                        await self.publish_point(point, f"equity:{account}:t{bucket}")
            except (TimeoutError, nats.errors.Error) as exc:
                self.log.warning("publishing equity point failed", error=str(exc) or type(exc).__name__)

    # ------------------------------------------------------------------------------ handlers

    async def on_quote(self, msg: Msg) -> None:
        try:
            q = QUOTE_CODEC.decode(msg.data)
        except BadMessage as exc:
            self.bad_message(msg.subject, exc.reason, exc.detail)  # counted; the next quote replaces it
            return
        if q.bid > 0 and q.ask > 0 and q.bid.is_finite() and q.ask.is_finite():
            self.quotes[q.symbol] = (q.bid, q.ask)

    async def on_exec(self, msg: Msg) -> None:
        md = msg.metadata
        seq = md.sequence.stream
        if seq <= self.book.applied_seq:
            return  # already in the snapshot
        try:
            event = EXEC_CODEC.decode(msg.data)
        except BadMessage as exc:
            self.bad_message(msg.subject, exc.reason, exc.detail)
            self.book.skip(seq)
            return
        # stream time: the event's own, but never far past when the stream stored it (same on every replay)
        ts_ns = min(event.ts_ns, int(md.timestamp.timestamp() * 1e9) + CLOCK_SKEW_NS)
        if isinstance(event, OrderFilled):
            try:
                applied = self.book.apply_fill(event, seq, ts_ns)
            except FillRefused as exc:  # the books are unchanged; the same fill is refused again on replay
                self.bad_message(msg.subject, exc.reason, exc.detail)
                self.book.skip(seq)
                return
            except Exception as exc:  # a bug, not the input: logged with the fill, never a dead consumer
                self.log.exception("fill could not be applied", fill_id=event.fill_id)
                self.bad_message(msg.subject, "handler_failed", f"fill {event.fill_id}: {exc!r}")
                self.book.skip(seq)
                return
            if applied:
                metrics.FILLS.labels(self.name, event.broker_id).inc()
                self._since_snapshot += 1
                if md.num_pending <= self.config.keeper.catch_up_pending:
                    self._live_fill(event)
            else:
                with bind_ids(intent_id=event.intent_id, client_order_id=event.client_order_id):
                    self.log.info("duplicate fill ignored", fill_id=event.fill_id, broker_id=event.broker_id)
                metrics.DUPLICATE_FILLS.inc()
        else:
            self.book.skip(seq, ts_ns)
        metrics.KEEPER_APPLIED_SEQ.set(seq)
        self._pending.set(md.num_pending)
        if self._since_snapshot >= self.config.keeper.snapshot_every:
            await self.save_snapshot()

    def _live_fill(self, fill: OrderFilled) -> None:
        state = self.book.account_state(fill.account, self.quote_of, ts_ns=time.time_ns())
        self._points.append(equity_point(state, "fill", self.book.fills_applied))
        self._dirty.add(fill.account)
        self._wake.set()

    async def on_query(self, msg: Msg) -> None:
        try:
            query = QUERY_CODEC.decode(msg.data)
        except BadMessage as exc:
            self.bad_message(msg.subject, exc.reason, exc.detail)
            await self.respond(msg, ErrorReply(reason=f"{exc.reason}: {exc.detail}"))
            return
        if isinstance(query, PositionsQuery):
            reply: object = PositionsReply(
                positions=self.book.positions(
                    query.account, query.strategy_id, query.by_strategy, quote_of=self.quote_of
                ),
                applied_seq=self.book.applied_seq,
                fills_applied=self.book.fills_applied,
                ts_ns=time.time_ns(),
            )
        elif isinstance(query, AccountQuery):
            state = self.account_state(query.account)
            reply = state if state is not None else ErrorReply(reason=f"unknown account {query.account!r}")
        await self.respond(msg, reply)

    # ------------------------------------------------------------------------- reconciliation

    def brokers(self) -> list[str]:
        try:
            return BrokerRegistry(self.config.brokers).usable()
        except Exception:  # a registry problem must not stop the books
            return sorted(self.config.brokers)

    async def reconcile(self, broker_id: str | None = None) -> ReconciliationReport:
        """Ask each gateway what its broker holds and compare with the keeper's net per (broker, symbol)."""
        diffs = []
        checked = []
        errors: dict[str, str] = {}
        for bid in [broker_id] if broker_id else self.brokers():
            try:
                data = await self.bus.request(
                    self.subjects.q(f"broker_positions.{bid}"), BrokerPositionsQuery(broker_id=bid), timeout=3.0
                )
                reply = decode_any(data)
            except (TimeoutError, nats.errors.Error, BadMessage) as exc:
                errors[bid] = f"no answer from the gateway ({type(exc).__name__})"
                continue
            if not isinstance(reply, BrokerPositionsReply):
                errors[bid] = getattr(reply, "reason", f"unexpected {type(reply).__name__}")
                continue
            checked.append(bid)
            found = reconcile(
                bid,
                {s: q for s, q in self.book.brokers.get(bid, {}).items() if q},
                ((p.symbol, p.quantity) for p in reply.positions),
            )
            metrics.RECON_OPEN_DIFFS.labels(bid).set(len(found))
            for d in found:
                metrics.RECON_DIFFS.labels(bid).inc()
                self.log.warning(
                    "position differs from the broker",
                    broker_id=bid,
                    symbol=d.symbol,
                    keeper_qty=str(d.keeper_qty),
                    broker_qty=str(d.broker_qty),
                )
            if found:
                report = ReconciliationReport(diffs=found, checked=[bid], applied_seq=self.book.applied_seq)
                with contextlib.suppress(nats.errors.Error):
                    await self.bus.publish_core(self.subjects.recon(bid), report)
            diffs.extend(found)
        return ReconciliationReport(diffs=diffs, checked=checked, errors=errors, applied_seq=self.book.applied_seq)

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.keeper.reconcile_interval_s)
            await self.reconcile()

    async def on_reconcile_query(self, msg: Msg) -> None:
        try:
            query = RECONCILE_CODEC.decode(msg.data)
        except BadMessage as exc:
            self.bad_message(msg.subject, exc.reason, exc.detail)
            await self.respond(msg, ErrorReply(reason=f"{exc.reason}: {exc.detail}"))
            return
        if query.broker_id is not None and query.broker_id not in self.config.brokers:
            # not asked of a gateway that cannot exist (each such request would wait out its timeout)
            self.bad_message(msg.subject, "unknown_broker", f"reconcile {query.broker_id!r}")
            await self.respond(msg, ErrorReply(reason=f"unknown broker {query.broker_id!r}"))
            return
        await self.respond(msg, await self.reconcile(query.broker_id))
