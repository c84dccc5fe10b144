from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import msgspec
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError

from ordermesh import metrics
from ordermesh.bus import stream_seq
from ordermesh.config import OrderMeshConfig
from ordermesh.log import bind_ids
from ordermesh.positions import BookSnapshot, PositionBook
from ordermesh.runtime import Service
from ordermesh.subjects import EXEC, KV_ACCOUNTS, KV_KEEPER, kv_key
from ordermesh.wire import (
    EXEC_CODEC,
    QUERY_CODEC,
    AccountQuery,
    AccountState,
    BadMessage,
    ErrorReply,
    OrderFilled,
    PositionsQuery,
    PositionsReply,
    encode,
)


class KeeperService(Service):
    """Applies fills in stream order. Its snapshot (state + last applied exec sequence) lives in the
    ``om_keeper`` bucket; a restart loads it and resumes at the next sequence, so nothing is applied twice and
    nothing is skipped. ``replay=True`` ignores the snapshot and rebuilds from the first message."""

    name = "keeper"

    def __init__(self, config: OrderMeshConfig, *, replay: bool = False, **kw: object) -> None:
        kw.setdefault("instance", "keeper")
        super().__init__(config, **kw)  # type: ignore[arg-type]
        self.replay = replay
        self.book = PositionBook()
        self._since_snapshot = 0
        self._snapshot_lock = asyncio.Lock()

    def default_http_port(self) -> int:
        return self.config.http.keeper

    @property
    def snapshot_key(self) -> str:
        return kv_key("snapshot", self.instance)

    async def setup(self) -> None:
        if not self.replay:
            self.book = PositionBook(await self.load_snapshot())
        self.log.info("keeper resuming", applied_seq=self.book.applied_seq, fills=self.book.fills_applied)
        metrics.KEEPER_APPLIED_SEQ.labels(self.instance).set(self.book.applied_seq)
        await self.bus.subscribe(self.subjects.q("positions"), self.on_query, queue="keeper")
        await self.bus.subscribe(self.subjects.q("account"), self.on_query, queue="keeper")
        await self.bus.ordered_from(EXEC, self.subjects.all_exec, self.book.applied_seq + 1, self.on_exec)
        self.spawn(self._snapshot_loop(), "snapshot")

    async def teardown(self) -> None:
        await self.save_snapshot()

    async def load_snapshot(self) -> BookSnapshot | None:
        try:
            entry = await (await self.bus.kv(KV_KEEPER)).get(self.snapshot_key)
        except KeyNotFoundError:
            return None
        return msgspec.msgpack.decode(entry.value, type=BookSnapshot) if entry.value else None

    async def save_snapshot(self) -> None:
        async with self._snapshot_lock:
            if self._since_snapshot == 0 and self.book.applied_seq == 0:
                return
            data = msgspec.msgpack.encode(self.book.snapshot())
            await (await self.bus.kv(KV_KEEPER)).put(self.snapshot_key, data)
            self._since_snapshot = 0
            await self.publish_accounts()

    def account_state(self, account: str) -> AccountState | None:
        settings = self.config.accounts.get(account)
        if settings is None:
            return None
        realized = Decimal(0)
        commission = Decimal(0)
        for p in self.book.accounts.get(account, {}).values():
            realized += p.realized_pnl
            commission += p.commission
        balance = settings.deposit + realized - commission
        return AccountState(
            account=account,
            currency=settings.currency,
            balance=balance,
            equity=balance,
            free_margin=balance,
            realized_pnl=realized,
            commission=commission,
            applied_seq=self.book.applied_seq,
        )

    async def publish_accounts(self) -> None:
        kv = await self.bus.kv(KV_ACCOUNTS)
        for account in self.config.accounts:
            state = self.account_state(account)
            if state is not None:
                await kv.put(kv_key(account), encode(state))

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.keeper.snapshot_interval_s)
            if self._since_snapshot:
                await self.save_snapshot()

    # ------------------------------------------------------------------------------ handlers

    async def on_exec(self, msg: Msg) -> None:
        seq = stream_seq(msg)
        if seq <= self.book.applied_seq:
            return  # already in the snapshot
        try:
            event = EXEC_CODEC.decode(msg.data)
        except BadMessage as exc:
            self.bad_message(msg.subject, exc.reason, exc.detail)
            self.book.skip(seq)
            return
        if isinstance(event, OrderFilled):
            with bind_ids(intent_id=event.intent_id, client_order_id=event.client_order_id):
                if self.book.apply_fill(event, seq):
                    metrics.FILLS.labels(self.name, event.broker_id).inc()
                    pos = self.book.accounts[event.account][event.symbol]
                    metrics.POSITION_QTY.labels(event.account, event.symbol).set(float(pos.quantity))
                    self._since_snapshot += 1
                else:
                    self.log.info("duplicate fill ignored", fill_id=event.fill_id)
        else:
            self.book.skip(seq)
        metrics.KEEPER_APPLIED_SEQ.labels(self.instance).set(seq)
        if self._since_snapshot >= self.config.keeper.snapshot_every:
            await self.save_snapshot()

    async def on_query(self, msg: Msg) -> None:
        try:
            query = QUERY_CODEC.decode(msg.data)
        except BadMessage as exc:
            self.bad_message(msg.subject, exc.reason, exc.detail)
            await msg.respond(encode(ErrorReply(reason=f"{exc.reason}: {exc.detail}")))
            return
        if isinstance(query, PositionsQuery):
            reply: object = PositionsReply(
                positions=self.book.positions(query.account, query.strategy_id, query.by_strategy),
                applied_seq=self.book.applied_seq,
                fills_applied=self.book.fills_applied,
                ts_ns=time.time_ns(),
            )
        elif isinstance(query, AccountQuery):
            state = self.account_state(query.account)
            reply = state if state is not None else ErrorReply(reason=f"unknown account {query.account!r}")
        await msg.respond(encode(reply))  # type: ignore[arg-type]
