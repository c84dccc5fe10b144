"""``make soak``: the whole system at a high fixed rate for a long time, and whether it holds steady.

    python -m tests.bench.soak [--minutes 10] [--rate 200] [--interval 60] [--no-write] [--log-dir DIR]

Starts a private nats-server and the same processes as ``make bench`` (keeper, router, gateway paper, sizer; logging
at warning, JSON), then sends market intents through an ``OrderMeshClient`` open loop (on a fixed schedule whatever
the completions) at ``--rate`` per second for ``--minutes``. At the end of every ``--interval`` (a minute by
default) it records: fills that arrived in it (fills/s), p50/p99 intent -> fill of those fills (from the scheduled
send time), intents still owed a fill, the RSS of every process (``VmRSS`` of ``/proc/<pid>/status``: services,
nats-server, the driver), the keeper's snapshot size (the value bytes of every key in KV ``om_keeper``) and the
error and warning lines in every process's log so far. Then it waits for the fills still owed (``--drain-timeout``),
prints the table and the verdict against issue 16's soak targets, and rewrites its section of BENCHMARKS.md
(``--no-write``: print only). Exits 1 if a process dies; a missed target (or fills that stop coming) is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import os
import re
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import nats.errors
import nats.js.errors

from ordermesh.contract.subjects import KV_KEEPER
from ordermesh.platform.natsserver import NatsServer, NatsServerError, free_port
from ordermesh.platform.runtime import install_uvloop
from tests.bench import report
from tests.bench.procs import ROOT, SERVICES, Procs, heartbeats
from tests.bench.scenarios import BenchError, Tracker, percentile
from tests.bench.sizing import write
from tests.bench.targets import OrderMeshTarget

SECTION = "## Soak"
#: 300,000 fills in 10 minutes need 500/s; the 2-CPU bench machine sustains about 200/s with the services of
#: issue 16's start (``make bench``: ~350 fills/s closed loop), so the default is that until they do more.
RATE = 200.0
MIN_FILLS = 300_000  # issue 16: a soak goes through at least this many fills
RATE_TOLERANCE = 0.10  # the last interval's fills/s within 10 % of the first's
FLAT_TOLERANCE = 0.20  # RSS and snapshot size within 20 % of the first interval's, after it
#: processes whose memory is ordermesh's (the verdict); nats-server and the driver are shown for reference
VERDICT_PROCS = tuple(SERVICES)

_ERROR = re.compile(
    r'"level":\s*"(error|critical|exception|fatal)"|^(ERROR|CRITICAL)\b|Traceback \(most recent call last\)'
    r"|\[(ERR|FTL)\]",
    re.I,
)
_WARNING = re.compile(r'"level":\s*"warn(ing)?"|^WARNING\b|\[WRN\]', re.I)


def say(text: str) -> None:
    print(f"soak: {text}", file=sys.stderr, flush=True)


class SoakTracker(Tracker):
    """Send times of the intents still owed a fill; latencies by the interval the fill arrived in."""

    def __init__(self, start_ns: int, interval_ns: int) -> None:
        super().__init__()
        self.start_ns = start_ns
        self.interval_ns = interval_ns
        self.owed: dict[str, int] = {}
        self.latencies: dict[int, list[int]] = collections.defaultdict(list)
        self.sent: dict[int, int] = collections.defaultdict(int)
        self.filled = 0
        self.refused: collections.Counter[str] = collections.Counter()
        self.last_fill_ns = 0

    def window(self, ns: int) -> int:
        return max(0, (ns - self.start_ns) // self.interval_ns)

    def sending(self, key: str, scheduled_ns: int) -> None:
        self.owed[key] = scheduled_ns
        self.sent[self.window(scheduled_ns)] += 1

    def arrived(self, key: str, received_ns: int) -> None:
        sent = self.owed.pop(key, None)
        if sent is None:
            return
        self.latencies[self.window(received_ns)].append(received_ns - sent)
        self.filled += 1
        self.last_fill_ns = max(self.last_fill_ns, received_ns)

    def failed(self, key: str, reason: str) -> None:
        if self.owed.pop(key, None) is not None:
            self.refused[reason] += 1


class LogScanner:
    """Error and warning lines per log file, read incrementally (a log that spews is read once)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.offsets: dict[Path, int] = {}
        self.errors: collections.Counter[str] = collections.Counter()
        self.warnings: collections.Counter[str] = collections.Counter()
        self.samples: dict[str, list[str]] = collections.defaultdict(list)

    def scan(self) -> None:
        for path in sorted(self.log_dir.glob("*.log")):
            name = path.name.removesuffix(".log")
            with open(path, "rb") as f:
                f.seek(self.offsets.get(path, 0))
                data = f.read()
            cut = data.rfind(b"\n") + 1  # a line being written is read next time
            self.offsets[path] = self.offsets.get(path, 0) + cut
            for line in data[:cut].decode(errors="replace").splitlines():
                if _ERROR.search(line):
                    self.errors[name] += 1
                    if len(self.samples[name]) < 3:
                        self.samples[name].append(line[:300])
                elif _WARNING.search(line):
                    self.warnings[name] += 1


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


