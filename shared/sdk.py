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
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DeliverPolicy, PubAck
from nats.js.errors import KeyNotFoundError

from ordermesh.bus import Bus
from ordermesh.config import NatsSettings, OrderMeshConfig
from ordermesh.ids import client_order_id, new_intent_id
from ordermesh.orders import OrderRecord
from ordermesh.subjects import EXEC, KV_ORDERS, kv_key
from ordermesh.wire import (
    REPORT_CODEC,
    AccountQuery,
    AccountState,
    BadMessage,
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
    Side,
    SizingRequest,
    TimeInForce,
    decode_any,
)


class OrderMeshError(Exception):
    pass


def is_final(report: Report) -> bool:
    """True when nothing more will happen to the intent (fully filled, refused, canceled or expired)."""
    if isinstance(report, OrderFilled):
        return report.leaves_qty == 0
    return isinstance(report, IntentRejected | OrderDenied | OrderRejected | OrderCanceled | OrderExpired)


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
    ) -> None:
        settings = config.nats if config else NatsSettings()
        if url is not None:
            settings = msgspec.structs.replace(settings, url=url)
        self.strategy_id = strategy_id
        self.account = account
        self.bus = Bus(settings, f"sdk:{strategy_id}")
        self.subjects = self.bus.subjects
        self._waiters: dict[str, asyncio.Future[Report]] = {}
        self._final: OrderedDict[str, Report] = OrderedDict()  # recent outcomes, for wait() after the fact
        self._remember = remember
        self._queue: asyncio.Queue[Report] | None = None
        self._subs: list[Subscription] = []
        self._on_report_cb = on_report
        self.bad_reports = 0

    # ------------------------------------------------------------------------------ lifecycle

    async def connect(self) -> OrderMeshClient:
        await self.bus.connect()
        await self.bus.provision()
        # Ordered consumers from "now": gap-free across reconnects, no state left on the server.
        for subject in (self.subjects.strategy_exec(self.strategy_id), self.subjects.reject(self.strategy_id)):
            self._subs.append(
                await self.bus.js.subscribe(
                    subject, stream=EXEC, cb=self._on_report, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
                )
            )
        return self

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
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

    async def publish_intent(self, intent: Intent) -> PubAck:
        """Publish an intent; ``PubAck.duplicate`` tells that the stream already had this intent id."""
        return await self.bus.publish(self.subjects.intent(intent.strategy_id), intent, msg_id=intent.intent_id)

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
    ) -> Intent:
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
        reply = decode_any(await self.bus.request(self.subjects.ctl(name), msg, timeout=10.0))
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
