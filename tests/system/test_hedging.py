"""End-to-end close-all on a hedging MT5 account: the bridge simulator (``ordermesh mt5-sim --hedging``), an MT5
gateway, a keeper keeping that account per ticket, router and sizer, all real OS processes. Two EURUSD tickets are
opened through the SDK, a long and a short; ``close_all_positions`` closes each ticket by its id. Closing one of
them alone moves the account's net away from zero: the router's reduce-only rule checks a ticket close against the
ticket (``position_id``), not against the net."""

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
from tests.mt5util import free_ports, mt5_config, mt5_sim_process
from tools.mt5sim.server import Ports

D = Decimal


async def test_close_all_closes_every_hedging_ticket_by_its_id(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = Ports(*free_ports())
    config = mt5_config(
        tmp_path / "om.yaml", ports, accounts="accounts:\n  mt5-h:\n    mode: hedging\n", broker="    hedging: true\n"
    )
    monkeypatch.setitem(harness.SERVICES, "gateway-mt5", ["gateway", "mt5"])
    with mt5_sim_process(tmp_path / "mt5-sim.log", ports, "--hedging"):
        async with System(nats_server.url, tmp_path, config=config) as system:
            for name in ("keeper", "router", "sizer"):
                system.start(name)
            system.start("gateway-mt5", service="gateway-mt5")
            await system.wait_ready("keeper", "router", "sizer", "gateway")
            async with OrderMeshClient("s-hedge", account="mt5-h", url=nats_server.url) as om:
                tickets: dict[str, Decimal] = {}
                for side, qty in (("buy", D("0.30")), ("sell", D("0.10"))):
                    intent_id = await getattr(om, side)("EURUSD", qty)
                    fill = await om.wait(intent_id, timeout=30)
                    assert isinstance(fill, OrderFilled), fill
                    # MT5 names the position after the order that opened it
                    assert fill.position_id == fill.broker_order_id and fill.last_qty == qty
                    tickets[fill.position_id] = qty if side == "buy" else -qty

                async def two_tickets() -> bool:
                    held = await om.positions(account="mt5-h")
                    return {p.position_id: p.quantity for p in held} == tickets

                await eventually(two_tickets, timeout=30, what="two keeper tickets")
                assert len(tickets) == 2

                report = await om.close_all_positions("mt5-h", timeout=20)
                assert report.flat, report
                got = sorted((o.position_id, o.symbol, o.quantity, o.status, o.remaining) for o in report.outcomes)
                assert got == sorted((pid, "EURUSD", q, "closed", D(0)) for pid, q in tickets.items())
                assert await om.positions(account="mt5-h") == []
                reply = await om.positions_reply(account="mt5-h", by_strategy=True)
                assert [p for p in reply.positions if p.quantity != 0] == []

            out = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "services.cli", "--nats", nats_server.url, "--config", str(config),
                 "positions", "--account", "mt5-h", "--check"],
                capture_output=True, text=True, timeout=30, cwd=ROOT,
            )  # fmt: skip
            assert out.returncode == 0, out.stdout + out.stderr
            assert "no positions" in out.stdout and "no differences" in out.stdout
            # `--check` compared the keeper's (empty) books with the positions the gateway read from the terminal:
            # no differences means the terminal holds no position either. (The EA serves one client, so the test
            # does not connect a second one beside the gateway.)
