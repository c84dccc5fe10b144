"""The API key and the clock: a key Binance refuses stops placing and says so (health, metric, one log line) until it
is accepted again, distinct from connection trouble; the offset to Binance's clock is measured at connect and on
every heartbeat and applied to signed requests. Real ccxt against the local Binance-compatible server (test hooks
``revoke_key`` / ``restore_key`` and ``skew_clock``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY

from ordermesh.brokers.binance.settings import BinanceSpotSettings
from ordermesh.brokers.binance.spot import BinanceSpotAdapter
from ordermesh.brokers.model import AuthenticationError, BrokerConnectionError, BrokerOrderState
from tests.brokers.binance import test_adapter as spot_t
from tests.brokers.binance import test_futures as fut_t
from tools.binance_server import BinanceServer

D = Decimal
FILLED = BrokerOrderState.FILLED
REFUSED = "Binance refuses the API key: placing stopped until it is accepted again"


@pytest.fixture
async def server() -> AsyncIterator[BinanceServer]:
    s = BinanceServer()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def market(kind: str, server: BinanceServer, broker_id: str, **kw: Any) -> tuple[BinanceSpotAdapter, Any, str]:
    """An adapter of ``kind`` (spot / futures), its order factory and its POST order path on the server."""
    if kind == "spot":
        return spot_t.make_adapter(server, broker_id, **kw), spot_t.place, "order"
    return fut_t.make_adapter(server, broker_id, **kw), fut_t.place, "fapi/v1/order"


def signed(server: BinanceServer, method: str, name: str) -> list[dict[str, str]]:
    return [params for m, n, params in server.sent if (m, n) == (method, name)]


# ----------------------------------------------------------------------------------------- the API key


@pytest.mark.parametrize("kind", ["spot", "futures"])
async def test_a_key_revoked_while_running_stops_placing_and_says_so_until_it_is_accepted_again(
    server: BinanceServer, kind: str
) -> None:
    bid = f"bn-key-{kind}"
    a, place, path = market(kind, server, bid, heartbeat_interval_s=0)
    try:
        await a.connect()
        await a.place_order(place(1, qty="0.01"))  # the key works (ccxt would now take -2015 for a rate limit)
        assert a.connected and sample("ordermesh_broker_authenticated", broker_id=bid) == 1
        server.revoke_key()
        with structlog.testing.capture_logs() as logs:
            with pytest.raises(AuthenticationError) as exc:
                await a.place_order(place(2, qty="0.01"))
            assert not isinstance(exc.value, BrokerConnectionError)  # refused, not an unknown outcome
            assert (exc.value.code, exc.value.message) == ("-2015", "Invalid API-key, IP, or permissions for action.")
            assert a.connected is False  # the gateway's health and heartbeat say the broker cannot be used
            assert sample("ordermesh_broker_authenticated", broker_id=bid) == 0
            assert sample("ordermesh_broker_connected", broker_id=bid) == 1  # Binance answers: no connection trouble
            sent = server.count_requests("POST", path)
            with pytest.raises(AuthenticationError, match="placing stopped"):
                await a.place_order(place(3, qty="0.01"))
            assert server.count_requests("POST", path) == sent  # nothing placed while the key is refused
            assert await a.poll_working() == []
            assert await a.heartbeat() is False
        assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] == [REFUSED]
        assert a.backoffs == []  # never taken for a rate limit
        server.restore_key()
        with structlog.testing.capture_logs() as logs:
            assert await a.heartbeat() is True
        assert [e["event"] for e in logs if e["log_level"] == "info"][:1] == [
            "Binance accepts the API key again; placing resumed"
        ]
        assert a.connected and sample("ordermesh_broker_authenticated", broker_id=bid) == 1
        assert (await a.place_order(place(3, qty="0.01"))).state is FILLED
    finally:
        await a.close()


@pytest.mark.parametrize("kind", ["spot", "futures"])
async def test_a_key_refused_from_the_start_is_an_authentication_failure_too(server: BinanceServer, kind: str) -> None:
    bid = f"bn-key-start-{kind}"
    a, place, path = market(kind, server, bid, api_key="revoked-key", heartbeat_interval_s=0)
    try:
        await a.connect()  # markets load (public); the reconciliation and the futures settings are refused
        assert a.connected is False and sample("ordermesh_broker_authenticated", broker_id=bid) == 0
        with pytest.raises(AuthenticationError, match="placing stopped"):
            await a.place_order(place(1, qty="0.01"))
        assert server.count_requests("POST", path) == 0
        assert await a.heartbeat() is False
    finally:
        await a.close()


# ----------------------------------------------------------------------------------------- the clock


@pytest.mark.parametrize("kind", ["spot", "futures"])
async def test_a_local_clock_3s_ahead_is_measured_at_connect_and_signed_requests_pass(
    server: BinanceServer, kind: str
) -> None:
    bid = f"bn-clock-{kind}"
    server.skew_clock(-3000)  # Binance's clock 3 s behind ours: our raw timestamps are 3 s in its future
    a, place, path = market(kind, server, bid, heartbeat_interval_s=0, clock_offset_warn_ms=1000)
    try:
        with structlog.testing.capture_logs() as logs:
            await a.connect()
        assert a.clock_offset_ms == pytest.approx(-3000, abs=300)
        assert sample("ordermesh_broker_clock_offset_seconds", broker_id=bid) == pytest.approx(-3.0, abs=0.3)
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
            "clock differs from Binance's by more than the bound; signed requests use Binance's time"
        ]
        order = await a.place_order(place(1, qty="0.01"))
        assert order.state is FILLED
        (params,) = signed(server, "POST", path)
        assert abs(int(params["timestamp"]) - server.now_ms()) < 1000 and params["recvWindow"] == "5000"
        assert server.count_requests("POST", path) == 1
    finally:
        await a.close()


async def test_each_heartbeat_measures_the_offset_and_a_timestamp_refusal_measures_it_again_once(
    server: BinanceServer,
) -> None:
    a = spot_t.make_adapter(server, "bn-clock-beat", heartbeat_interval_s=0, recv_window_ms=7000)
    try:
        await a.connect()
        assert abs(a.clock_offset_ms or 0) < 1000
        server.skew_clock(-4000)
        assert await a.heartbeat() is True
        assert a.clock_offset_ms == pytest.approx(-4000, abs=300)
        assert sample("ordermesh_broker_clock_offset_seconds", broker_id="bn-clock-beat") == pytest.approx(
            -4.0, abs=0.3
        )
        server.skew_clock(9000)  # the clock jumps between heartbeats: our timestamp is now 9 s old (> 7000 ms)
        order = await a.place_order(spot_t.place(1, qty="0.01"))
        assert order.state is FILLED and len(server.orders) == 1
        assert server.count_requests("POST", "order") == 2  # refused for its timestamp (-1021), sent again once
        assert a.clock_offset_ms == pytest.approx(9000, abs=300)
        assert [p["recvWindow"] for p in signed(server, "POST", "order")] == ["7000", "7000"]
    finally:
        await a.close()


def test_recv_window_is_a_setting_within_binances_bound() -> None:
    assert BinanceSpotSettings(recv_window=60000).recv_window == 60000
    with pytest.raises(ValueError, match="recv_window"):
        BinanceSpotSettings(recv_window=60001)  # Binance: "The max cannot go beyond 60,000"
    with pytest.raises(ValueError, match="recv_window"):
        BinanceSpotSettings(recv_window=0)
    assert BinanceSpotSettings(clock_offset_warn_ms=250).clock_offset_warn_ms == 250


async def test_an_order_of_unknown_outcome_stays_unknown_while_the_key_is_refused(server: BinanceServer) -> None:
    a = spot_t.make_adapter(server, "bn-key-unknown", heartbeat_interval_s=0)
    try:
        await a.connect()
        cmd = spot_t.place(1, qty="0.01")
        server.hold_next("order")  # placed, its answer held past the client's timeout
        with pytest.raises(BrokerConnectionError):
            await a.place_order(cmd)
        server.release()
        server.revoke_key()
        with pytest.raises(BrokerConnectionError, match="outcome unknown"):  # not looked up: never a rejection
            await a.place_order(cmd)
        server.restore_key()
        found = await a.place_order(cmd)  # looked up now: the order placed the first time
        assert found.state is FILLED and server.count_requests("POST", "order") == 1
    finally:
        await a.close()