async def snapshot_bytes(target: OrderMeshTarget) -> int | None:
    """The value bytes of every key in ``om_keeper`` (a snapshot in chunks counts whole); None before the first."""
    kv = await target.client.bus.nc.jetstream(timeout=5.0).key_value(KV_KEEPER)
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        return None
    total = 0
    for key in keys:
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            continue
        total += len(entry.value or b"")
    return total


@dataclass
class Window:
    index: int  # 1-based
    end_s: float  # seconds since the first send
    sent: int
    fills: int
    fills_per_s: float
    p50: float  # ms
    p99: float
    owed: int  # intents sent and not yet filled (nor refused), at the end of the window
    rss_kb: dict[str, int | None]
    snapshot: int | None
    errors: int  # error lines in every log so far
    warnings: int


@dataclass
class Soak:
    rate: float
    minutes: float
    interval: float
    windows: list[Window] = field(default_factory=list)
    sent: int = 0
    filled: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    send_errors: int = 0
    unfilled: int = 0
    drain_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)


async def sampler(
    soak: Soak,
    tracker: SoakTracker,
    target: OrderMeshTarget,
    pids: dict[str, int],
    logs: LogScanner,
    n_windows: int,
) -> None:
    for k in range(1, n_windows + 1):
        delay = (tracker.start_ns + k * tracker.interval_ns - time.perf_counter_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        lat = tracker.latencies.pop(k - 1, [])  # filed by arrival time: this window is complete
        try:
            snap = await snapshot_bytes(target)
        except (nats.errors.Error, TimeoutError) as exc:
            say(f"could not read the keeper snapshot: {exc!r}")
            snap = None
        await asyncio.to_thread(logs.scan)
        w = Window(
            index=k,
            end_s=(time.perf_counter_ns() - tracker.start_ns) / 1e9,
            sent=tracker.sent.get(k - 1, 0),
            fills=len(lat),
            fills_per_s=len(lat) / soak.interval,
            p50=percentile(lat, 50) if lat else float("nan"),
            p99=percentile(lat, 99) if lat else float("nan"),
            owed=len(tracker.owed),
            rss_kb={name: rss_kb(pid) for name, pid in pids.items()},
            snapshot=snap,
            errors=sum(logs.errors.values()),
            warnings=sum(logs.warnings.values()),
        )
        soak.windows.append(w)
        say(window_line(w))


async def sender(
    soak: Soak, tracker: SoakTracker, target: OrderMeshTarget, rate: float, count: int, max_in_flight: int
) -> None:
    interval_ns = 1e9 / rate
    sends: set[asyncio.Task[None]] = set()
    keys: dict[asyncio.Task[None], str] = {}

    def done(task: asyncio.Task[None]) -> None:
        sends.discard(task)
        key = keys.pop(task)
        if not task.cancelled() and task.exception() is not None:
            soak.send_errors += 1
            tracker.owed.pop(key, None)

    for i in range(count):
        scheduled = tracker.start_ns + round(i * interval_ns)
        delay_ns = scheduled - time.perf_counter_ns()
        if delay_ns > 0:
            await asyncio.sleep(delay_ns / 1e9)
        if len(sends) >= max_in_flight:  # the bus is not taking intents: wait rather than pile up tasks
            await asyncio.wait(sends, return_when=asyncio.FIRST_COMPLETED)
        intent = target.prepare()
        tracker.sending(intent.intent_id, min(scheduled, time.perf_counter_ns()))
        task = asyncio.create_task(target.send(intent))
        sends.add(task)
        keys[task] = intent.intent_id
        task.add_done_callback(done)
        soak.sent += 1
    if sends:
        await asyncio.gather(*sends, return_exceptions=True)


async def run(args: argparse.Namespace, url: str, procs: Procs, server: NatsServer, logs: LogScanner) -> Soak:
    soak = Soak(rate=args.rate, minutes=args.minutes, interval=args.interval)
    tracker = SoakTracker(0, round(args.interval * 1e9))
    target = OrderMeshTarget(url, tracker)
    try:
        procs.start_ordermesh(url)  # first: the services create the streams the client binds to
        await procs.guard(target.connect(), "connecting the driver", args.ready_timeout)
        ready = heartbeats(target.client.bus.nc, target.client.subjects.all_health, SERVICES)
        await procs.guard(ready, "waiting for a heartbeat from every service", args.ready_timeout)
        assert server.proc is not None
        pids = {**procs.pids(), "nats-server": server.proc.pid, "driver": os.getpid()}
        duration = args.minutes * 60
        n_windows = max(1, round(duration / args.interval))
        count = round(args.rate * n_windows * args.interval)
        say(f"ordermesh ready; {args.rate:g} intents/s for {n_windows * args.interval:g} s ({count} intents)")
        tracker.start_ns = time.perf_counter_ns()
        tasks = [
            sender(soak, tracker, target, args.rate, count, args.max_in_flight),
            sampler(soak, tracker, target, pids, logs, n_windows),
        ]
        await procs.guard(asyncio.gather(*tasks), "soak")
        end_ns = tracker.start_ns + n_windows * tracker.interval_ns
        deadline = time.monotonic() + args.drain_timeout
        while tracker.owed and time.monotonic() < deadline:
            await procs.guard(asyncio.sleep(0.1), "draining")
        soak.drain_s = max(0.0, (tracker.last_fill_ns - end_ns) / 1e9)
        soak.unfilled = len(tracker.owed)
        soak.filled = tracker.filled
        soak.refused = dict(tracker.refused)
        return soak
    finally:
        await target.close()
        procs.stop()
        logs.scan()
        soak.errors = dict(logs.errors)
        soak.warnings = dict(logs.warnings)
        soak.samples = dict(logs.samples)


# -------------------------------------------------------------------------------------------- report


def _mib(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def _kib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:.1f}"


def window_line(w: Window) -> str:
    rss = ", ".join(f"{name} {_mib(kb)}" for name, kb in w.rss_kb.items())
    return (
        f"{w.index}: {w.fills_per_s:.0f} fills/s, p50 {w.p50:.1f} ms, p99 {w.p99:.1f} ms, owed {w.owed}, "
        f"snapshot {_kib(w.snapshot)} KiB, RSS MiB {rss}, errors {w.errors}, warnings {w.warnings}"
    )


def _drift(values: list[int | None]) -> float | None:
    """Largest relative distance from the first window's value, over the windows after it."""
    if len(values) < 2 or values[0] is None or values[0] == 0:
        return None
    later = [v for v in values[1:] if v is not None]
    if not later:
        return None
    return max(abs(v / values[0] - 1) for v in later)


@dataclass(frozen=True)
class Check:
    what: str
    measured: str
    ok: bool | None  # None: for reference, not part of the verdict


def checks(s: Soak) -> list[Check]:
    out = []
    ws = s.windows
    if len(ws) >= 2:
        first, last = ws[0].fills_per_s, ws[-1].fills_per_s
        change = last / first - 1 if first else float("inf")
        out.append(
            Check(
                f"last {unit(s)}'s fills/s within {RATE_TOLERANCE:.0%} of the first's",
                f"{first:.0f} -> {last:.0f} fills/s ({change:+.1%})",
                abs(change) <= RATE_TOLERANCE,
            )
        )
    else:
        out.append(Check("fills/s steady", "one interval only: nothing to compare", False))
    names = list(ws[0].rss_kb) if ws else []
    for name in names:
        drift = _drift([w.rss_kb.get(name) for w in ws])
        vals = [w.rss_kb.get(name) for w in ws]
        measured = f"{_mib(vals[0])} -> {_mib(vals[-1])} MiB" + ("" if drift is None else f", at most {drift:.1%} off")
        ok = None if name not in VERDICT_PROCS else (drift is not None and drift <= FLAT_TOLERANCE)
        out.append(Check(f"RSS of {name} within {FLAT_TOLERANCE:.0%} after the first {unit(s)}", measured, ok))
    snaps = [w.snapshot for w in ws]
    drift = _drift(snaps)
    out.append(
        Check(
            f"keeper snapshot size within {FLAT_TOLERANCE:.0%} after the first {unit(s)}",
            (f"{_kib(snaps[0])} -> {_kib(snaps[-1])} KiB" if snaps else "-")
            + ("" if drift is None else f", at most {drift:.1%} off"),
            drift is not None and drift <= FLAT_TOLERANCE,
        )
    )
    errors = sum(s.errors.values())
    where = ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "none"
    out.append(Check("zero error lines in any log", f"{errors} ({where})", errors == 0))
    out.append(Check(f"at least {MIN_FILLS:,} fills", f"{s.filled:,}", s.filled >= MIN_FILLS))
    kept = [w for w in ws if w.fills_per_s >= 0.95 * s.rate]
    out.append(
        Check(
            f"kept up with the offered {s.rate:g}/s (each {unit(s)} ≥ 95 % of it, nothing owed after the drain)",
            f"{len(kept)} of {len(ws)} {unit(s)}s; {s.unfilled} unfilled, drain {s.drain_s:.1f} s",
            len(kept) == len(ws) and s.unfilled == 0,
        )
    )
    return out


def needed(s: Soak) -> float:
    """The rate that reaches the target's fills in this run's length."""
    return MIN_FILLS / (s.minutes * 60)


def unit(s: Soak) -> str:
    return "minute" if s.interval == 60 else f"{s.interval:g} s window"


def passed(s: Soak) -> bool:
    return all(c.ok for c in checks(s) if c.ok is not None)


def _verdict(ok: bool | None) -> str:
    return "reference" if ok is None else ("meets" if ok else "MISSES")


def text_report(s: Soak) -> str:
    lines = [window_line(w) for w in s.windows]
    lines.append(
        f"sent {s.sent}, filled {s.filled}, refused {sum(s.refused.values())}, send errors {s.send_errors}, "
        f"unfilled after the drain {s.unfilled}, drain {s.drain_s:.1f} s"
    )
    lines += [f"{_verdict(c.ok):>9}  {c.what}: {c.measured}" for c in checks(s)]
    for name, samples in s.samples.items():
        lines += [f"error in {name}: {line}" for line in samples]
    return "\n".join(lines)


def section(s: Soak, info: dict[str, str]) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    names = list(s.windows[0].rss_kb) if s.windows else []
    head = ["", "end (s)", "sent", "fills/s", "p50", "p99", "owed", "snapshot KiB", *(f"{n} MiB" for n in names)]
    head += ["errors", "warnings"]
    rows = []
    for w in s.windows:
        cells = [str(w.index), f"{w.end_s:.0f}", str(w.sent), f"{w.fills_per_s:.0f}", f"{w.p50:.1f} ms"]
        cells += [f"{w.p99:.1f} ms", str(w.owed), _kib(w.snapshot), *(_mib(w.rss_kb.get(n)) for n in names)]
        cells += [str(w.errors), str(w.warnings)]
        rows.append("| " + " | ".join(cells) + " |")
    offered = round(s.rate * s.minutes * 60)
    reach = f"{offered:,} intents offered" + (
        "" if offered >= MIN_FILLS else f", fewer than the {MIN_FILLS:,} fills of the target: {needed(s):g}/s would do"
    )
    checklist = "\n".join(f"| {c.what} | {c.measured} | {_verdict(c.ok)} |" for c in checks(s))
    samples = [f"- `{name}`: `{line}`" for name, lines in s.samples.items() for line in lines]
    errors = "\n".join(["", "First error lines:", "", *samples, ""]) if samples else ""
    warnings = ", ".join(f"{k} {v}" for k, v in sorted(s.warnings.items())) or "none"
    refused = ", ".join(f"{k} {v}" for k, v in s.refused.items()) or "none"
    return f"""{SECTION}

Measured {now} on one machine:

- {info["cpus"]} CPUs ({info["cpu"]}), {info["os"]}, load average before the run {info["load"]}
- Python {info["python"]} with uvloop, nats-py {info["nats-py"]}, nats-server {info["nats-server"]}

**What.** `make soak` (`python -m tests.bench.soak`): the processes of `make bench` (keeper, router, gateway
`paper`, sizer; one nats-server, JSON logs at warning) under market intents sent open loop by an
`OrderMeshClient` at **{s.rate:g} intents/s for {s.minutes:g} {"minute" if s.minutes == 1 else "minutes"}**
({reach}). Per {unit(s)}: the fills that arrived in it, p50/p99 intent -> fill of those (from the scheduled
send time), intents owed a fill at its end, the RSS of every process (`VmRSS`), the keeper's snapshot (value
bytes of every key in KV `om_keeper`) and the error and warning lines in every log so far. nats-server's RSS
(it keeps every message id of the 10-minute duplicate window) and the driver's are shown for reference, not
judged.

| {" | ".join(head)} |
|{"|".join("--:" for _ in head)}|
{chr(10).join(rows)}

Sent {s.sent:,}, filled {s.filled:,}, refused {refused}, send errors {s.send_errors}, unfilled after the
drain {s.unfilled}; the fills still owed at the end took {s.drain_s:.1f} s to arrive. Warnings: {warnings}.

**Targets** (issue 16): **{"all met" if passed(s) else "NOT all met"}**.

| target | measured | verdict |
|---|---|---|
{checklist}
{errors}"""


# ---------------------------------------------------------------------------------------------- main


def _interrupt(signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench.soak", description="ordermesh at a fixed rate, long")
    p.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    p.add_argument("--rate", type=float, default=RATE, help=f"intents per second, open loop (default {RATE:g})")
    p.add_argument("--interval", type=float, default=60.0, help="seconds per report row (default 60)")
    p.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to wait for owed fills (120)")
    p.add_argument("--max-in-flight", type=int, default=10_000, help="intent publishes awaiting a PubAck, at most")
    p.add_argument("--ready-timeout", type=float, default=30.0, help="seconds to wait for processes (default 30)")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="the file to update")
    p.add_argument("--no-write", action="store_true", help="print the report only")
    p.add_argument("--log-dir", type=Path, help="keep the processes' logs here (default: a temporary directory)")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.minutes <= 0 or args.interval <= 0:
        p.error("--rate, --minutes and --interval must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_uvloop()
    signal.signal(signal.SIGTERM, _interrupt)
    info = report.machine()
    with tempfile.TemporaryDirectory(prefix="ordermesh-soak-") as tmp:
        work = Path(tmp)
        logs_dir = args.log_dir or work / "logs"
        logs_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        while port == 4222:
            port = free_port()
        server = NatsServer(work / "nats", port=port, log_file=logs_dir / "nats-server.log")
        procs = Procs(logs_dir)
        logs = LogScanner(logs_dir)
        try:
            server.start()
            say(f"nats-server at {server.url}; logs in {logs_dir}")
            soak = asyncio.run(run(args, server.url, procs, server, logs))
        except (BenchError, NatsServerError, nats.errors.Error) as exc:
            say(f"FAILED: {exc}")
            if tail := procs.tail():
                print(f"last log lines of the processes:\n{tail}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            say("interrupted")
            return 130
        finally:
            procs.stop()
            server.stop()
    print(text_report(soak))
    if not args.no_write:
        write(args.output, section(soak, info))
        say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
