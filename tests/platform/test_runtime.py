"""The service runtime in process, on a real nats-server."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from nats.aio.msg import Msg

from ordermesh.contract.codec import INTENT_CODEC
from ordermesh.contract.subjects import INTENTS
from ordermesh.contract.wire import Fixed, Intent, Side
from ordermesh.platform.config import NatsSettings, OrderMeshConfig
from ordermesh.platform.runtime import Service


class Slow(Service):
    name = "slow"

    def __init__(self, config: OrderMeshConfig, release: asyncio.Event, deliveries: list[int]) -> None:
        super().__init__(config)
        self.release = release
        self.deliveries = deliveries
        self.done = asyncio.Event()

    async def setup(self) -> None:
        self.consume(
            stream=INTENTS,
            durable="slow",
            filter_subject=self.subjects.all_intents,
            codec=INTENT_CODEC,
            handler=self.on_intent,
            ack_wait_s=0.6,
        )

    async def on_intent(self, intent: Intent, msg: Msg) -> None:
        self.deliveries.append(msg.metadata.num_delivered)
        await self.release.wait()  # a slow broker call, three ack waits long
        self.done.set()


async def test_a_slow_handler_keeps_its_message_past_the_ack_wait(nats_settings: NatsSettings) -> None:
    # Two replicas on one durable: while the first is busy, the second is waiting for work, and would be
    # handed the same message again once the ack wait ran out, unless the first says "in progress".
    release = asyncio.Event()
    deliveries: list[int] = []
    replicas = [Slow(OrderMeshConfig(nats=nats_settings), release, deliveries) for _ in range(2)]
    tasks = [asyncio.ensure_future(r.run()) for r in replicas]
    for r in replicas:
        await asyncio.wait_for(r.ready.wait(), 10)
    intent = Intent(
        intent_id="i", strategy_id="s", account="a", symbol="EURUSD", side=Side.BUY, sizing=Fixed(qty=Decimal(1))
    )
    await replicas[0].bus.publish(replicas[0].subjects.intent("s"), intent, msg_id="i")
    # Time is the point here: the handler stays busy for three ack waits.
    await asyncio.sleep(1.8)
    release.set()
    await asyncio.wait_for(_any_done(replicas), 5)
    assert deliveries == [1]
    for r in replicas:
        r.request_stop()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)


async def _any_done(replicas: list[Slow]) -> None:
    await asyncio.wait([asyncio.ensure_future(r.done.wait()) for r in replicas], return_when=asyncio.FIRST_COMPLETED)


class Stuck(Service):
    """A service whose teardown never returns (a snapshot write that hangs)."""

    name = "stuck"

    def __init__(self, config: OrderMeshConfig) -> None:
        super().__init__(config)
        self.teardown_started = asyncio.Event()

    async def teardown(self) -> None:
        self.teardown_started.set()
        await asyncio.Event().wait()


async def test_a_hanging_teardown_does_not_keep_the_service_from_stopping(nats_settings: NatsSettings) -> None:
    svc = Stuck(OrderMeshConfig(nats=nats_settings))
    task = asyncio.ensure_future(svc.run())
    await asyncio.wait_for(svc.ready.wait(), 10)
    svc.request_stop()
    await asyncio.wait_for(task, 10)  # the teardown phase is cut at its bound (4 s); the bus is still closed
    assert svc.teardown_started.is_set()
    assert not svc.bus.connected
