"""The strategy SDK.

    async with OrderMeshClient("my-strategy", account="paper-1") as om:
        intent_id = await om.buy("EURUSD", Decimal("0.10"))
        outcome = await om.wait(intent_id)          # the fill, or the refusal with its reason
        async for report in om.reports(): ...        # every report about this strategy's orders
                                                     # (or OrderMeshClient(..., on_report=callback))
        print(await om.positions())

Publishing is idempotent: an intent is stored once per ``intent_id`` (JetStream ``Nats-Msg-Id``), so calling
``submit`` again with the same intent after a timeout can never create a second order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js.api import PubAck
from nats.js.errors import KeyNotFoundError, NoStreamResponseError

from ordermesh.contract.codec import REPORT_CODEC, BadMessage, decode_any
from ordermesh.contract.ids import client_order_id, new_intent_id
from ordermesh.contract.subjects import EXEC, KV_ORDERS, STRATEGY_CONTROLS, kv_key
from ordermesh.contract.wire import (
    AccountQuery,
    AccountState,
    CancelAll,
    CancelRequest,
    ControlReply,
    ErrorReply,
    Fixed,
    Intent,
    IntentRejected,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderType,
    Position,
    PositionsQuery,
    PositionsReply,
    Report,
    SetTradingState,
    Side,
    SizingRequest,
    TimeInForce,
    TradingState,
)
from ordermesh.platform.auth import strategy_identity
from ordermesh.platform.bus import Bus, Feed
from ordermesh.platform.config import OrderMeshConfig, load_config
from ordermesh.routing.orders import OrderRecord
from ordermesh.routing.risk import flatten_plan


class OrderMeshError(Exception):
    pass


class CloseOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What became of one position in ``close_all_positions``."""

    account: str
    symbol: str
    strategy_id: str | None
    quantity: Decimal  # signed, before the close
    status: str  # closed | partial | failed
    remaining: Decimal = Decimal(0)  # signed, after
    reason: str = ""
    intent_id: str | None = None
    position_id: str | None = None  # hedging accounts: the ticket closed (one outcome per ticket)


class KillReport(msgspec.Struct, frozen=True, kw_only=True):
    """What the kill switch did to one account, step by step, and whether the account ended flat and halted."""

    account: str
    steps: list[str]
    closes: list[CloseOutcome]
    flat: bool
    halted: bool


