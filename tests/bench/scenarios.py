"""The three measurements, run the same way against any :class:`Target` (ordermesh or the raw baseline).

Latency is intent -> final fill as seen by the driver: from just before the publish (or, open-loop, from the
scheduled send time) to the moment the fill reaches the driver's subscription callback. All times are
``time.perf_counter_ns()`` in this one process.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import math
import statistics
import time
from collections.abc import Iterable
from decimal import Decimal

from ordermesh.contract.wire import Intent, Side

SYMBOL = "EURUSD"
QTY = Decimal("0.01")


class BenchError(RuntimeError):
    """The system did not do what the benchmark needs (no fill, a refusal, a dead process)."""


class Tracker:
    """Futures resolved with the receive time (ns) of each intent's final fill."""

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[int]] = {}

    def expect(self, key: str) -> asyncio.Future[int]:
        fut = self._pending[key] = asyncio.get_running_loop().create_future()
        return fut

    def arrived(self, key: str, received_ns: int) -> None:
        fut = self._pending.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(received_ns)

    def failed(self, key: str, reason: str) -> None:
        fut = self._pending.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_exception(BenchError(f"intent {key} was not filled: {reason}"))


class Target(abc.ABC):
    """Something that takes intents and reports fills: ordermesh through its SDK, or the raw relays."""

    name: str

    def __init__(self, tracker: Tracker | None = None) -> None:
        self.tracker = tracker or Tracker()
        self._sides = itertools.cycle((Side.BUY, Side.SELL))  # alternate, so positions stay small

    def prepare(self) -> Intent:
        return self.build(next(self._sides))

    @abc.abstractmethod
    def build(self, side: Side) -> Intent: ...

    @abc.abstractmethod
    async def send(self, intent: Intent) -> None:
        """Publish one intent; returns once JetStream has stored it."""


async def _fills(target: Target, futs: Iterable[asyncio.Future[int]], timeout: float, what: str) -> list[int]:
    futs = list(futs)
    _, pending = await asyncio.wait(futs, timeout=timeout)
    if pending:
        for fut in pending:
            fut.cancel()
        raise BenchError(f"{target.name} {what}: {len(pending)} of {len(futs)} intents got no fill within {timeout}s")
    return [fut.result() for fut in futs]  # re-raises a refusal


async def round_trip(target: Target, timeout: float) -> int:
    intent = target.prepare()
    fut = target.tracker.expect(intent.intent_id)
    sent = time.perf_counter_ns()
    await target.send(intent)
    (received,) = await _fills(target, [fut], timeout, "round trip")
    return received - sent


async def sequential(target: Target, n: int, warmup: int, timeout: float) -> list[int]:
    """One intent at a time: the next is sent when the previous one's fill has arrived."""
    for _ in range(warmup):
        await round_trip(target, timeout)
    return [await round_trip(target, timeout) for _ in range(n)]


async def open_loop(target: Target, rate: float, duration: float, timeout: float) -> list[int]:
    """Send at a fixed rate whatever the completions; latency counts from the scheduled send time (so a
    sender that falls behind is charged for it: no coordinated omission)."""
    interval_ns = 1e9 / rate
    start = time.perf_counter_ns()
    sends: list[asyncio.Task[None]] = []
    starts: list[int] = []
    futs: list[asyncio.Future[int]] = []
    for i in range(round(rate * duration)):
        scheduled = start + round(i * interval_ns)
        delay_ns = scheduled - time.perf_counter_ns()
        if delay_ns > 0:
            await asyncio.sleep(delay_ns / 1e9)
        intent = target.prepare()
        futs.append(target.tracker.expect(intent.intent_id))
        starts.append(min(scheduled, time.perf_counter_ns()))  # a timer that fires early counts from the send
        sends.append(asyncio.create_task(target.send(intent)))
    await asyncio.gather(*sends)
    received = await _fills(target, futs, timeout, "open loop")
    return [r - s for r, s in zip(received, starts, strict=True)]


async def throughput(target: Target, count: int, concurrency: int, timeout: float) -> float:
    """Fire ``count`` intents as fast as ``concurrency`` concurrent publishes allow; fills per second from the
    first send to the last fill."""
    futs: list[asyncio.Future[int]] = []
    todo = iter(range(count))

    async def publisher() -> None:
        for _ in todo:
            intent = target.prepare()
            futs.append(target.tracker.expect(intent.intent_id))
            await target.send(intent)

    start = time.perf_counter_ns()
    await asyncio.gather(*(publisher() for _ in range(concurrency)))
    received = await _fills(target, futs, timeout, "throughput")
    return count / ((max(received) - start) / 1e9)


def percentile(samples: list[int], p: float) -> float:
    """Nearest-rank percentile of nanosecond samples, in milliseconds."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))] / 1e6


def summary(samples: list[int], *points: float) -> dict[str, float]:
    out = {f"p{p:g}": percentile(samples, p) for p in points}
    out["max"] = max(samples) / 1e6
    out["mean"] = statistics.fmean(samples) / 1e6
    return out
