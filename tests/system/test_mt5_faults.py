"""MT5 faults end to end: sizer, router, keeper and an MT5 gateway as OS processes in front of the simulator of the
stock EA (``ordermesh mt5-sim`` with a fault flag). After each fault the intent ends with exactly one fill, MT5
holds exactly one position, and ``ordermesh positions --check`` finds no difference between the keeper and MT5."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from ordermesh.contract.wire import OrderAccepted, OrderCanceled, OrderFilled
from ordermesh.platform.natsserver import NatsServer
from ordermesh.sdk import OrderMeshClient
from tests import harness
from tests.harness import ROOT, System, eventually
from tests.mt5util import free_ports, mt5_config, mt5_sim_process, sim_for
from tools.mt5sim.engine import Account
from tools.mt5sim.server import Ports

FAULTS = {
    "reply and event lost": ["--drop-trade-replies", "1", "--drop-trade-events", "1"],
    "reply lost, event kept": ["--drop-trade-replies", "1"],
    "10012 for a trade that executed": ["--timeout-but-execute", "1"],
}


async def check(config: Path, url: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "--nats", url, "--config", str(config), "positions", "--check"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.parametrize("hedging", [False, True], ids=["netting", "hedging"])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_ends_with_one_fill_and_the_keeper_agrees_with_mt5(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, hedging: bool
) -> None:
    mode = "hedging" if hedging else "netting"
    ports = Ports(*free_ports())
    config = mt5_config(
        tmp_path / "om.yaml",
        ports,
        accounts=f"accounts:\n  mt5-f:\n    mode: {mode}\n",
        broker=f"    request_timeout_ms: 500\n    settle_s: 2\n    hedging: {str(hedging).lower()}\n",
    )
    monkeypatch.setitem(harness.SERVICES, "gateway-mt5", ["gateway", "mt5"])
    flags = [*FAULTS[fault], *(["--hedging"] if hedging else [])]
    with mt5_sim_process(tmp_path / "mt5-sim.log", ports, *flags):
        async with System(nats_server.url, tmp_path, config=config) as system:
            for name in ("keeper", "router", "sizer"):
                system.start(name)
            system.start("gateway-mt5", service="gateway-mt5")
            await system.wait_ready("keeper", "router", "sizer", "gateway")
            async with OrderMeshClient("s-f", account="mt5-f", url=nats_server.url) as om:
                intent_id = await om.buy("EURUSD", Decimal("0.30"))
                fill = await om.wait(intent_id, timeout=40)
                assert isinstance(fill, OrderFilled), fill
                assert (fill.last_qty, fill.leaves_qty, fill.broker_id) == (Decimal("0.30"), 0, "mt5")

                async def one_position() -> bool:
                    try:
                        reply = await om.positions_reply()
                    except Exception:
                        return False
                    return any(p.symbol == "EURUSD" and p.quantity == Decimal("0.30") for p in reply.positions)

                await eventually(one_position, timeout=30, what="the keeper's position of exactly one order")
                assert (await om.positions_reply()).fills_applied == 1
            out = await check(config, nats_server.url)
            assert out.returncode == 0, out.stdout + out.stderr
            assert "reconciliation with the brokers (mt5):\n  no differences" in out.stdout, out.stdout


async def test_pending_order_filled_while_the_gateway_is_down_is_reported_once(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = Ports(*free_ports())
    account = Account(seed=1)
    account.step = lambda: []  # type: ignore[method-assign]  # the price moves when this test moves it
    account.set_price("EURUSD", Decimal("1.08495"), Decimal("1.08505"))
    sim = sim_for(account, ports)  # in this process, so the test can move the price; the gateway is a process
    await sim.start()
    config = mt5_config(tmp_path / "om.yaml", ports)
    monkeypatch.setitem(harness.SERVICES, "gateway-mt5", ["gateway", "mt5"])
    seen: list[object] = []
    try:
        async with System(nats_server.url, tmp_path, config=config) as system:
            for name in ("keeper", "router", "sizer"):
                system.start(name)
            system.start("gateway-mt5", service="gateway-mt5")
            await system.wait_ready("keeper", "router", "sizer", "gateway")
            async with OrderMeshClient("s-p", url=nats_server.url, on_report=seen.append) as om:
                quotes = asyncio.Event()

                async def on_quote(msg: object) -> None:
                    quotes.set()

                await om.bus.subscribe(om.subjects.md("mt5", "EURUSD"), on_quote)
                step = iter(range(10_000))

                async def quoted() -> bool:  # the EA streams a tick only when the price changes
                    n = Decimal(next(step) % 2).scaleb(-5)
                    account.set_price("EURUSD", Decimal("1.08495") + n, Decimal("1.08505") + n)
                    return quotes.is_set()

                await eventually(quoted, timeout=30, what="quotes from MT5 on the bus (a limit order needs one)")
                intent_id = await om.buy("EURUSD", Decimal("0.10"), limit_price=Decimal("1.08000"))

                async def accepted() -> bool:
                    return any(isinstance(r, OrderAccepted) for r in seen)

                await eventually(accepted, timeout=30, what=f"the limit order working at MT5 ({seen})")
                system.kill("gateway-mt5")  # the gateway is down while the limit fills at MT5
                account.set_price("EURUSD", Decimal("1.07990"), Decimal("1.08000"))
                assert account.positions and not account.orders
                system.start("gateway-mt5", service="gateway-mt5")
                fill = await om.wait(intent_id, timeout=60)
                assert isinstance(fill, OrderFilled), fill
                assert (fill.last_qty, fill.leaves_qty, fill.last_px) == (Decimal("0.10"), 0, Decimal("1.08"))

                async def one_position() -> bool:
                    reply = await om.positions_reply()
                    return any(p.symbol == "EURUSD" and p.quantity == Decimal("0.10") for p in reply.positions)

                await eventually(one_position, timeout=30, what="the keeper's position")
                assert (await om.positions_reply()).fills_applied == 1
                assert len([r for r in seen if isinstance(r, OrderFilled)]) == 1
                assert not any(isinstance(r, OrderCanceled) for r in seen)
            out = await check(config, nats_server.url)
            assert out.returncode == 0, out.stdout + out.stderr
    finally:
        await sim.stop()
