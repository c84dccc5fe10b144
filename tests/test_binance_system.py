"""End-to-end with Binance: intents for BTC/USDT and BTC/USDT:USDT routed to Binance spot and USD-M gateways
(``ordermesh gateway <id>``, real OS processes) in front of the local Binance-compatible server, end as fills and
keeper positions."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from ordermesh.natsserver import NatsServer
from ordermesh.sdk import OrderMeshClient
from ordermesh.wire import OrderFilled
from tests import harness
from tests.binance_server import BinanceServer
from tests.harness import System, eventually


async def test_spot_and_futures_intents_fill_at_binance_and_become_positions(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = BinanceServer()
    await server.start()
    instruments = tmp_path / "instruments.yaml"
    spec = (
        '{kind: crypto_linear, base_currency: BTC, quote_currency: USDT, pip_size: "0.01", contract_size: "1", '
        'lot_step: "0.00001", min_lot: "0.00001", max_lot: "100", leverage: "1", margin_rate: "1"}'
    )
    instruments.write_text(f"instruments:\n  'BTC/USDT': {spec}\n  'BTC/USDT:USDT': {spec}\n")
    config = tmp_path / "om.yaml"
    config.write_text(
        f"sizer:\n  instruments_file: {instruments}\n"
        "router:\n  default_broker: bn\n  routes:\n    - {broker: usdm, symbols: 'BTC/USDT:USDT'}\n"
        "brokers:\n  paper:\n    type: paper\n"
        "  bn:\n    type: binance_spot\n    api_key: ${BN_KEY}\n    api_secret: ${BN_SECRET}\n"
        f"    base_url: {server.url}\n    poll_interval_ms: 200\n"
        "  usdm:\n    type: binance_usdm\n    api_key: ${BN_KEY}\n    api_secret: ${BN_SECRET}\n"
        f"    base_url: {server.url}\n    poll_interval_ms: 200\n"
    )
    monkeypatch.setitem(harness.SERVICES, "gateway-bn", ["gateway", "bn"])
    monkeypatch.setitem(harness.SERVICES, "gateway-usdm", ["gateway", "usdm"])
    env = {"BN_KEY": server.api_key, "BN_SECRET": server.api_secret}
    try:
        async with System(nats_server.url, tmp_path, config=config, env=env) as system:
            for name in ("keeper", "router", "sizer"):
                system.start(name)
            system.start("gateway-bn", service="gateway-bn")
            system.start("gateway-usdm", service="gateway-usdm")
            await system.wait_ready("keeper", "router", "sizer", "gateway")
            async with OrderMeshClient("s-bn", url=nats_server.url) as om:
                spot = await om.wait(await om.buy("BTC/USDT", Decimal("0.01")), timeout=30)
                assert isinstance(spot, OrderFilled), spot
                assert (spot.broker_id, spot.symbol, spot.last_qty, spot.last_px) == (
                    "bn", "BTC/USDT", Decimal("0.01"), Decimal("50001"),
                )  # fmt: skip
                assert (spot.commission, spot.commission_asset) == (Decimal("0.00001"), "BTC")
                fut = await om.wait(await om.buy("BTC/USDT:USDT", Decimal("0.01")), timeout=30)
                assert isinstance(fut, OrderFilled), fut
                assert (fut.broker_id, fut.last_qty, fut.last_px) == ("usdm", Decimal("0.01"), Decimal("50001"))
                assert (fut.commission, fut.commission_asset) == (Decimal("0.200004"), "USDT")  # 0.04 % taker

                async def positions() -> bool:
                    try:
                        reply = await om.positions_reply()
                    except Exception:
                        return False
                    held = {(p.symbol, p.quantity) for p in reply.positions}
                    # spot: the BTC commission (0.1 % of 0.01) is taken from what was bought
                    return {("BTC/USDT", Decimal("0.00999")), ("BTC/USDT:USDT", Decimal("0.01"))} <= held

                await eventually(positions, timeout=30, what="keeper positions BTC/USDT and BTC/USDT:USDT")
        assert len(server.orders) == 1 and len(server.futures.orders) == 1
    finally:
        await server.stop()
