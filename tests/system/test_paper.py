"""The paper venue through the running system: a demo run's fills carry slippage and commissions, `ordermesh tca`
reports them, and tickets stay unique across a gateway restart."""

from __future__ import annotations

import asyncio
import signal
import sys
from decimal import Decimal
from pathlib import Path

from ordermesh.contract.codec import EXEC_CODEC
from ordermesh.contract.subjects import KV_PAPER, kv_key
from ordermesh.contract.wire import OrderFilled
from ordermesh.platform.bus import Bus
from ordermesh.platform.config import NatsSettings
from ordermesh.platform.natsserver import NatsServer
from ordermesh.sdk import OrderMeshClient
from tests.harness import ROOT, System, eventually


async def _fills(nats_url: str, count: int, timeout: float = 60.0) -> list[OrderFilled]:
    """The first ``count`` fills published on om.exec.> (live), as they arrive."""
    bus = Bus(NatsSettings(url=nats_url), "test-fills")
    await bus.connect()
    got: list[OrderFilled] = []
    enough = asyncio.Event()

    async def on(msg: object) -> None:
        event = EXEC_CODEC.decode(msg.data)  # type: ignore[attr-defined]
        if isinstance(event, OrderFilled) and event.fill_id not in {f.fill_id for f in got}:
            got.append(event)  # a core subscriber also sees the repeats the stream drops
            if len(got) >= count:
                enough.set()

    await bus.subscribe("om.exec.>", on)
    try:
        await asyncio.wait_for(enough.wait(), timeout)
    finally:
        await bus.close()
    return got


async def test_demo_fills_carry_slippage_and_commissions_and_tca_reports_them(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    env = {"ORDERMESH__DEMO__INTERVAL_S": "0.1"}
    async with System(nats_server.url, tmp_path, env=env) as system:
        await system.start_all()
        watching = asyncio.ensure_future(_fills(nats_server.url, 12))
        with open(tmp_path / "demo.log", "ab") as log:
            demo = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "services.cli", "--nats", nats_server.url, "demo",
                stdout=log, stderr=asyncio.subprocess.STDOUT, env=system.env, cwd=ROOT, start_new_session=True,
            )  # fmt: skip
        try:
            fills = await watching
        finally:
            demo.send_signal(signal.SIGTERM)
            await asyncio.wait_for(demo.wait(), 15)
        assert {f.strategy_id for f in fills} <= {"demo-trend", "demo-meanrev"}
        assert all(f.reference_price is not None and f.slippage_bps is not None for f in fills)
        assert any(f.slippage_bps != 0 for f in fills)
        assert all(f.commission > 0 and f.commission_asset == "USD" for f in fills)
        for f in fills:  # FX: 3.50 USD a lot; BTC: 5 bp of the notional (taker)
            if f.symbol == "BTCUSD":
                assert f.commission == f.last_qty * f.last_px * Decimal(5) / Decimal(10_000)
            else:
                assert f.commission == f.last_qty * Decimal("3.50")
        # TCA metrics on the gateway
        for symbol in {f.symbol for f in fills}:
            seen = sum(1 for f in fills if f.symbol == symbol)
            assert system.metric("gateway", "ordermesh_fill_slippage_ratio_count", symbol=symbol) >= seen
            assert system.metric("gateway", "ordermesh_commissions_total", symbol=symbol, asset="USD") > 0

        tca = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "--nats", nats_server.url, "tca", "--since", "1h",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=system.env, cwd=ROOT,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(tca.communicate(), 60)
        assert tca.returncode == 0, stderr.decode()
        out = stdout.decode()
        lines = out.splitlines()
        assert lines[0].split()[:4] == ["symbol", "strategy", "fills", "quantity"]
        rows = [line.split() for line in lines[2:]]
        assert rows and all(r[1] in ("demo-trend", "demo-meanrev") for r in rows)
        assert sum(int(r[2]) for r in rows) >= len(fills)
        assert all(r[-1] == "USD" and Decimal(r[-2]) > 0 for r in rows)  # commission per row
        assert any(Decimal(r[4]) != 0 for r in rows)  # average slippage


async def test_tickets_stay_unique_across_a_gateway_restart(nats_server: NatsServer, tmp_path: Path) -> None:
    async with System(nats_server.url, tmp_path) as system:
        await system.start_all()
        async with OrderMeshClient("tix", url=nats_server.url) as om:
            first = [await om.wait(await om.buy("EURUSD", Decimal("0.10")), timeout=20) for _ in range(3)]
            system.kill("gateway")
            system.start("gateway")
            await system.wait_ready("gateway")
            later = [await om.wait(await om.sell("EURUSD", Decimal("0.10")), timeout=20) for _ in range(3)]
            fills = [*first, *later]
            assert all(isinstance(f, OrderFilled) for f in fills), fills
            ids = [int(f.fill_id) for f in fills]  # type: ignore[union-attr]
            assert ids == sorted(ids) and len(set(ids)) == 6
            orders = [int(f.broker_order_id) for f in fills]  # type: ignore[union-attr]
            assert orders == sorted(orders) and len(set(orders)) == 6
            kv = await om.bus.kv(KV_PAPER)

            async def stored() -> bool:
                entry = await kv.get(kv_key("paper", "tickets"))
                return entry.value is not None

            await eventually(stored, what="tickets stored in om_paper")
