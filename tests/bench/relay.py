"""One hop of the raw nats-py baseline, as its own OS process.

    python -m tests.bench.relay --nats URL --name sizer --stream RAW_INTENTS --filter 'raw.intent.>' \
        --out raw.order.paper-1

Binds a durable pull consumer (explicit ack, the same settings as ``ordermesh.platform.bus.Bus.pull_consumer``), fetches
in batches like ``ordermesh.platform.runtime.Service``, republishes each message's bytes unchanged to ``--out`` with its
``Nats-Msg-Id`` through ``js.publish`` (awaiting the PubAck) and acks only after that. Once bound it publishes an
empty core message on ``raw.health.<name>.<pid>`` every second, the same readiness signal as a service heartbeat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal

import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from ordermesh.platform.bus import MSG_ID
from ordermesh.platform.runtime import install_uvloop

BATCH = 64  # ordermesh.platform.runtime.Service.consume's default


async def relay(js: JetStreamContext, psub: JetStreamContext.PullSubscription, out: str) -> None:
    while True:
        try:
            msgs = await psub.fetch(BATCH, timeout=1.0)
        except TimeoutError:
            continue
        for msg in msgs:
            await js.publish(out, msg.data, headers={MSG_ID: (msg.headers or {})[MSG_ID]})
            await msg.ack()


async def heartbeat(nc: Client, subject: str) -> None:
    while True:
        with contextlib.suppress(nats.errors.Error):
            await nc.publish(subject, b"")
        await asyncio.sleep(1.0)


async def main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    nc = await nats.connect(args.nats, name=f"relay:{args.name}", max_reconnect_attempts=-1)
    js = nc.jetstream(timeout=5.0)
    config = ConsumerConfig(
        durable_name=args.name,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=1000,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=args.filter,
    )
    psub = await js.pull_subscribe(args.filter, durable=args.name, stream=args.stream, config=config)
    tasks = [
        asyncio.create_task(relay(js, psub, args.out)),
        asyncio.create_task(heartbeat(nc, f"raw.health.{args.name}.{os.getpid()}")),
    ]
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
    for task in [*tasks, stopped]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await psub.unsubscribe()
    await nc.close()
    for result in results:
        if isinstance(result, Exception):  # a relay that failed must not look like a clean stop
            raise result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tests.bench.relay", description="one hop of the raw nats-py baseline")
    p.add_argument("--nats", required=True, help="NATS URL")
    p.add_argument("--name", required=True, help="durable consumer name (also the readiness name)")
    p.add_argument("--stream", required=True, help="stream to consume")
    p.add_argument("--filter", required=True, help="filter subject of the consumer")
    p.add_argument("--out", required=True, help="subject to republish to")
    return p.parse_args(argv)


if __name__ == "__main__":
    install_uvloop()
    asyncio.run(main(parse_args()))
