"""The SDK's own behaviour (the order path through it is in tests/system)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ordermesh.platform.bus import Bus
from ordermesh.platform.natsserver import NatsServer
from ordermesh.sdk import OrderMeshClient


@pytest.mark.parametrize("how", ["environment", "config file"])
async def test_the_client_reads_the_same_configuration_as_the_services(
    nats_server: NatsServer, bus: Bus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Used as the README shows it (no url, no config), the client connects where the services do."""
    monkeypatch.setenv("ORDERMESH__NATS__CONNECT_TIMEOUT_S", "0.5")
    if how == "environment":
        monkeypatch.setenv("ORDERMESH__NATS__URL", nats_server.url)
    else:
        path = tmp_path / "om.yaml"
        path.write_text(f"nats:\n  url: {nats_server.url}\naccounts:\n  acct-9: {{}}\n")
        monkeypatch.setenv("ORDERMESH_CONFIG", str(path))
    async with OrderMeshClient("s-config") as om:
        assert om.bus.settings.url == nats_server.url
        assert om.bus.connected


def test_the_kill_switch_flattens_the_account_net_with_reduce_only_parts_booked_to_its_holders() -> None:
    from decimal import Decimal as D

    from ordermesh.contract.wire import Position
    from ordermesh.sdk import _flatten_plan

    def pos(strategy: str, symbol: str, qty: str, ticket: str | None = None) -> Position:
        return Position(account="a", symbol=symbol, quantity=D(qty), avg_price=D(1), strategy_id=strategy,
                        position_id=ticket)  # fmt: skip

    plan = _flatten_plan([
        pos("s1", "EURUSD", "0.30"), pos("s2", "EURUSD", "0.10"), pos("s3", "EURUSD", "-0.25"),  # net +0.15
        pos("s1", "GBPUSD", "0.10"), pos("s2", "GBPUSD", "-0.10"),  # net 0: nothing to send
        pos("s4", "USDJPY", "-0.05"),
        pos("s5", "XAUUSD", "1", ticket="77"),  # a hedging ticket: closed in full, by its id
    ])  # fmt: skip
    assert [(p.strategy_id, p.symbol, p.quantity, p.position_id) for p in plan] == [
        ("s1", "EURUSD", D("0.15"), None),  # the largest holder of the net's side first, only what the net needs
        ("s4", "USDJPY", D("-0.05"), None),
        ("s5", "XAUUSD", D("1"), "77"),
    ]
