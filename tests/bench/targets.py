"""The two systems under measurement: ordermesh through its SDK, and the raw nats-py relay chain."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StreamConfig

from ordermesh.contract.codec import encode
from ordermesh.contract.ids import new_intent_id
from ordermesh.contract.subjects import COMMANDS, EXEC, INTENTS, ORDERS, Subjects, Topology
from ordermesh.contract.wire import Fixed, Intent, OrderFilled, Report, Side
from ordermesh.platform.bus import MSG_ID
from ordermesh.sdk import OrderMeshClient, is_final
from tests.bench.scenarios import QTY, SYMBOL, Target, Tracker

STRATEGY = "bench"
ACCOUNT = "paper-1"
BROKER = "paper"


def _timed(tracker: Tracker) -> Callable[[Report], None]:
    """An SDK report callback stamping each final report the moment the client receives it."""

    def on_report(report: Report) -> None:
        received = time.perf_counter_ns()
        if isinstance(report, OrderFilled) and report.leaves_qty == 0:
            tracker.arrived(report.intent_id, received)
        elif is_final(report):
            tracker.failed(report.intent_id, f"{type(report).__name__} {getattr(report, 'reason', '')}")

    return on_report


class OrderMeshTarget(Target):
    name = "ordermesh"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.client = OrderMeshClient(STRATEGY, account=ACCOUNT, url=url, on_report=_timed(self.tracker))

    async def connect(self) -> None:
        await self.client.connect()

    async def close(self) -> None:
        await self.client.close()

    def build(self, side: Side) -> Intent:
        return self.client.intent(side, SYMBOL, QTY)

    async def send(self, intent: Intent) -> None:
        await self.client.submit(intent)


# ------------------------------------------------------------------------------------- raw baseline

RAW = Subjects("raw")


def raw_name(stream: str) -> str:
    """OM_INTENTS -> RAW_INTENTS"""
    return "RAW_" + stream.removeprefix("OM_")


def raw_streams() -> list[StreamConfig]:
    """ordermesh's stream shapes (``Topology``) under the ``raw`` prefix, with ``raw_name``s."""
    return [dataclasses.replace(cfg, name=raw_name(cfg.name or "")) for cfg in Topology(RAW).streams()]


def relay_hops() -> list[dict[str, str]]:
    """The three relays in path order: durable name, stream consumed, its filter, subject republished to."""
    return [
        {"name": "sizer", "stream": raw_name(INTENTS), "filter": RAW.all_intents, "out": RAW.order(ACCOUNT)},
        {"name": "router", "stream": raw_name(ORDERS), "filter": RAW.all_orders, "out": RAW.cmd(BROKER)},
        {"name": "gateway", "stream": raw_name(COMMANDS), "filter": RAW.cmd(BROKER), "out": RAW.exec(BROKER, STRATEGY)},
    ]


class RawTarget(Target):
    name = "raw"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    @property
    def nc(self) -> Client:
        assert self._nc is not None, "not connected"
        return self._nc

    async def connect(self) -> None:
        """Create the streams and the driver's ordered consumer on the last one (start the relays after)."""
        self._nc = await nats.connect(self.url, name="bench:raw", max_reconnect_attempts=-1)
        self._js = self._nc.jetstream(timeout=5.0)
        for cfg in raw_streams():
            await self._js.add_stream(cfg)
        await self._js.subscribe(
            RAW.strategy_exec(STRATEGY),
            stream=raw_name(EXEC),
            cb=self._on_msg,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()

    async def _on_msg(self, msg: Msg) -> None:
        received = time.perf_counter_ns()
        key = (msg.headers or {}).get(MSG_ID)
        if key:
            self.tracker.arrived(key, received)

    def build(self, side: Side) -> Intent:
        return Intent(
            intent_id=new_intent_id(),
            strategy_id=STRATEGY,
            account=ACCOUNT,
            symbol=SYMBOL,
            side=side,
            sizing=Fixed(qty=QTY),
        )

    async def send(self, intent: Intent) -> None:
        assert self._js is not None
        await self._js.publish(RAW.intent(STRATEGY), encode(intent), headers={MSG_ID: intent.intent_id})
