"""``make bench``: ordermesh's intent -> fill path against a raw nats-py baseline with the same hops.

    python -m tests.bench [--sequential 1000] [--rate 200] [--count 2000] [--no-write] [--log-dir DIR]

Starts a private nats-server, measures ordermesh (keeper, router, gateway paper and sizer as OS processes,
the driver an OrderMeshClient), stops it, measures the relay baseline on the same server, prints the comparison
and rewrites its section of BENCHMARKS.md. Exits 1, with the processes' last log lines, if fills do not come.
First, in process, it measures the sizing cost per call (``tests/bench/sizing.py``) and the router's decision
cost (``tests/bench/router.py``) and the keeper's replay speed (``tests/bench/keeper.py``), each in its own section.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import nats.errors

from ordermesh.platform.natsserver import NatsServer, NatsServerError, free_port
from ordermesh.platform.runtime import install_uvloop
from tests.bench import keeper as keeper_bench
from tests.bench import mt5 as mt5_bench
from tests.bench import report
from tests.bench import router as router_bench
from tests.bench import sizing as sizing_bench
from tests.bench.procs import ROOT, Procs, heartbeats
from tests.bench.scenarios import QTY, SYMBOL, BenchError, Target, open_loop, sequential, summary, throughput
from tests.bench.targets import RAW, OrderMeshTarget, RawTarget, relay_hops

SERVICES: dict[str, tuple[str, ...]] = {
    "keeper": ("keeper",),
    "router": ("router",),
    "gateway": ("gateway", "paper"),
    "sizer": ("sizer",),
}


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def labels(args: argparse.Namespace) -> dict[str, str]:
    return {
        "sequential": f"sequential ({args.sequential} after {args.warmup} warm-up)",
        "open_loop": f"open loop {args.rate:g}/s for {args.duration:g} s",
        "throughput": f"throughput ({args.count} intents, {args.concurrency} publishes in flight)",
        "order": f"{QTY} {SYMBOL}",
    }


async def measure(target: Target, args: argparse.Namespace, procs: Procs) -> report.Results:
    name = target.name
    seq = await procs.guard(sequential(target, args.sequential, args.warmup, args.fill_timeout), f"{name} sequential")
    say(f"{name}: sequential p50 {summary(seq, 50)['p50']:.2f} ms")
    ol = await procs.guard(open_loop(target, args.rate, args.duration, args.fill_timeout), f"{name} open loop")
    say(f"{name}: open loop p50 {summary(ol, 50)['p50']:.2f} ms")
    rate = await procs.guard(throughput(target, args.count, args.concurrency, args.fill_timeout), f"{name} throughput")
    say(f"{name}: throughput {rate:.0f} fills/s")
    return {"sequential": summary(seq, 50, 90, 99), "open_loop": summary(ol, 50, 99), "throughput": {"fills/s": rate}}


async def bench_ordermesh(args: argparse.Namespace, url: str, procs: Procs) -> report.Results:
    target = OrderMeshTarget(url)
    await target.connect()
    try:
        for name, command in SERVICES.items():
            procs.start(name, "services.cli", "--nats", url, *command, "--http-port", "0")
        ready = heartbeats(target.client.bus.nc, target.client.subjects.all_health, SERVICES)
        await procs.guard(ready, "waiting for a heartbeat from every service", args.ready_timeout)
        say(f"ordermesh: {', '.join(SERVICES)} ready")
        return await measure(target, args, procs)
    finally:
        await target.close()
        procs.stop()


async def bench_raw(args: argparse.Namespace, url: str, procs: Procs) -> report.Results:
    target = RawTarget(url)
    await target.connect()  # streams first: the relays bind their consumers to them
    try:
        hops = relay_hops()
        for hop in hops:
            procs.start(
                f"relay-{hop['name']}", "tests.bench.relay", "--nats", url, *(f"--{k}={v}" for k, v in hop.items())
            )
        ready = heartbeats(target.nc, RAW.all_health, [hop["name"] for hop in hops])
        await procs.guard(ready, "waiting for a heartbeat from every relay", args.ready_timeout)
        say("raw: relays ready")
        return await measure(target, args, procs)
    finally:
        await target.close()
        procs.stop()


async def run(args: argparse.Namespace, url: str, procs: Procs) -> tuple[report.Results, report.Results]:
    ordermesh = await bench_ordermesh(args, url, procs)
    raw = await bench_raw(args, url, procs)
    return ordermesh, raw


def _interrupt(signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description="intent -> fill: ordermesh vs raw nats-py")
    p.add_argument("--sequential", type=int, default=1000, help="sequential intents measured (default 1000)")
    p.add_argument("--warmup", type=int, default=50, help="sequential warm-up intents (default 50)")
    p.add_argument("--rate", type=float, default=200.0, help="open-loop intents per second (default 200)")
    p.add_argument("--duration", type=float, default=5.0, help="open-loop seconds (default 5)")
    p.add_argument("--count", type=int, default=2000, help="intents of the throughput run (default 2000)")
    p.add_argument("--concurrency", type=int, default=64, help="throughput publishes in flight (default 64)")
    p.add_argument("--fill-timeout", type=float, default=30.0, help="seconds to wait for fills (default 30)")
    p.add_argument("--ready-timeout", type=float, default=30.0, help="seconds to wait for processes (default 30)")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="the file to update")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--log-dir", type=Path, help="keep the processes' logs here (default: a temporary directory)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_uvloop()
    signal.signal(signal.SIGTERM, _interrupt)  # cleanup below runs on SIGTERM as on Ctrl-C
    info = report.machine()  # before the run, so the load average is other processes' only
    say("sizing cost per call (in process)")
    sizing_results = sizing_bench.run()  # pure CPU, before any process of ours is running
    print(sizing_bench.text_table(sizing_results))
    if not args.no_write:
        sizing_bench.write(args.output, sizing_bench.section(sizing_results, 20000, 5))
    say("router decision cost per call (in process)")
    router_results = router_bench.run()
    print(router_bench.text_table(router_results))
    if not args.no_write:
        sizing_bench.write(args.output, router_bench.section(router_results, 20000, 5))
    say("MT5 place_order round trip to the simulator")
    mt5_result = mt5_bench.run()
    print(mt5_bench.section(mt5_result))
    if not args.no_write:
        sizing_bench.write(args.output, mt5_bench.section(mt5_result))
    say("keeper replay speed (in process)")
    keeper_result = keeper_bench.run()
    print(keeper_bench.text_table(keeper_result))
    if not args.no_write:
        sizing_bench.write(args.output, keeper_bench.section(keeper_result, 3))
    with tempfile.TemporaryDirectory(prefix="ordermesh-bench-") as tmp:
        work = Path(tmp)
        logs = args.log_dir or work
        logs.mkdir(parents=True, exist_ok=True)
        port = free_port()
        while port == 4222:  # never the default NATS port, which a developer's own server may want
            port = free_port()
        server = NatsServer(work / "nats", port=port, log_file=logs / "nats-server.log")
        procs = Procs(logs)
        try:
            server.start()
            say(f"nats-server at {server.url}")
            ordermesh, raw = asyncio.run(run(args, server.url, procs))
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
    names = labels(args)
    print(report.text_table(names, ordermesh, raw))
    if not args.no_write:
        report.write(args.output, report.section(names, ordermesh, raw, info))
        say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
