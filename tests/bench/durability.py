"""The order path's cost of ``sync_interval: always`` (fsync before every acknowledgement) beside nats-server's default.

    python -m tests.bench.durability [--sequential 300] [--warmup 30] [--count 2000] [--concurrency 256]
                                     [--no-write] [--log-dir DIR]

For each setting (nats-server's default, then ``always``): a fresh nats-server with its own store, the ordermesh
processes of ``make bench`` (keeper, router, gateway paper, sizer), the driver an ``OrderMeshClient``; the
sequential scenario and the throughput run of the order path (``tests/bench/scenarios.py``), with the CPU per
order of the processes and the nats-server during the throughput run; then everything is stopped. Each server's
``/varz`` is read to check that the setting reached JetStream. Writes its own section of BENCHMARKS.md
(``make bench`` runs it too, after the comparison, unless ``--skip durability``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import signal
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import nats.errors

from ordermesh.platform.natsserver import NatsServer, NatsServerError, free_port
from ordermesh.platform.runtime import install_uvloop
from tests.bench import report
from tests.bench import sizing as sizing_bench
from tests.bench.procs import ROOT, SERVICES, Procs, heartbeats
from tests.bench.scenarios import BenchError, sequential, summary, throughput
from tests.bench.targets import OrderMeshTarget

SECTION = "## Durability: the order path with `sync_interval: always`"
#: the settings measured, in this order: None is nats-server's default (fsync every 2 minutes)
SETTINGS: tuple[str | None, ...] = (None, "always")


@dataclass(frozen=True)
class Options:
    sequential: int = 300
    warmup: int = 30
    count: int = 2000
    concurrency: int = 256
    fill_timeout: float = 30.0
    ready_timeout: float = 30.0


@dataclass(frozen=True)
class Result:
    setting: str | None  # None: nats-server's default
    p50: float  # ms, sequential intent -> fill
    p99: float
    fills_per_s: float  # throughput run
    cpu_ms: float  # CPU per order of the processes and the nats-server during the throughput run
    sync_always: bool = False  # what the server's /varz said


def slug(setting: str | None) -> str:
    return "default" if setting is None else setting


def label(setting: str | None) -> str:
    return "default (nats-server's: fsync every 2 minutes)" if setting is None else f"`{setting}`"


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _port() -> int:
    port = free_port()
    while port == 4222:  # never the default NATS port, which a developer's own server may want
        port = free_port()
    return port


def varz_sync_always(monitor_port: int) -> bool:
    """Whether the server at ``monitor_port`` syncs every JetStream write (its own monitoring endpoint says)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/varz", timeout=5) as resp:
        return bool(json.load(resp)["jetstream"]["config"].get("sync_always"))


def filesystem(path: Path) -> str:
    """The type and device of the filesystem holding ``path`` (an fsync on tmpfs costs nothing): ``ext4 /dev/vda``."""
    path = path.resolve()
    best: tuple[int, str] = (-1, "unknown")
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return best[1]
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount, fstype = fields[0], fields[1].replace("\\040", " "), fields[2]
        if (path == Path(mount) or Path(mount) in path.parents) and len(mount) > best[0]:
            best = (len(mount), f"{fstype} {device}")
    return best[1]


async def measure_setting(
    setting: str | None, url: str, procs: Procs, options: Options, say: Callable[[str], None] = _say
) -> Result:
    """The ordermesh processes against the server at ``url``: sequential, then throughput with CPU per order."""
    name = f"durability {slug(setting)}"
    target = OrderMeshTarget(url)
    try:
        procs.start_ordermesh(url)  # first: the services create the streams the client binds to
        await procs.guard(target.connect(), f"{name}: connecting the driver", options.ready_timeout)
        ready = heartbeats(target.client.bus.nc, target.client.subjects.all_health, SERVICES)
        await procs.guard(ready, f"{name}: waiting for a heartbeat from every service", options.ready_timeout)
        say(f"{name}: {', '.join(SERVICES)} ready")
        seq = await procs.guard(
            sequential(target, options.sequential, options.warmup, options.fill_timeout), f"{name} sequential"
        )
        lat = summary(seq, 50, 99)
        say(f"{name}: sequential p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms")
        cpu = procs.cpu()
        rate = await procs.guard(
            throughput(target, options.count, options.concurrency, options.fill_timeout), f"{name} throughput"
        )
        cpu_ms = (procs.cpu() - cpu) / options.count * 1000
        say(f"{name}: throughput {rate:.0f} fills/s, {cpu_ms:.2f} ms CPU per order (processes + nats-server)")
        return Result(setting, lat["p50"], lat["p99"], rate, cpu_ms)
    finally:
        await target.close()
        procs.stop()


