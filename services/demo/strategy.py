from __future__ import annotations

import asyncio
import random

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ordermesh.contract.wire import OrderFilled, Side
from ordermesh.platform import metrics
from ordermesh.platform.config import OrderMeshConfig
from ordermesh.platform.runtime import install_uvloop
from ordermesh.sdk import OrderMeshClient, OrderMeshError

log = structlog.get_logger("ordermesh.demo")

#: A demo strategy flattens a position once it holds this many intents' worth in one direction.
MAX_UNITS = 3


async def run_strategy(config: OrderMeshConfig, strategy_id: str, seed: int, stop: asyncio.Event) -> None:
    demo = config.demo
    rng = random.Random(seed)
    units: dict[str, int] = {s: 0 for s in demo.symbols}
    async with OrderMeshClient(strategy_id, account=demo.account, config=config) as om:
        log.info("demo strategy started", strategy_id=strategy_id, symbols=demo.symbols)
        while not stop.is_set():
            symbol = rng.choice(demo.symbols)
            qty = demo.crypto_qty if symbol.startswith(("BTC", "ETH")) else demo.fx_qty
            held = units[symbol]
            if abs(held) >= MAX_UNITS:
                side = Side.SELL if held > 0 else Side.BUY
            else:
                side = rng.choice((Side.BUY, Side.SELL))
            intent_id = await (om.buy if side is Side.BUY else om.sell)(symbol, qty)
            waiting = asyncio.ensure_future(om.wait(intent_id, timeout=15))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not waiting.done():
                waiting.cancel()
                break
            try:
                outcome = waiting.result()
            except OrderMeshError as exc:
                metrics.DEMO_INTENTS.labels(strategy_id, "no_outcome").inc()
                log.warning("no outcome yet", intent_id=intent_id, error=str(exc))
            else:
                if isinstance(outcome, OrderFilled):
                    units[symbol] += side.sign
                    metrics.DEMO_INTENTS.labels(strategy_id, "filled").inc()
                    log.info("filled", intent_id=intent_id, symbol=symbol, side=side.value, price=str(outcome.last_px))
                else:
                    metrics.DEMO_INTENTS.labels(strategy_id, "refused").inc()
                    log.info("not filled", intent_id=intent_id, outcome=type(outcome).__name__)
            try:
                await asyncio.wait_for(stop.wait(), timeout=demo.interval_s * (0.5 + rng.random()))
            except TimeoutError:
                pass


async def run_demo(config: OrderMeshConfig) -> None:
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = await serve_metrics(config)
    try:
        await asyncio.gather(
            *(run_strategy(config, sid, config.demo.seed + i, stop) for i, sid in enumerate(config.demo.strategies))
        )
    finally:
        await runner.cleanup()


async def serve_metrics(config: OrderMeshConfig) -> web.AppRunner:
    """``/metrics`` (the demo's own families) and ``/healthz`` on ``http.demo``, like every process."""
    registry = metrics.registry([metrics.DEMO])
    for sid in config.demo.strategies:
        for outcome in ("filled", "refused", "no_outcome"):
            metrics.DEMO_INTENTS.labels(sid, outcome)

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"service": "demo", "ok": True, "strategies": config.demo.strategies})

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.http.host, config.http.demo).start()
    return runner


def main(config: OrderMeshConfig) -> int:
    install_uvloop()
    asyncio.run(run_demo(config))
    return 0
