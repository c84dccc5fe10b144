"""A pipelined consumer: messages flow in while earlier ones are still being handled.

The first round fetched a batch, handled it, acked it and only then fetched again, so every batch waited for its
slowest message and the server waited for a fetch round trip between batches. Here, as nats.go's ``Consume`` does:

* **Pull requests stay outstanding** (:class:`Puller`): up to ``batch`` messages are asked for at any time, topped up
  when fewer than half are still coming, each request expiring after a few seconds (a request the server dropped,
  say on a reconnect, is forgotten at its expiry, so the flow cannot stall).
* **At most ``limit`` messages are in hand** (delivered, not yet acked); the puller asks only for what fits.
* **Lanes keep order where it matters** (:class:`Lanes`): messages with the same lane key (an order's client order
  id, an intent's id) are handled one after the other in stream order; different keys run concurrently, across
  fetches.
* **Each message is acked when its handler is done**, which publishes its outputs and waits for their PubAcks: an
  input is acked only after everything it caused is stored.
* **A long handler keeps its message**: one timer per consumer (not one per message) tells the server "in
  progress" for any message held longer than half the ack wait.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import nats.errors
import structlog
from nats.aio.msg import Msg

from ordermesh.platform.bus import Bus

log = structlog.get_logger("ordermesh.platform.pipeline")

STATUS = "Status"
PENDING_MESSAGES = "Nats-Pending-Messages"  # in a 408/409 status: what the ended request had left


class Puller:
    """Keeps pull requests outstanding on a durable pull consumer and hands each message to ``on_msg``."""

    def __init__(
        self,
        bus: Bus,
        stream: str,
        durable: str,
        on_msg: Callable[[Msg], Awaitable[None]],
        *,
        room: Callable[[], int],
        batch: int = 128,
        expires_s: float = 5.0,
    ) -> None:
        self._bus = bus
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._on_msg = on_msg
        self._room = room  # how many more messages the consumer can take now
        self._batch = batch
        self._expires_s = expires_s
        self._inbox = ""
        self._sub: Any = None
        self._stopped = False
        # outstanding requests, oldest first (the server serves them in that order): [expiry, messages left]
        self._requests: collections.deque[list[float]] = collections.deque()
        self._refresh: asyncio.Task[None] | None = None
        self._topping = False

    @property
    def requested(self) -> int:
        return int(sum(r[1] for r in self._requests))

    async def start(self) -> None:
        nc = self._bus.nc
        self._inbox = nc.new_inbox()
        self._sub = await nc.subscribe(self._inbox, cb=self._deliver)
        await self.top_up()
        self._refresh = asyncio.ensure_future(self._refresh_loop())

    async def stop(self) -> None:
        """No more requests; what the server still sends to this inbox is dropped (unacked: delivered again)."""
        self._stopped = True
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def top_up(self) -> None:
        """Ask for more once fewer than half a batch is still coming, never for more than there is room for."""
        if self._topping or self._stopped:
            return
        self._forget_expired()
        requested = self.requested
        if requested > self._batch // 2:
            return
        n = min(self._batch - requested, self._room() - requested)
        if n <= 0 or not self._bus.connected:
            return
        self._topping = True
        try:
            body = json.dumps({"batch": n, "expires": int(self._expires_s * 1e9)}).encode()
            self._requests.append([time.monotonic() + self._expires_s, float(n)])
            await self._bus.nc.publish(self._next, body, reply=self._inbox)
        except nats.errors.Error as exc:
            self._requests.pop()
            log.warning("pull request failed", subject=self._next, error=str(exc) or type(exc).__name__)
        finally:
            self._topping = False

    def _forget_expired(self) -> None:
        now = time.monotonic()
        while self._requests and self._requests[0][0] < now - 1.0:
            self._requests.popleft()  # its 408 was lost (or the server dropped it): nothing more will come

    def _delivered(self) -> None:
        """One message of the oldest request has come (the server serves requests in order)."""
        if self._requests:
            self._requests[0][1] -= 1
            if self._requests[0][1] <= 0:
                self._requests.popleft()

    async def _deliver(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get(STATUS) if headers else None
        if status is not None:
            if status in ("408", "409") and self._requests:  # a request expired or was ended: its rest won't come
                self._requests.popleft()
                await self.top_up()
            return  # 100 (heartbeat), 404 (nothing now, no_wait) and others carry no message
        self._delivered()
        await self._on_msg(msg)
        await self.top_up()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._expires_s / 2))
            await self.top_up()


class Lanes:
    """Handle items concurrently across lane keys and in order within one key; at most ``limit`` in hand."""

    def __init__(self, handle: Callable[[Any, Msg], Awaitable[None]], limit: int, on_done: Callable[[], Any]) -> None:
        self._handle = handle
        self.limit = limit
        self._on_done = on_done  # called after each item (e.g. to ask for more messages)
        self._queues: dict[Hashable, collections.deque[tuple[Any, Msg]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.in_hand = 0

    @property
    def room(self) -> int:
        return self.limit - self.in_hand

    def add(self, key: Hashable, obj: Any, msg: Msg) -> None:
        self.in_hand += 1
        queue = self._queues.get(key)
        if queue is not None:
            queue.append((obj, msg))
            return
        self._queues[key] = collections.deque([(obj, msg)])
        task = asyncio.ensure_future(self._run(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: Hashable) -> None:
        queue = self._queues[key]
        try:
            while queue:
                obj, msg = queue[0]
                try:
                    await self._handle(obj, msg)
                finally:
                    queue.popleft()
                    self.in_hand -= 1
                result = self._on_done()
                if asyncio.iscoroutine(result):
                    await result
        finally:
            # nothing awaits between the last check of ``queue`` and here: an item added later starts a new run
            if self._queues.get(key) is queue:
                del self._queues[key]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class InHand:
    """Messages being handled and since when; one loop tells the server "in progress" for those held longer than
    ``period`` (half the ack wait), so a slow handler (a broker call) keeps its message."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._since: dict[int, tuple[Msg, float]] = {}

    def add(self, msg: Msg) -> None:
        self._since[id(msg)] = (msg, time.monotonic())

    def remove(self, msg: Msg) -> None:
        self._since.pop(id(msg), None)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.period / 2)
            now = time.monotonic()
            for key, (msg, since) in list(self._since.items()):
                if now - since >= self.period:
                    self._since[key] = (msg, now)
                    with contextlib.suppress(Exception):
                        await msg.in_progress()
