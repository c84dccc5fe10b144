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