class CloseAllReport(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    strategy_id: str | None
    cancel: str  # what the router said about canceling the open orders
    outcomes: list[CloseOutcome]

    @property
    def flat(self) -> bool:
        return all(o.status == "closed" for o in self.outcomes)


def is_final(report: Report) -> bool:
    """True when nothing more will happen to the intent (fully filled, refused, canceled or expired)."""
    if isinstance(report, OrderFilled):
        return report.leaves_qty == 0
    return isinstance(report, IntentRejected | OrderDenied | OrderRejected | OrderCanceled | OrderExpired)


def _to_close(positions: list[Position]) -> list[Position]:
    """What close-all closes, each in its owner's name: every open ticket (a position with a ``position_id``:
    hedging) on its own, and each strategy's net per symbol of the rest (netting)."""
    tickets = [p for p in positions if p.position_id is not None and p.quantity != 0]
    net: dict[tuple[str | None, str], Decimal] = {}
    for p in positions:
        if p.position_id is None:
            key = (p.strategy_id, p.symbol)
            net[key] = net.get(key, Decimal(0)) + p.quantity
    nets = [
        Position(account=_account_of(positions), symbol=sym, quantity=q, avg_price=Decimal(0), strategy_id=strat)
        for (strat, sym), q in sorted(net.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
        if q != 0
    ]
    return nets + sorted(tickets, key=lambda p: (p.strategy_id or "", p.symbol, str(p.position_id)))


def _account_of(positions: list[Position]) -> str:
    return positions[0].account if positions else ""


def _flatten_plan(positions: list[Position]) -> list[Position]:
    """What the kill switch closes to make the ACCOUNT flat with reduce-only orders: every open ticket (hedging) in
    full, and per symbol the account's net split over the strategies holding its side (``routing.risk.flatten_plan``,
    the router's own when it kills on the daily loss limit)."""
    tickets = [p for p in positions if p.position_id is not None and p.quantity != 0]
    netted = [p for p in positions if p.position_id is None and p.quantity != 0]
    account = netted[0].account if netted else ""
    parts = flatten_plan([(p.strategy_id or "", p.symbol, p.quantity) for p in netted])
    out = [
        Position(account=account, symbol=sym, quantity=q, avg_price=Decimal(0), strategy_id=strategy or None)
        for strategy, sym, q in parts
    ]
    return out + sorted(tickets, key=lambda p: (p.strategy_id or "", p.symbol, str(p.position_id)))


def _key(p: Position) -> tuple[str | None, str]:
    """One close's identity: its owner and its ticket (hedging) or symbol (netting)."""
    return (p.strategy_id, p.position_id if p.position_id is not None else p.symbol)


def _reduces(net: Decimal, qty: Decimal) -> bool:
    """Closing ``qty`` of a strategy reduces the account's net ``net`` without flipping it (netting accounts): only
    then may the close be reduce-only, which the router judges on the account's position."""
    return net != 0 and (net > 0) == (qty > 0) and abs(qty) <= abs(net)


class OrderMeshClient:
    def __init__(
        self,
        strategy_id: str,
        *,
        account: str = "paper-1",
        url: str | None = None,
        config: OrderMeshConfig | None = None,
        remember: int = 10_000,
        on_report: Callable[[Report], None] | None = None,
        identity: str | None = None,
    ) -> None:
        # the same configuration as the services: $ORDERMESH_CONFIG, then ORDERMESH__SECTION__KEY overrides
        settings = (config or load_config()).nats
        if url is not None:
            settings = msgspec.structs.replace(settings, url=url)
        self.strategy_id = strategy_id
        self.account = account
        self.bus = Bus(settings, f"sdk:{strategy_id}", identity=identity or strategy_identity(strategy_id))
        self.subjects = self.bus.subjects
        self._waiters: dict[str, asyncio.Future[Report]] = {}
        self._final: OrderedDict[str, Report] = OrderedDict()  # recent outcomes, for wait() after the fact
        self._remember = remember
        self._queue: asyncio.Queue[Report] | None = None
        self._feeds: list[Feed] = []
        self._on_report_cb = on_report
        self.bad_reports = 0

    # ------------------------------------------------------------------------------ lifecycle

    async def connect(self) -> OrderMeshClient:
        await self.bus.connect()
        await self.bus.wait_stream(EXEC)  # the services create the streams; a client never changes the topology
        # Ordered consumers from "now": gap-free across reconnects, no state left on the server.
        for subject in (self.subjects.strategy_exec(self.strategy_id), self.subjects.reject(self.strategy_id)):
            self._feeds.append(await self.bus.feed(EXEC, subject, self._on_report))
        return self

    async def close(self) -> None:
        for feed in self._feeds:
            await feed.stop()
        self._feeds.clear()
        await self.bus.close()

    async def __aenter__(self) -> OrderMeshClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -------------------------------------------------------------------------------- intents

    async def submit(self, intent: Intent) -> str:
        """Publish an intent (idempotent on its id); returns the intent id once the stream has stored it."""
        await self.publish_intent(intent)
        return intent.intent_id

    async def publish_intent(self, intent: Intent, *, deadline_s: float = 30.0) -> PubAck:
        """Publish an intent; ``PubAck.duplicate`` tells that the stream already had this intent id. Without a
        PubAck (a stream leader being elected, a node down) it is published again, same id, until ``deadline_s``:
        the stream keeps it once however many tries it took."""
        subject = self.subjects.intent(intent.strategy_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        delay = 0.1
        while True:
            try:
                return await self.bus.publish(subject, intent, msg_id=intent.intent_id)
            except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError, NoStreamResponseError):
                if loop.time() + delay >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def order(self, intent_id: str, account: str | None = None) -> OrderRecord | None:
        """The router's record of the order made from an intent (None if no order was made from it)."""
        coid = client_order_id(account or self.account, intent_id)
        try:
            entry = await (await self.bus.kv(KV_ORDERS)).get(kv_key(coid))
        except KeyNotFoundError:
            return None
        return msgspec.msgpack.decode(entry.value, type=OrderRecord) if entry.value else None

    async def settled_order(self, intent_id: str, timeout: float = 5.0) -> OrderRecord | None:
        """The router's record once it is final (or as it stands at the timeout). The record follows the
        execution reports a moment later, so a report already seen here may not be in it yet."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            rec = await self.order(intent_id)
            if (rec is not None and not rec.is_open) or asyncio.get_running_loop().time() >= deadline:
                return rec
            await asyncio.sleep(0.05)

    def intent(
        self,
        side: Side,
        symbol: str,
        qty: Decimal | None = None,
        *,
        sizing: SizingRequest | None = None,
        order_type: OrderType | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
        reduce_only: bool = False,
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
        reference_price: Decimal | None = None,
        broker_id: str | None = None,
        account: str | None = None,
        intent_id: str | None = None,
        position_id: str | None = None,
    ) -> Intent:
        """An intent of this strategy. ``position_id`` names the broker position (ticket) the order closes, in a
        hedging account; use it with ``reduce_only=True``."""
        if (qty is None) == (sizing is None):
            raise ValueError("give either qty (a fixed size) or sizing (Fixed, Kelly or RiskPct)")
        if order_type is None:
            order_type = OrderType.LIMIT if limit_price is not None else OrderType.MARKET
        return Intent(
            intent_id=intent_id or new_intent_id(),
            strategy_id=self.strategy_id,
            account=account or self.account,
            symbol=symbol,
            side=side,
            sizing=sizing if sizing is not None else Fixed(qty=Decimal(qty)),  # type: ignore[arg-type]
            order_type=order_type,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            reduce_only=reduce_only,
            stop_loss=stop_loss,
            take_profit=take_profit,
            reference_price=reference_price,
            broker_id=broker_id,
            position_id=position_id,
        )

    async def buy(self, symbol: str, qty: Decimal | None = None, **kw: Any) -> str:
        return await self.submit(self.intent(Side.BUY, symbol, qty, **kw))

    async def sell(self, symbol: str, qty: Decimal | None = None, **kw: Any) -> str:
        return await self.submit(self.intent(Side.SELL, symbol, qty, **kw))

    async def cancel(self, intent_id: str) -> ControlReply:
        """Ask the router to cancel the order made from ``intent_id``; the outcome arrives as a report
        (OrderCanceled, or OrderCancelRejected when it had already filled). ``reply.ok`` says whether the
        cancel was sent (not whether it succeeded at the broker)."""
        return await self._control(
            "cancel", CancelRequest(account=self.account, strategy_id=self.strategy_id, intent_id=intent_id)
        )

    async def cancel_all(self) -> ControlReply:
        """Cancel every open order of this strategy."""
        return await self._control("cancel_all", CancelAll(account=self.account, strategy_id=self.strategy_id))

    async def _control(self, name: str, msg: Any) -> ControlReply:
        subject = self.subjects.ctl(name, msg.strategy_id if name in STRATEGY_CONTROLS else None)
        reply = decode_any(await self.bus.request(subject, msg, timeout=10.0))
        if not isinstance(reply, ControlReply):
            raise OrderMeshError(f"unexpected reply {type(reply).__name__}")
        return reply

    async def wait(self, intent_id: str, timeout: float = 10.0) -> Report:
        """The final report of an intent: the last fill, or the refusal/cancel with its reason."""
        done = self._final.get(intent_id)
        if done is not None:
            return done
        fut = self._waiters.get(intent_id)
        if fut is None:
            fut = self._waiters[intent_id] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise OrderMeshError(f"no final report for intent {intent_id} within {timeout}s") from None

    # -------------------------------------------------------------------------------- reports

    async def reports(self) -> AsyncIterator[Report]:
        """Every report about this strategy's intents, in the order they happened, from now on."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        while True:
            yield await self._queue.get()

    async def _on_report(self, msg: Msg) -> None:
        try:
            report = REPORT_CODEC.decode(msg.data)
        except BadMessage:
            self.bad_reports += 1
            return
        if self._on_report_cb is not None:
            self._on_report_cb(report)
        if self._queue is not None:
            self._queue.put_nowait(report)
        if is_final(report):
            self._final[report.intent_id] = report
            if len(self._final) > self._remember:
                self._final.popitem(last=False)
            fut = self._waiters.pop(report.intent_id, None)
            if fut is not None and not fut.done():
                fut.set_result(report)

    # ------------------------------------------------------------------------------ close all

    async def close_all_positions(
        self,
        account: str | None = None,
        strategy: str | None = None,
        *,
        whole_account: bool = False,
        timeout: float = 15.0,
    ) -> CloseAllReport:
        """Cancel the open orders, send a market intent closing every open position, wait until the keeper shows
        them flat (or ``timeout``), and report per position: closed, partial (with the rest) or failed (with the
        reason).

        Whose positions: this client's strategy's by default (what a strategy means by "close all"); ``strategy``'s
        (an operator acting for it); or with ``whole_account`` every strategy's in the account (an operator's
        close-all). Each position is closed by an intent in its owner's name, so the books stay per strategy.
        Netting accounts: one intent per strategy and symbol, reduce-only when it reduces the account's net
        position without flipping it (the router judges reduce-only on the account; a strategy long while the
        account is short closes with a plain order of exactly its quantity). Hedging accounts (one position per
        ticket, with its ``position_id``): one reduce-only intent per ticket, naming it."""
        account = account or self.account
        scope = None if whole_account else (strategy or self.strategy_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            cancel = (await self._control("cancel_all", CancelAll(account=account, strategy_id=scope))).detail
        except Exception as exc:  # no router: still close what is open
            cancel = f"open orders not canceled: {type(exc).__name__} {exc}".strip()
        held = _to_close(await self.positions(account=account, strategy_id=scope, by_strategy=True))
        if not held:
            return CloseAllReport(account=account, strategy_id=scope, cancel=cancel, outcomes=[])
        nets: dict[str, Decimal] = {}
        for p in await self.positions(account=account):
            if p.position_id is None:
                nets[p.symbol] = nets.get(p.symbol, Decimal(0)) + p.quantity
        sent, outcomes = await self._execute_closes(
            account,
            [(p, p.position_id is not None or _reduces(nets.get(p.symbol, Decimal(0)), p.quantity)) for p in held],
            deadline,
        )
        # the keeper applies the fills a moment after the reports: wait until it shows them (or the deadline)
        remaining = await self._remaining(account, scope, {_key(p) for p, _, _ in sent}, deadline)
        result = []
        for p, intent, error in sent:
            rest = p.quantity if remaining is None else remaining.get(_key(p), Decimal(0))
            report = outcomes.get(intent.intent_id) if intent is not None else None
            if remaining is None:
                status, reason = "failed", error or "the position-keeper did not answer"
            elif rest == 0:
                status, reason = "closed", ""
            elif error:
                status, reason = "failed", error
            elif rest != p.quantity and (rest > 0) == (p.quantity > 0):
                status = "partial"
                reason = getattr(report, "reason", "") or "not completely filled"
            else:
                status = "failed"
                reason = getattr(report, "reason", "") if report is not None else ""
                if not reason and isinstance(report, OrderFilled):
                    reason = "filled, but the keeper does not show the position flat yet"
                reason = reason or f"no outcome within {timeout:g}s"
            result.append(
                CloseOutcome(
                    account=account,
                    symbol=p.symbol,
                    strategy_id=p.strategy_id,
                    quantity=p.quantity,
                    status=status,
                    remaining=rest,
                    reason=reason,
                    intent_id=intent.intent_id if intent is not None else None,
                    position_id=p.position_id,
                )
            )
        return CloseAllReport(account=account, strategy_id=scope, cancel=cancel, outcomes=result)

    async def kill(self, account: str | None = None, *, timeout: float = 20.0) -> KillReport:
        """The kill switch for one account: trading REDUCING (nothing new may open, closing may), every open order
        canceled, the account's position in every symbol flattened by reduce-only market orders (booked to the
        strategies holding it, :func:`_flatten_plan`), a wait until the keeper shows the account flat (or
        ``timeout``), then trading HALTED whatever the outcome. Needs the operator's identity."""
        account = account or self.account
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        steps: list[str] = []
        why = "kill switch"
        reply = await self._control(
            "trading", SetTradingState(state=TradingState.REDUCING, account=account, reason=why)
        )
        steps.append(f"trading: {reply.detail}" if reply.ok else f"trading not set to REDUCING: {reply.detail}")
        reply = await self._control("cancel_all", CancelAll(account=account))
        steps.append(f"open orders: {reply.detail}")
        closes = _flatten_plan(await self.positions(account=account, by_strategy=True))
        sent, outcomes = await self._execute_closes(account, [(p, True) for p in closes], deadline)
        flat = False
        while True:
            nets: dict[str, Decimal] = {}
            for p in await self.positions(account=account):
                nets[p.symbol] = nets.get(p.symbol, Decimal(0)) + p.quantity
            flat = all(q == 0 for q in nets.values())
            if flat or loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        result = []
        for p, intent, error in sent:
            report = outcomes.get(intent.intent_id) if intent is not None else None
            filled = isinstance(report, OrderFilled) and report.leaves_qty == 0
            reason = error or getattr(report, "reason", "") or ("" if filled else f"no outcome within {timeout:g}s")
            result.append(
                CloseOutcome(
                    account=account, symbol=p.symbol, strategy_id=p.strategy_id, quantity=p.quantity,
                    status="closed" if filled else "failed", remaining=Decimal(0) if filled else p.quantity,
                    reason=reason, intent_id=intent.intent_id if intent is not None else None,
                    position_id=p.position_id,
                )
            )  # fmt: skip
        reply = await self._control("trading", SetTradingState(state=TradingState.HALTED, account=account, reason=why))
        steps.append(f"trading: {reply.detail}" if reply.ok else f"trading NOT halted: {reply.detail}")
        return KillReport(account=account, steps=steps, closes=result, flat=flat, halted=reply.ok)

    async def _execute_closes(
        self, account: str, closes: list[tuple[Position, bool]], deadline: float
    ) -> tuple[list[tuple[Position, Intent | None, str]], dict[str, Report]]:
        """Send a market intent closing each position (in its owner's name, reduce-only as given, the quantity of
        the position) and wait until each has its final report or the deadline. What was sent, and the outcomes."""
        loop = asyncio.get_running_loop()
        outcomes: dict[str, Report] = {}
        done = asyncio.Event()
        wanted: set[str] = set()

        async def on_report(msg: Msg) -> None:
            try:
                report = REPORT_CODEC.decode(msg.data)
            except BadMessage:
                return
            if report.intent_id in wanted and is_final(report):
                outcomes[report.intent_id] = report
                if wanted <= outcomes.keys():
                    done.set()

        owners = sorted({p.strategy_id or self.strategy_id for p, _ in closes})
        feeds = [
            await self.bus.feed(EXEC, subject, on_report)
            for owner in owners
            for subject in (self.subjects.strategy_exec(owner), self.subjects.reject(owner))
        ]
        sent: list[tuple[Position, Intent | None, str]] = []
        try:
            for p, reduce_only in closes:
                intent = Intent(
                    intent_id=new_intent_id(),
                    strategy_id=p.strategy_id or self.strategy_id,
                    account=account,
                    symbol=p.symbol,
                    side=Side.SELL if p.quantity > 0 else Side.BUY,
                    sizing=Fixed(qty=abs(p.quantity)),
                    reduce_only=reduce_only,
                    position_id=p.position_id,
                    tags={"close_all": "1"},
                )
                # wanted before it is sent: its report can be handled before the PubAck of its intent is (they come
                # on different subscriptions)
                wanted.add(intent.intent_id)
                try:
                    await self.submit(intent)
                    sent.append((p, intent, ""))
                except Exception as exc:
                    wanted.discard(intent.intent_id)
                    sent.append((p, None, f"not sent: {type(exc).__name__} {exc}".strip()))
            if wanted and not wanted <= outcomes.keys():
                # a report that came while later closes were still being sent may have found "all" done: only
                # now is every close known, so the wait starts afresh (nothing awaits between check and clear)
                done.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), max(0.1, deadline - loop.time()))
        finally:
            for feed in feeds:
                await feed.stop()
        return sent, outcomes

    async def _remaining(
        self, account: str, strategy: str | None, keys: set[tuple[str | None, str]], deadline: float
    ) -> dict[tuple[str | None, str], Decimal] | None:
        """Open quantity per close key (owner, and ticket or symbol) once all are flat or at the deadline; None if
        the keeper never answered."""
        loop = asyncio.get_running_loop()
        last: dict[tuple[str | None, str], Decimal] | None = None
        while True:
            try:
                now: dict[tuple[str | None, str], Decimal] = {}
                for p in await self.positions(account=account, strategy_id=strategy, by_strategy=True):
                    for key in ((p.strategy_id, p.symbol), (p.strategy_id, p.position_id)):
                        if key[1] is not None and key in keys:
                            now[key] = now.get(key, Decimal(0)) + p.quantity  # type: ignore[index]
                last = {key: q for key, q in now.items() if q != 0}
            except (OrderMeshError, TimeoutError, nats.errors.Error):
                pass
            if (last is not None and not last) or loop.time() >= deadline:
                return last
            await asyncio.sleep(0.05)

    # -------------------------------------------------------------------------------- queries

    async def positions(
        self, *, account: str | None = None, strategy_id: str | None = None, by_strategy: bool = False
    ) -> list[Position]:
        reply = await self.positions_reply(account=account, strategy_id=strategy_id, by_strategy=by_strategy)
        return reply.positions

    async def positions_reply(self, **query: Any) -> PositionsReply:
        data = await self.bus.request(self.subjects.q("positions"), PositionsQuery(**query), timeout=5.0)
        reply = decode_any(data)
        if isinstance(reply, ErrorReply):
            raise OrderMeshError(reply.reason)
        return reply  # type: ignore[no-any-return]

    async def account_state(self, account: str | None = None) -> AccountState:
        data = await self.bus.request(
            self.subjects.q("account"), AccountQuery(account=account or self.account), timeout=5.0
        )
        reply = decode_any(data)
        if isinstance(reply, ErrorReply):
            raise OrderMeshError(reply.reason)
        return reply  # type: ignore[no-any-return]
