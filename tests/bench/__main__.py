"""``make bench``: ordermesh's intent -> fill path against two plain nats-py baselines with the same hops.

    python -m tests.bench [--sequential 1000] [--rate 200] [--count 5000] [--sweep-rates 100,200,500,1000]
                          [--sweep-duration 10] [--skip sizing,router,mt5,keeper,sweep,durability]
                          [--durability-sequential 300] [--durability-count 2000] [--no-write] [--log-dir DIR]

Starts a private nats-server, measures ordermesh (keeper, router, gateway paper and sizer as OS processes,
the driver an OrderMeshClient) and then sweeps open-loop rates on it, stops it, measures the relay chain (the
latency baseline, ``relay.py``) and then the pipelined chain (the throughput baseline, ``pipelined.py``, swept
like ordermesh) on the same server, prints the comparison and rewrites the sections *Order path* and
*Open-loop rate sweep* of BENCHMARKS.md. Exits 1, with the processes' last log lines, if fills do not come.
First, in process, it measures the sizing cost per call (``tests/bench/sizing.py``) and the router's decision
cost (``tests/bench/router.py``) and the keeper's replay speed (``tests/bench/keeper.py``), each in its own section.
Last, it measures the order path on a fresh nats-server with its default ``sync_interval`` and on one with
``sync_interval: always`` (``tests/bench/durability.py``, section *Durability*).
The soak (``make soak``) is ``tests/bench/soak.py``.
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

from ordermesh.contract.subjects import Subjects
from ordermesh.platform.natsserver import NatsServer, NatsServerError, free_port
from ordermesh.platform.runtime import install_uvloop
from tests.bench import durability as durability_bench
from tests.bench import keeper as keeper_bench
from tests.bench import mt5 as mt5_bench
from tests.bench import pipelined, report, sweep
from tests.bench import router as router_bench
from tests.bench import sizing as sizing_bench
from tests.bench.procs import ROOT, SERVICES, Procs, heartbeats
from tests.bench.scenarios import QTY, SYMBOL, BenchError, Target, open_loop, sequential, summary, throughput
from tests.bench.targets import PIPE, RAW, OrderMeshTarget, RawTarget, chain_hops

SKIPPABLE = ("sizing", "router", "mt5", "keeper", "sweep", "durability")


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def labels(args: argparse.Namespace) -> dict[str, str]:
    return {
        "sequential": f"sequential ({args.sequential} after {args.warmup} warm-up)",
        "open_loop": f"open loop {args.rate:g}/s for {args.duration:g} s",
        "throughput": f"throughput ({args.count} intents, {args.concurrency} publishes in flight)",
        "order": f"{QTY} {SYMBOL}",
        "pipe_batch": str(pipelined.BATCH),
        "pipe_in_flight": str(pipelined.IN_FLIGHT),
    }


async def measure(target: Target, args: argparse.Namespace, procs: Procs) -> report.Results:
    name = target.name
    seq = await procs.guard(sequential(target, args.sequential, args.warmup, args.fill_timeout), f"{name} sequential")
    say(f"{name}: sequential p50 {summary(seq, 50)['p50']:.2f} ms")
    ol = await procs.guard(open_loop(target, args.rate, args.duration, args.fill_timeout), f"{name} open loop")
    say(f"{name}: open loop p50 {summary(ol, 50)['p50']:.2f} ms")
    cpu = procs.cpu()
    rate = await procs.guard(throughput(target, args.count, args.concurrency, args.fill_timeout), f"{name} throughput")
    cpu_ms = (procs.cpu() - cpu) / args.count * 1000
    say(f"{name}: throughput {rate:.0f} fills/s, {cpu_ms:.2f} ms CPU per order (processes + nats-server)")
    return {
        "sequential": summary(seq, 50, 90, 99),
        "open_loop": summary(ol, 50, 99),
        "throughput": {"fills/s": rate, "cpu": cpu_ms},
    }


async def rate_sweep(target: Target, args: argparse.Namespace, procs: Procs) -> list[sweep.Step]:
    if "sweep" in args.skip:
        return []
    steps = sweep.sweep(target, args.sweep_rates, args.sweep_duration, args.sweep_drain, args.backlog_ms, say=say)
    return await procs.guard(steps, f"{target.name} rate sweep")


async def bench_ordermesh(args: argparse.Namespace, url: str, procs: Procs) -> tuple[report.Results, list[sweep.Step]]:
    target = OrderMeshTarget(url)
    try:
        procs.start_ordermesh(url)  # first: the services create the streams the client binds to
        await procs.guard(target.connect(), "connecting the driver", args.ready_timeout)
        ready = heartbeats(target.client.bus.nc, target.client.subjects.all_health, SERVICES)
        await procs.guard(ready, "waiting for a heartbeat from every service", args.ready_timeout)
        say(f"ordermesh: {', '.join(SERVICES)} ready")
        results = await measure(target, args, procs)
        return results, await rate_sweep(target, args, procs)
    finally:
        await target.close()
        procs.stop()


async def bench_chain(
    args: argparse.Namespace, url: str, procs: Procs, *, name: str, subjects: Subjects, module: str, swept: bool
) -> tuple[report.Results, list[sweep.Step]]:
    """A plain nats-py chain: one ``module`` process per hop (``tests.bench.relay`` or ``tests.bench.pipelined``)."""
    target = RawTarget(url, subjects, name)
    await target.connect()  # streams first: the hops bind their consumers to them
    try:
        hops = chain_hops(subjects)
        for hop in hops:
            extra = []
            if module == "tests.bench.pipelined":
                extra = [f"--prefix={subjects.prefix}", f"--reports={2 if hop['name'] == 'gateway' else 1}"]
            procs.start(f"{name}-{hop['name']}", module, "--nats", url, *(f"--{k}={v}" for k, v in hop.items()), *extra)
        ready = heartbeats(target.nc, subjects.all_health, [hop["name"] for hop in hops])
        await procs.guard(ready, f"waiting for a heartbeat from every {name} hop", args.ready_timeout)
        say(f"{name}: hops ready")
        results = await measure(target, args, procs)
        return results, (await rate_sweep(target, args, procs) if swept else [])
    finally:
        await target.close()
        procs.stop()


Measured = tuple[report.Results, report.Results, report.Results, dict[str, list[sweep.Step]]]


async def run(args: argparse.Namespace, url: str, procs: Procs) -> Measured:
    ordermesh, om_steps = await bench_ordermesh(args, url, procs)
    relay, _ = await bench_chain(args, url, procs, name="relay", subjects=RAW, module="tests.bench.relay", swept=False)
    pipe, pipe_steps = await bench_chain(
        args, url, procs, name="pipelined", subjects=PIPE, module="tests.bench.pipelined", swept=True
    )
    steps = {"ordermesh": om_steps, "pipelined chain": pipe_steps} if om_steps or pipe_steps else {}
    return ordermesh, relay, pipe, steps


def _interrupt(signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def _rates(text: str) -> list[float]:
    rates = [float(x) for x in text.split(",") if x.strip()]
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be positive numbers, comma-separated")
    return rates


def _skip(text: str) -> set[str]:
    parts = {x.strip() for x in text.split(",") if x.strip()}
    if unknown := parts - set(SKIPPABLE):
        raise argparse.ArgumentTypeError(f"unknown part(s) {', '.join(sorted(unknown))}; one of {','.join(SKIPPABLE)}")
    return parts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.bench", description="intent -> fill: ordermesh vs raw nats-py")
    p.add_argument("--sequential", type=int, default=1000, help="sequential intents measured (default 1000)")
    p.add_argument("--warmup", type=int, default=50, help="sequential warm-up intents (default 50)")
    p.add_argument("--rate", type=float, default=200.0, help="open-loop intents per second (default 200)")
    p.add_argument("--duration", type=float, default=5.0, help="open-loop seconds (default 5)")
    p.add_argument("--count", type=int, default=5000, help="intents of the throughput run (default 5000)")
    p.add_argument("--concurrency", type=int, default=256, help="throughput publishes in flight (default 256)")
    p.add_argument("--fill-timeout", type=float, default=30.0, help="seconds to wait for fills (default 30)")
    p.add_argument("--ready-timeout", type=float, default=30.0, help="seconds to wait for processes (default 30)")
    p.add_argument(
        "--sweep-rates", type=_rates, default=[100.0, 200.0, 500.0, 1000.0], help="open-loop sweep intents/s, "
        "comma-separated (default 100,200,500,1000)"
    )  # fmt: skip
    p.add_argument("--sweep-duration", type=float, default=10.0, help="seconds at each sweep rate (default 10)")
    p.add_argument("--sweep-drain", type=float, default=60.0, help="seconds to wait for a rate's fills (default 60)")
    p.add_argument("--backlog-ms", type=float, default=100.0, help="a drain longer than this is a backlog (100)")
    p.add_argument("--durability-sequential", type=int, default=durability_bench.Options.sequential,
                   help="sequential intents measured per sync_interval setting (default 300)")  # fmt: skip
    p.add_argument("--durability-count", type=int, default=durability_bench.Options.count,
                   help="intents of the throughput run per sync_interval setting (default 2000)")  # fmt: skip
    p.add_argument("--skip", type=_skip, default=set(), help=f"comma-separated parts not to run: {','.join(SKIPPABLE)}")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md", help="the file to update")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--log-dir", type=Path, help="keep the processes' logs here (default: a temporary directory)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_uvloop()
    signal.signal(signal.SIGTERM, _interrupt)  # cleanup below runs on SIGTERM as on Ctrl-C
    info = report.machine()  # before the run, so the load average is other processes' only
    if "sizing" not in args.skip:
        say("sizing cost per call (in process)")
        sizing_results = sizing_bench.run()  # pure CPU, before any process of ours is running
        print(sizing_bench.text_table(sizing_results))
        if not args.no_write:
            sizing_bench.write(args.output, sizing_bench.section(sizing_results, 20000, 5))
    if "router" not in args.skip:
        say("router decision cost per call (in process)")
        router_results = router_bench.run()
        print(router_bench.text_table(router_results))
        if not args.no_write:
            sizing_bench.write(args.output, router_bench.section(router_results, 20000, 5))
    if "mt5" not in args.skip:
        say("MT5 place_order round trip to the simulator")
        mt5_result = mt5_bench.run()
        print(mt5_bench.section(mt5_result))
        if not args.no_write:
            sizing_bench.write(args.output, mt5_bench.section(mt5_result))
    if "keeper" not in args.skip:
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
            assert server.proc is not None
            procs.watched["nats-server"] = server.proc.pid
            say(f"nats-server at {server.url}")
            ordermesh, raw, pipe, steps = asyncio.run(run(args, server.url, procs))
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
        print(report.text_table(names, ordermesh, raw, pipe))
        if steps:
            print(sweep.text_table(steps))
        if not args.no_write:
            report.write(args.output, report.section(names, ordermesh, raw, pipe, info))
            if steps:
                sizing_bench.write(args.output, sweep.section(steps, args.sweep_duration, args.sweep_drain,
                                                              args.backlog_ms, info))  # fmt: skip
            say(f"wrote {args.output}")
        if "durability" not in args.skip:
            return bench_durability(args, work, logs, info)
    return 0


def bench_durability(args: argparse.Namespace, work: Path, logs: Path, info: dict[str, str]) -> int:
    """The order path with nats-server's default ``sync_interval`` and with ``always``, each on a fresh server."""
    say("durability: the order path with sync_interval default and always")
    options = durability_bench.Options(
        sequential=args.durability_sequential,
        count=args.durability_count,
        concurrency=args.concurrency,
        fill_timeout=args.fill_timeout,
        ready_timeout=args.ready_timeout,
    )
    try:
        results = durability_bench.run(work, logs, options, say=say)
    except (BenchError, NatsServerError, nats.errors.Error) as exc:
        say(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    print(durability_bench.text_table(results))
    if not args.no_write:
        store = durability_bench.filesystem(work)
        sizing_bench.write(args.output, durability_bench.section(results, options, info, store))
        say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
