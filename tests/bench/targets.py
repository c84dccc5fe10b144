"""The systems under measurement: ordermesh through its SDK, and two plain nats-py chains over streams of the same
shape: the relay chain (``relay.py``, one PubAck awaited at a time: the latency baseline) and the pipelined chain
(``pipelined.py``, batches in flight: the throughput baseline)."""

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

    def __init__(self, url: str, tracker: Tracker | None = None) -> None:
        super().__init__(tracker)
        self.client = OrderMeshClient(STRATEGY, account=ACCOUNT, url=url, on_report=_timed(self.tracker))

    async def connect(self) -> None:
        await self.client.connect()

    async def close(self) -> None:
        await self.client.close()

    def build(self, side: Side) -> Intent:
        return self.client.intent(side, SYMBOL, QTY)

    async def send(self, intent: Intent) -> None:
        await self.client.submit(intent)


# ------------------------------------------------------------------------------------- raw baselines

RAW = Subjects("raw")  # the relay chain
PIPE = Subjects("pipe")  # the pipelined chain


def chain_name(stream: str, subjects: Subjects = RAW) -> str:
    """OM_INTENTS -> RAW_INTENTS (PIPE_INTENTS under the ``pipe`` prefix)"""
    return f"{subjects.prefix.upper()}_" + stream.removeprefix("OM_")


def chain_streams(subjects: Subjects = RAW) -> list[StreamConfig]:
    """ordermesh's stream shapes (``Topology``) under another prefix, with ``chain_name``s."""
    return [dataclasses.replace(cfg, name=chain_name(cfg.name or "", subjects)) for cfg in Topology(subjects).streams()]


def chain_hops(subjects: Subjects = RAW) -> list[dict[str, str]]:
    """The three hops in path order: durable name, stream consumed, its filter, subject republished to."""
    s = subjects
    return [
        {"name": "sizer", "stream": chain_name(INTENTS, s), "filter": s.all_intents, "out": s.order(ACCOUNT)},
        {"name": "router", "stream": chain_name(ORDERS, s), "filter": s.all_orders, "out": s.cmd(BROKER)},
        {
            "name": "gateway",
            "stream": chain_name(COMMANDS, s),
            "filter": s.cmd(BROKER),
            "out": s.exec(BROKER, STRATEGY),
        },
    ]


class RawTarget(Target):
    """The driver of a plain nats-py chain: publishes intents to ``<PREFIX>_INTENTS`` and takes as the fill the
    message on ``<PREFIX>_EXEC`` whose ``Nats-Msg-Id`` is the intent id (the pipelined chain's venue hop also
    publishes an ``<intent id>:accepted`` report before it, which nobody waits for)."""

    def __init__(self, url: str, subjects: Subjects = RAW, name: str = "raw", tracker: Tracker | None = None) -> None:
        super().__init__(tracker)
        self.name = name
        self.subjects = subjects
        self.url = url
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    @property
    def nc(self) -> Client:
        assert self._nc is not None, "not connected"
        return self._nc

    async def connect(self) -> None:
        """Create the streams and the driver's ordered consumer on the last one (start the hops after)."""
        self._nc = await nats.connect(self.url, name=f"bench:{self.name}", max_reconnect_attempts=-1)
        self._js = self._nc.jetstream(timeout=5.0)
        for cfg in chain_streams(self.subjects):
            await self._js.add_stream(cfg)
        await self._js.subscribe(
            self.subjects.strategy_exec(STRATEGY),
            stream=chain_name(EXEC, self.subjects),
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
        await self._js.publish(self.subjects.intent(STRATEGY), encode(intent), headers={MSG_ID: intent.intent_id})
