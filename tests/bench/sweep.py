"""Open-loop rate sweep: intents sent on a fixed schedule at a series of rates, for any :class:`Target`.

Per rate: p50 and p99 of intent -> fill (from the scheduled send time, so a sender that falls behind is charged
for it), how many intents were sent and how many of them were filled by the end of the window, and the drain
(from the last scheduled send to the last fill). A path that keeps up drains in about one latency; one that
falls behind owes a queue at the end of the window and drains for longer, the longer the window. *Backlog*
means the drain took more than ``backlog_ms`` (default 100 ms, four times the 25 ms p99 target), or some intents
got no fill within the drain timeout. A rate whose intents are not all filled within the drain timeout ends the
sweep for that system: the rates above it are not run (the path is still busy with the last one).
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.bench.scenarios import Target, percentile

TARGET_RATE = 1000.0
TARGET_P99_MS = 25.0


@dataclass(frozen=True)
class Step:
    rate: float
    duration: float
    sent: int
    filled_in_window: int  # fills arrived by the last scheduled send
    filled: int  # fills arrived within the drain timeout
    drain_s: float  # last scheduled send -> last fill (or the drain timeout if some never came)
    p50: float  # ms, over the filled intents
    p99: float
    max: float
    backlog: bool


async def step(target: Target, rate: float, duration: float, drain_timeout: float, backlog_ms: float) -> Step:
    interval_ns = 1e9 / rate
    count = max(1, round(rate * duration))
    sends: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []
    starts: list[int] = []
    futs: list[asyncio.Future[int]] = []

    def sent(task: asyncio.Task[None]) -> None:
        sends.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            failures.append(exc)

    start = time.perf_counter_ns()
    for i in range(count):
        scheduled = start + round(i * interval_ns)
        delay_ns = scheduled - time.perf_counter_ns()
        if delay_ns > 0:
            await asyncio.sleep(delay_ns / 1e9)
        intent = target.prepare()
        futs.append(target.tracker.expect(intent.intent_id))
        starts.append(min(scheduled, time.perf_counter_ns()))
        task = asyncio.create_task(target.send(intent))
        sends.add(task)
        task.add_done_callback(sent)
    last_send = start + round((count - 1) * interval_ns)
    filled_in_window = sum(1 for f in futs if f.done() and not f.cancelled() and f.exception() is None)
    _, pending = await asyncio.wait(futs, timeout=drain_timeout)
    if sends:
        await asyncio.gather(*sends, return_exceptions=True)
    if failures:
        raise failures[0]
    for fut in pending:
        fut.cancel()
    lat = [f.result() - s for f, s in zip(futs, starts, strict=True) if not f.cancelled() and f.exception() is None]
    received = [f.result() for f in futs if not f.cancelled() and f.exception() is None]
    drain_s = drain_timeout if pending or not received else max(0.0, (max(received) - last_send) / 1e9)
    return Step(
        rate=rate,
        duration=duration,
        sent=count,
        filled_in_window=filled_in_window,
        filled=len(lat),
        drain_s=drain_s,
        p50=percentile(lat, 50) if lat else float("nan"),
        p99=percentile(lat, 99) if lat else float("nan"),
        max=max(lat) / 1e6 if lat else float("nan"),
        backlog=bool(pending) or drain_s * 1000 > backlog_ms,
    )


async def sweep(
    target: Target,
    rates: list[float],
    duration: float,
    drain_timeout: float,
    backlog_ms: float,
    pause: float = 1.0,
    say: Callable[[str], None] | None = None,
) -> list[Step]:
    out = []
    for rate in rates:
        s = await step(target, rate, duration, drain_timeout, backlog_ms)
        out.append(s)
        if say is not None:
            say(f"{target.name}: open loop {rate:g}/s: {line(s)}")
        if s.filled < s.sent:
            break  # still busy with this rate: the higher ones would measure the leftovers
        await asyncio.sleep(pause)
    return out


def line(s: Step) -> str:
    return (
        f"p50 {s.p50:.2f} ms, p99 {s.p99:.2f} ms, sent {s.sent}, filled by window end {s.filled_in_window}, "
        f"drain {s.drain_s * 1000:.0f} ms{', BACKLOG' if s.backlog else ''}"
        + (f", {s.sent - s.filled} never filled" if s.filled < s.sent else "")
    )


def _row(system: str, s: Step) -> tuple[str, ...]:
    return (
        system,
        f"{s.rate:g}/s",
        str(s.sent),
        str(s.filled_in_window),
        f"{s.drain_s * 1000:.0f} ms" + (f" ({s.sent - s.filled} unfilled)" if s.filled < s.sent else ""),
        f"{s.p50:.2f} ms",
        f"{s.p99:.2f} ms",
        f"{s.max:.2f} ms",
        "yes" if s.backlog else "no",
    )


HEAD = ("system", "rate", "sent", "filled by end of window", "drain", "p50", "p99", "max", "backlog")


def text_table(results: dict[str, list[Step]]) -> str:
    body = [_row(system, s) for system, steps in results.items() for s in steps]
    widths = [max(len(line[i]) for line in [HEAD, *body]) for i in range(len(HEAD))]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([fmt(HEAD), "  ".join("-" * w for w in widths), *(fmt(r) for r in body)])


def verdict(steps: list[Step]) -> str:
    at = next((s for s in steps if s.rate == TARGET_RATE), None)
    if at is None:
        return f"not measured at {TARGET_RATE:g}/s"
    ok = at.p99 <= TARGET_P99_MS and not at.backlog
    return f"p99 {at.p99:.2f} ms, {'no backlog' if not at.backlog else 'backlog'}: {'meets' if ok else 'MISSES'}"


SECTION = "## Open-loop rate sweep"


def section(
    results: dict[str, list[Step]], duration: float, drain_timeout: float, backlog_ms: float, info: dict[str, str]
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join("| " + " | ".join(_row(system, s)) + " |" for system, steps in results.items() for s in steps)
    om = results.get("ordermesh", [])
    return f"""{SECTION}

Measured {now} on one machine (`make bench`, after the order path above, on the same processes):

- {info["cpus"]} CPUs ({info["cpu"]}), {info["os"]}, load average before the run {info["load"]}
- Python {info["python"]} with uvloop, nats-py {info["nats-py"]}, nats-server {info["nats-server"]}

**What.** Intents sent open loop (on a fixed schedule whatever the completions) for {duration:g} s at each rate,
to ordermesh and to the pipelined chain (the throughput baseline of the order path). Latency is intent -> fill
from the scheduled send time. *Filled by end of window*: fills arrived by the last scheduled send. *Drain*: from
the last scheduled send to the last fill; a path that keeps up drains in about one latency. *Backlog*: the drain
took longer than {backlog_ms:g} ms, or intents got no fill within {drain_timeout:g} s (then the higher rates
are not run for that system).

**Target** (issue 16): at {TARGET_RATE:g} intents/s, p99 ≤ {TARGET_P99_MS:g} ms and no backlog. ordermesh:
{verdict(om)}. For reference, the pipelined chain: {verdict(results.get("pipelined chain", []))}.

| {" | ".join(HEAD)} |
|---|--:|--:|--:|--:|--:|--:|--:|---|
{rows}
"""
