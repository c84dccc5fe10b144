"""One hop of the pipelined nats-py chain (the throughput baseline), as its own OS process.

    python -m tests.bench.pipelined --nats URL --prefix pipe --name gateway --stream PIPE_COMMANDS \
        --filter pipe.cmd.paper --out pipe.exec.paper.bench --reports 2

The same guarantee as the relay chain (``relay.py``) and as ordermesh: an input is acked only once every output it
caused is stored (its PubAck has arrived). What differs is that nothing waits in turn:

- *Fetching continuously in batches.* The durable pull consumer (explicit ack, ``max_ack_pending``
  ``--in-flight``) always has pull requests outstanding for up to ``--batch`` messages (``expires`` 30 s); when
  fewer than half are left, a request for the rest goes out, so messages flow in as they are stored without a
  request per fetch (the way nats.go's ``Consume`` does it). ``psub.fetch`` in a loop, as the relay does, costs a
  request, a status reply and several timers per fetch, and under a pipeline's steady trickle a fetch brings one
  message.
- *Publishing without waiting.* For each input its outputs go out at once with ``js.publish_async`` (the input's
  bytes unchanged, a ``Nats-Msg-Id`` each) and the next input is taken straight away.
- *Acking when stored.* One settling task takes the inputs in arrival order and acks each as soon as all of its
  outputs' PubAcks have arrived.

With ``--reports 2`` (the venue hop) each input yields two outputs, like ordermesh's gateway: ``<id>:accepted``
then ``<id>`` (the fill). Orderings relied on: one connection's publishes reach the server in the order they were
written, so an input's accepted report is stored before its fill and outputs keep their inputs' order (PubAcks
come back in that order too, so settling in arrival order holds no ack back for long). An output whose PubAck
does not come within ``--puback-timeout`` (or comes as an error) leaves its input unacked: the server redelivers
it after the ack wait and it is published again under the same ``Nats-Msg-Id``, which the stream's duplicate
window drops.

Once bound it publishes an empty core message on ``<prefix>.health.<name>.<pid>`` every second, the readiness
signal the harness waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
import time

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, Header, PubAck

from ordermesh.platform.bus import MSG_ID
from ordermesh.platform.runtime import install_uvloop

ACCEPTED = ":accepted"
BATCH = 256  # messages requested and not yet delivered, at most
IN_FLIGHT = 4096  # max_ack_pending: inputs delivered and not yet acked
EXPIRES_S = 30.0  # of each pull request
PENDING_MESSAGES = "Nats-Pending-Messages"  # in a 408/409 status: what the request had left


class Hop:
    def __init__(self, nc: Client, js: JetStreamContext, args: argparse.Namespace) -> None:
        self.nc = nc
        self.js = js
        self.out = args.out
        self.reports = args.reports
        self.batch = args.batch
        self.puback_timeout = args.puback_timeout
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{args.stream}.{args.name}"
        self.inbox = nc.new_inbox()
        self.requested = 0  # messages asked for and neither delivered nor expired
        self.settling: collections.deque[tuple[Msg, list[asyncio.Future[PubAck]], float]] = collections.deque()
        self.wake = asyncio.Event()
        self.unstored = 0  # inputs left unacked because an output was not stored (redelivered later)

    async def start(self) -> None:
        await self.nc.subscribe(self.inbox, cb=self.on_msg)
        await self.top_up()

    async def top_up(self) -> None:
        """Ask for the rest of the batch once fewer than half of it are still coming."""
        if self.requested > self.batch // 2:
            return
        n = self.batch - self.requested
        self.requested += n
        request = json.dumps({"batch": n, "expires": int(EXPIRES_S * 1e9)}).encode()
        await self.nc.publish(self.next_subject, request, reply=self.inbox)

    async def refresh(self) -> None:
        """Makes sure requests stay out after a 409 (topped up here, a second later, not in a tight loop)."""
        while True:
            await asyncio.sleep(1.0)
            await self.top_up()

    async def on_msg(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get(Header.STATUS.value)
        if status is not None:
            if status in ("408", "409"):  # a request expired (408) or was ended (409): its rest is not coming
                left = headers.get(PENDING_MESSAGES)
                self.requested = max(0, self.requested - int(left)) if left is not None else 0
                if status == "408":
                    await self.top_up()
            return
        self.requested = max(0, self.requested - 1)
        key = headers[MSG_ID]
        futs = []
        if self.reports == 2:
            futs.append(await self.js.publish_async(self.out, msg.data, headers={MSG_ID: key + ACCEPTED}))
        futs.append(await self.js.publish_async(self.out, msg.data, headers={MSG_ID: key}))
        self.settling.append((msg, futs, time.monotonic() + self.puback_timeout))
        self.wake.set()
        await self.top_up()

    async def settle(self) -> None:
        """Ack each input, in arrival order, as soon as all of its outputs are stored."""
        while True:
            if not self.settling:
                self.wake.clear()
                await self.wake.wait()
                continue
            msg, futs, deadline = self.settling[0]
            for fut in futs:
                if not fut.done():
                    await asyncio.wait([fut], timeout=max(0.0, deadline - time.monotonic()))
            self.settling.popleft()
            if all(f.done() and not f.cancelled() and f.exception() is None for f in futs):
                await msg.ack()
                continue
            for fut in futs:
                fut.cancel()  # frees its place among the publishes in flight
            self.unstored += 1
            print(f"pipelined: an output of {msg.subject} was not stored; left for redelivery", file=sys.stderr)


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
    nc = await nats.connect(args.nats, name=f"pipelined:{args.name}", max_reconnect_attempts=-1)
    js = nc.jetstream(timeout=5.0, publish_async_max_pending=max(4000, 2 * args.in_flight * args.reports))
    config = ConsumerConfig(
        durable_name=args.name,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=args.in_flight,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=args.filter,
    )
    await js.add_consumer(args.stream, config=config)
    hop = Hop(nc, js, args)
    await hop.start()
    tasks = [
        asyncio.create_task(hop.settle()),
        asyncio.create_task(hop.refresh()),
        asyncio.create_task(heartbeat(nc, f"{args.prefix}.health.{args.name}.{os.getpid()}")),
    ]
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
    for task in [*tasks, stopped]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await nc.close()  # inputs not yet acked are redelivered to the next consumer
    for result in results:
        if isinstance(result, Exception):  # a hop that failed must not look like a clean stop
            raise result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tests.bench.pipelined", description="one hop of the pipelined nats-py chain")
    p.add_argument("--nats", required=True, help="NATS URL")
    p.add_argument("--prefix", default="pipe", help="subject prefix of the heartbeat (default pipe)")
    p.add_argument("--name", required=True, help="durable consumer name (also the readiness name)")
    p.add_argument("--stream", required=True, help="stream to consume")
    p.add_argument("--filter", required=True, help="filter subject of the consumer")
    p.add_argument("--out", required=True, help="subject to publish the outputs to")
    p.add_argument("--reports", type=int, choices=(1, 2), default=1, help="outputs per input (2: accepted + fill)")
    p.add_argument("--batch", type=int, default=BATCH, help=f"messages requested at most (default {BATCH})")
    p.add_argument("--in-flight", type=int, default=IN_FLIGHT, help=f"max_ack_pending (default {IN_FLIGHT})")
    p.add_argument("--puback-timeout", type=float, default=10.0, help="seconds to wait for a PubAck (default 10)")
    return p.parse_args(argv)


if __name__ == "__main__":
    install_uvloop()
    asyncio.run(main(parse_args()))
