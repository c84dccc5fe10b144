"""End-to-end with MT5: an intent for EURUSD routed to an MT5 gateway (``ordermesh gateway mt5``) in front of the
bridge simulator (``ordermesh mt5-sim``), both real OS processes, ends as a fill and a keeper position."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from ordermesh.contract.wire import OrderFilled
from ordermesh.platform.natsserver import NatsServer
from ordermesh.sdk import OrderMeshClient
from tests import harness
from tests.harness import ROOT, System, eventually
from tests.mt5util import free_ports


async def test_eurusd_intent_fills_at_mt5_and_becomes_a_position(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cmd, data, live, events = free_ports()
    config = tmp_path / "om.yaml"
    config.write_text(
        "router:\n  default_broker: mt5\n"
        "brokers:\n  paper:\n    type: paper\n  mt5:\n    type: mt5\n"
        f"    command_port: {cmd}\n    data_port: {data}\n    live_port: {live}\n    events_port: ${{MT5_EVENTS}}\n"
        "    heartbeat_interval_ms: 200\n"
    )
    monkeypatch.setitem(harness.SERVICES, "gateway-mt5", ["gateway", "mt5"])
    sim_log = open(tmp_path / "mt5-sim.log", "ab")  # noqa: SIM115
    sim = subprocess.Popen(  # noqa: ASYNC220 - started once, before the loop has work
        [sys.executable, "-m", "services.cli", "mt5-sim", "--command-port", str(cmd), "--data-port", str(data),
         "--live-port", str(live), "--events-port", str(events)],
        stdout=sim_log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    try:
        async with System(nats_server.url, tmp_path, config=config, env={"MT5_EVENTS": str(events)}) as system:
            for name in ("keeper", "router", "sizer"):
                system.start(name)
            system.start("gateway-mt5", service="gateway-mt5")
            await system.wait_ready("keeper", "router", "sizer", "gateway")
            async with OrderMeshClient("s-mt5", url=nats_server.url) as om:
                intent_id = await om.buy("EURUSD", Decimal("0.20"))
                fill = await om.wait(intent_id, timeout=30)
                assert isinstance(fill, OrderFilled), fill
                assert (fill.broker_id, fill.symbol, fill.last_qty, fill.leaves_qty) == ("mt5", "EURUSD",
                                                                                        Decimal("0.2"), 0)  # fmt: skip
                assert fill.fill_id == f"o{fill.broker_order_id}"  # the stock EA returns no deal ticket

                async def position() -> bool:
                    try:
                        reply = await om.positions_reply()
                    except Exception:
                        return False
                    return any(p.symbol == "EURUSD" and p.quantity == Decimal("0.2") for p in reply.positions)

                await eventually(position, timeout=30, what="keeper position EURUSD 0.2")

                # the operator's view of what gateways could not resolve: the MT5 gateway answers, nothing open
                out = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "services.cli", "--nats", nats_server.url, "--config", str(config),
                     "orders", "--unknown"],
                    capture_output=True, text=True, timeout=30, cwd=ROOT,
                )  # fmt: skip
                assert out.returncode == 0, out.stderr
                assert out.stdout.splitlines()[-1] == "0 unresolved"
                assert "no gateway answered" not in out.stdout.split("paper")[0]
    finally:
        sim.terminate()
        sim.wait(15)
        sim_log.close()


async def test_gateway_sigkilled_between_trade_and_reply_never_places_twice(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The EA executes the TRADE but its reply never arrives; the gateway process is SIGKILLed while it waits. The
    restarted gateway gets the command again and must find the order at MT5 (its ticket map is in KV, the deal in
    HISTORY), not send a second TRADE: the position is one order's, and the intent ends with one fill."""
    cmd, data, live, events = free_ports()
    config = tmp_path / "om.yaml"
    config.write_text(
        "router:\n  default_broker: mt5\n"
        "brokers:\n  paper:\n    type: paper\n  mt5:\n    type: mt5\n"
        f"    command_port: {cmd}\n    data_port: {data}\n    live_port: {live}\n    events_port: {events}\n"
        "    heartbeat_interval_ms: 200\n"
    )
    monkeypatch.setitem(harness.SERVICES, "gateway-mt5", ["gateway", "mt5"])
    sim_log_path = tmp_path / "mt5-sim.log"
    sim_log = open(sim_log_path, "ab")  # noqa: SIM115
    sim = subprocess.Popen(  # noqa: ASYNC220 - started once, before the loop has work
        [sys.executable, "-m", "services.cli", "mt5-sim", "--command-port", str(cmd), "--data-port", str(data),
         "--live-port", str(live), "--events-port", str(events), "--drop-trade-replies", "1"],
        stdout=sim_log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    try:
        async with System(nats_server.url, tmp_path, config=config) as system:
            for name in ("keeper", "router", "sizer"):
                system.start(name)
            system.start("gateway-mt5", service="gateway-mt5")
            await system.wait_ready("keeper", "router", "sizer", "gateway")
            async with OrderMeshClient("s-kill", url=nats_server.url) as om:
                intent_id = await om.buy("EURUSD", Decimal("0.30"))

                async def withheld() -> bool:
                    return "reply withheld" in sim_log_path.read_text(errors="replace")

                await eventually(
                    withheld, timeout=30, what="the simulator executing the TRADE and withholding the reply"
                )
                system.kill("gateway-mt5")  # SIGKILL while it waits for the reply
                system.start("gateway-mt5", service="gateway-mt5")
                fill = await om.wait(intent_id, timeout=40)
                assert isinstance(fill, OrderFilled), fill
                assert (fill.last_qty, fill.leaves_qty, fill.broker_id) == (Decimal("0.30"), 0, "mt5")

                async def one_order_position() -> bool:
                    try:
                        reply = await om.positions_reply()
                    except Exception:
                        return False
                    return any(p.symbol == "EURUSD" and p.quantity == Decimal("0.30") for p in reply.positions)

                await eventually(one_order_position, timeout=30, what="the position of exactly one order")
                reply = await om.positions_reply()
                assert reply.fills_applied == 1
                assert sim_log_path.read_text(errors="replace").count("reply withheld") == 1
    finally:
        sim.terminate()
        sim.wait(15)
        sim_log.close()