def run(work: Path, logs: Path, options: Options | None = None, say: Callable[[str], None] = _say) -> list[Result]:
    """Every setting of :data:`SETTINGS` in turn, each on a fresh nats-server (store under ``work``, log in ``logs``)
    and fresh processes. Raises :class:`BenchError`, :class:`NatsServerError` or a NATS error (after printing the
    processes' last log lines) when the system does not do what the benchmark needs."""
    options = options or Options()
    results = []
    for setting in SETTINGS:
        monitor = _port()
        server = NatsServer(
            work / f"nats-durability-{slug(setting)}",
            port=_port(),
            log_file=logs / f"nats-server-durability-{slug(setting)}.log",
            sync_interval=setting,
            monitor_port=monitor,
        )
        procs = Procs(logs)
        try:
            server.start()
            assert server.proc is not None
            procs.watched["nats-server"] = server.proc.pid
            always = varz_sync_always(monitor)
            if always != (setting == "always"):
                raise BenchError(f"nats-server with sync_interval {setting!r} reports sync_always={always}")
            say(f"durability {slug(setting)}: nats-server at {server.url} (sync_always {always})")
            result = asyncio.run(measure_setting(setting, server.url, procs, options, say))
            results.append(dataclasses.replace(result, sync_always=always))
        except (BenchError, NatsServerError, nats.errors.Error):
            if tail := procs.tail():
                print(f"last log lines of the processes:\n{tail}", file=sys.stderr)
            raise
        finally:
            procs.stop()
            server.stop()
    return results


# ------------------------------------------------------------------------------------------------ the report


def ratios(result: Result, default: Result) -> dict[str, float]:
    """``result`` over the default setting's, per figure (latency and CPU above 1, fills/s below 1: it costs)."""
    return {
        "p50": result.p50 / default.p50,
        "p99": result.p99 / default.p99,
        "fills/s": result.fills_per_s / default.fills_per_s,
        "CPU": result.cpu_ms / default.cpu_ms,
    }


def _default(results: Sequence[Result]) -> Result:
    return next(r for r in results if r.setting is None)


def _ratio_cell(result: Result, default: Result) -> str:
    if result.setting is None:
        return "1 (reference)"
    return ", ".join(f"{k} {v:.2f}x" for k, v in ratios(result, default).items())


def _cells(result: Result, default: Result) -> tuple[str, ...]:
    return (
        label(result.setting),
        f"{result.p50:.2f} / {result.p99:.2f}",
        f"{result.fills_per_s:.0f}",
        f"{result.cpu_ms:.2f}",
        _ratio_cell(result, default),
    )


HEAD = ("setting", "sequential p50 / p99 ms", "throughput fills/s", "CPU per order ms", "ratio to default")


def markdown_table(results: Sequence[Result]) -> str:
    default = _default(results)
    lines = ["| " + " | ".join(HEAD) + " |", "|---|--:|--:|--:|---|"]
    lines += ["| " + " | ".join(_cells(r, default)) + " |" for r in results]
    return "\n".join(lines)


