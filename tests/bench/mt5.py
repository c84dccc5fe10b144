"""place_order round trip to the MT5 bridge simulator over real ZeroMQ sockets (loopback), against the targets
p50 < 1 ms and p99 < 5 ms.

    python -m tests.bench.mt5 [--orders 2000] [--no-write]

The simulator runs in its own process (``ordermesh mt5-sim``), as the EA runs in the terminal; each order is one
market TRADE: request, ``OK``, the JSON reply on the data socket. Writes its own section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ordermesh.contract.wire import Side
from tests.bench import sizing
from tests.mt5util import adapter_for, free_ports, place
from tools.mt5sim.server import Ports

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## MT5 place_order round trip"


async def measure(orders: int) -> list[float]:
    ports = Ports(*free_ports())
    sim = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "services.cli", "mt5-sim", "--command-port", str(ports.command), "--data-port",
         str(ports.data), "--live-port", str(ports.live), "--events-port", str(ports.events), "--balance",
         "100000000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        await asyncio.to_thread(sim.stdout.readline)  # "mt5-sim ready"
        mt5 = adapter_for(ports, timeout=5.0)
        mt5.heartbeat_interval = 3600.0  # measure orders alone
        await mt5.connect()
        try:
            out = []
            for i in range(orders):
                cmd = place(f"bench-{i}", Side.BUY if i % 2 else Side.SELL, "0.01")
                started = time.perf_counter()
                await mt5.place_order(cmd)
                out.append(time.perf_counter() - started)
            return out
        finally:
            await mt5.close()
    finally:
        sim.terminate()
        sim.wait(15)


def run(orders: int = 2000) -> dict[str, float]:
    samples = sorted(asyncio.run(measure(orders)))
    ms = [s * 1000 for s in samples]
    return {"orders": orders, "p50": statistics.median(ms), "p99": ms[int(len(ms) * 0.99) - 1], "max": ms[-1]}


def section(r: dict[str, float]) -> str:
    ok = "met" if r["p50"] < 1 and r["p99"] < 5 else "NOT met"
    return (
        f"{SECTION}\n\n`python -m tests.bench.mt5`: {int(r['orders'])} market orders, one at a time, from the MT5 "
        "adapter "
        "to `ordermesh mt5-sim` in its own process over loopback ZeroMQ (TRADE, `OK`, JSON reply on the data "
        "socket; ticket record stored in memory).\n\n"
        "| p50 | p99 | max | target |\n|---|---|---|---|\n"
        f"| {r['p50']:.3f} ms | {r['p99']:.3f} ms | {r['max']:.3f} ms | p50 < 1 ms, p99 < 5 ms ({ok}) |\n"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--orders", type=int, default=2000)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = p.parse_args()
    r = run(args.orders)
    print(section(r))
    if not args.no_write:
        sizing.write(args.output, section(r))


if __name__ == "__main__":
    main()