def text_table(results: Sequence[Result]) -> str:
    default = _default(results)
    body = [_cells(r, default) for r in results]
    widths = [max(len(line[i]) for line in [HEAD, *body]) for i in range(len(HEAD))]
    lines = [HEAD, tuple("-" * w for w in widths), *body]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def section(results: Sequence[Result], options: Options, info: dict[str, str], store: str) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    default = _default(results)
    costs = [
        f"`{r.setting}`: sequential p50 {ratios(r, default)['p50']:.2f}x and p99 {ratios(r, default)['p99']:.2f}x "
        f"the default's, {ratios(r, default)['fills/s']:.2f}x its fills/s, {ratios(r, default)['CPU']:.2f}x its CPU "
        "per order"
        for r in results
        if r.setting is not None
    ]
    return f"""{SECTION}

Measured {now} on one machine:

- {info["cpus"]} CPUs ({info["cpu"]}), {info["os"]}, load average before the run {info["load"]}
  (the machine was shared with other work: the figures move with it; read the ratios)
- Python {info["python"]} with uvloop, nats-py {info["nats-py"]}, nats-server {info["nats-server"]}
- JetStream store on {store}

**What.** The order path of *Order path* above (strategy SDK -> sizer -> router -> gateway `paper` -> the
SDK's fill), once on a nats-server with its default `sync_interval` and once with `sync_interval: always`
(`nats.sync_interval` in `deploy/ordermesh.yaml`, `ordermesh up`'s embedded server); each server's `/varz`
confirmed the setting (`sync_always`). Result: {"; ".join(costs)}.

**How.** `python -m tests.bench.durability` (`make bench` runs it after the comparison): per setting a fresh
nats-server (one node, file storage, one replica, its own store directory) on loopback and fresh keeper, router,
gateway and sizer processes; *sequential*: {options.sequential} intents one at a time after {options.warmup}
warm-up; *throughput*: {options.count} intents, {options.concurrency} publishes in flight, fills per second from
the first send to the last fill; *CPU per order*: user + system CPU of the processes and the nats-server during
the throughput run, per intent (`/proc/<pid>/stat`, the driver not counted). Settings run one after the other,
not interleaved.

{markdown_table(results)}

What each setting can lose:

- **default**: nats-server acknowledges a write once it is in the OS's page cache and fsyncs JetStream's files
  every 2 minutes. A nats-server crash loses nothing (the OS still holds the pages); a single node losing power
  or its OS can lose acknowledged writes (intents, orders, reports, KV records) of up to the last 2 minutes.
- **`always`**: nats-server fsyncs before every acknowledgement: an acknowledged write survives the node losing
  power or its OS, as far as the disk honours fsync.
- **a cluster of 3, replicas 3, nodes in separate failure domains**: a write is acknowledged once a majority of
  the replicas has stored it, so the loss of one node loses no acknowledged write with either setting (it
  catches up from the others); with the default, a failure that takes down a majority at once (shared power)
  can still lose the last interval's writes.
"""


def _interrupt(signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    defaults = Options()
    p = argparse.ArgumentParser(prog="python -m tests.bench.durability", description="order path: sync_interval")
    p.add_argument("--sequential", type=int, default=defaults.sequential, help="sequential intents measured (300)")
    p.add_argument("--warmup", type=int, default=defaults.warmup, help="sequential warm-up intents (default 30)")
    p.add_argument("--count", type=int, default=defaults.count, help="intents of the throughput run (default 2000)")
    p.add_argument("--concurrency", type=int, default=defaults.concurrency, help="publishes in flight (default 256)")
    p.add_argument("--fill-timeout", type=float, default=defaults.fill_timeout, help="seconds to wait for fills (30)")
    p.add_argument("--ready-timeout", type=float, default=defaults.ready_timeout, help="seconds for processes (30)")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="the file to update")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--log-dir", type=Path, help="keep the processes' logs here (default: a temporary directory)")
    args = p.parse_args(argv)
    options = Options(args.sequential, args.warmup, args.count, args.concurrency, args.fill_timeout,
                      args.ready_timeout)  # fmt: skip
    install_uvloop()
    signal.signal(signal.SIGTERM, _interrupt)  # cleanup in run() happens on SIGTERM as on Ctrl-C
    info = report.machine()  # before the run, so the load average is other processes' only
    with tempfile.TemporaryDirectory(prefix="ordermesh-bench-") as tmp:
        work = Path(tmp)
        logs = args.log_dir or work
        logs.mkdir(parents=True, exist_ok=True)
        try:
            results = run(work, logs, options)
        except (BenchError, NatsServerError, nats.errors.Error) as exc:
            _say(f"FAILED: {exc}")
            return 1
        except KeyboardInterrupt:
            _say("interrupted")
            return 130
        store = filesystem(work)
    print(text_table(results))
    if not args.no_write:
        sizing_bench.write(args.output, section(results, options, info, store))
        _say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
