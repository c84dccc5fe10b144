"""End-to-end with Binance: intents for BTC/USDT and BTC/USDT:USDT routed to Binance spot and USD-M gateways
(``ordermesh gateway <id>``, real OS processes) in front of the local Binance-compatible server, end as fills and
keeper positions."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from nats.js.errors import KeyNotFoundError

from ordermesh.contract.ids import client_order_id
from ordermesh.contract.subjects import KV_INSTRUMENTS, KV_ORDERS, kv_key
from ordermesh.contract.wire import OrderFilled, OrderRejected
from ordermesh.platform.natsserver import NatsServer
from ordermesh.routing.orders import OrderRecord
from ordermesh.sdk import OrderMeshClient
from ordermesh.sizing.instruments import decode_override, instrument_key
from tests import harness
from tests.harness import System, eventually
from tools.binance_server import BinanceServer


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


async def test_futures_gateway_killed_with_a_resting_order_reports_its_fill_after_restart_and_protects_fills(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real gateway process SIGKILLed with a resting order that fills while it is down: the restarted gateway
    resumes the order (KV om_gateway) and reports the fill once. Then an intent with a stop-loss and take-profit:
    its protective orders are venue orders the router records as children, and the take-profit closes the
    position. The gateway also reports the market's specs to om_instruments."""
    server = BinanceServer()
    await server.start()
    instruments = tmp_path / "instruments.yaml"
    instruments.write_text(
        "instruments:\n  'BTC/USDT:USDT': {kind: crypto_linear, base_currency: BTC, quote_currency: USDT, "
        'pip_size: "0.1", contract_size: "1"}\n'
    )
    config = tmp_path / "om.yaml"
    config.write_text(
        f"sizer:\n  instruments_file: {instruments}\n"
        "router:\n  default_broker: usdm\n"
        "brokers:\n  paper:\n    type: paper\n"
        "  usdm:\n    type: binance_usdm\n    api_key: ${BN_KEY}\n    api_secret: ${BN_SECRET}\n"
        f"    base_url: {server.url}\n    poll_interval_ms: 100\n    symbols: ['BTC/USDT:USDT']\n"
        "    leverage: {'BTC/USDT:USDT': 10}\n"
    )
    monkeypatch.setitem(harness.SERVICES, "gateway-usdm", ["gateway", "usdm"])
    env = {"BN_KEY": server.api_key, "BN_SECRET": server.api_secret}
    sym = "BTC/USDT:USDT"
    try:
        async with System(nats_server.url, tmp_path, config=config, env=env) as system:
            for name in ("keeper", "router", "sizer"):
                system.start(name)
            system.start("gateway-usdm", service="gateway-usdm")
            await system.wait_ready("keeper", "router", "sizer", "gateway")
            async with OrderMeshClient("s-bn", url=nats_server.url) as om:
                report = decode_override(
                    (await (await om.bus.kv(KV_INSTRUMENTS)).get(instrument_key("usdm", sym))).value
                )
                assert (report.tick_size, report.lot_step, report.min_notional, report.leverage) == (
                    Decimal("0.1"), Decimal("0.001"), Decimal("100"), Decimal("10"),
                )  # fmt: skip

                resting = await om.buy(sym, Decimal("0.02"), limit_price=Decimal("49000"))

                async def placed() -> bool:
                    record = await om.order(resting)
                    return record is not None and record.status.value == "ACCEPTED"

                await eventually(placed, timeout=30, what="the resting order accepted")
                system.kill("gateway-usdm")  # SIGKILL
                (order,) = [o for o in server.futures.orders.values() if o.open]
                server.futures.fill(order.order_id, Decimal("0.02"))  # fills while no gateway runs
                system.start("gateway-usdm", service="gateway-usdm")
                filled = await om.wait(resting, timeout=30)
                assert isinstance(filled, OrderFilled), filled
                assert (filled.last_qty, filled.last_px, filled.cum_qty) == (
                    Decimal("0.02"), Decimal("49000"), Decimal("0.02"),
                )  # fmt: skip

                protected = await om.buy(sym, Decimal("0.01"), stop_loss=Decimal("48000"), take_profit=Decimal("51000"))
                entry = await om.wait(protected, timeout=30)
                assert isinstance(entry, OrderFilled), entry
                parent = client_order_id(om.account, protected)
                orders_kv = await om.bus.kv(KV_ORDERS)

                async def child(kind: str, status: str) -> bool:
                    try:
                        entry = await orders_kv.get(kv_key(f"{parent}-{kind}"))
                    except KeyNotFoundError:
                        return False
                    rec = msgspec.msgpack.decode(entry.value, type=OrderRecord)
                    return rec.parent_client_order_id == parent and rec.status.value == status

                await eventually(lambda: child("sl", "ACCEPTED"), timeout=30, what="stop-loss child recorded")
                await eventually(lambda: child("tp", "ACCEPTED"), timeout=30, what="take-profit child recorded")
                server.futures.set_mark_price("BTCUSDT", Decimal("51100"))
                await eventually(lambda: child("tp", "FILLED"), timeout=30, what="take-profit filled")
                await eventually(lambda: child("sl", "CANCELED"), timeout=30, what="stop-loss canceled")

                async def position() -> bool:
                    try:
                        reply = await om.positions_reply()
                    except Exception:
                        return False
                    return {(p.symbol, p.quantity) for p in reply.positions if p.quantity} == {(sym, Decimal("0.02"))}

                await eventually(position, timeout=30, what="0.02 held after the take-profit closed 0.01")
        fills = [t for t in server.futures.trades if t["orderId"] == order.order_id]
        assert len(fills) == 1  # nothing placed twice: the resting order, the entry, the take-profit's placed order
        assert len(server.futures.orders) == 3
        views = [server.futures.algo_view(a) for a in server.futures.algos.values()]
        assert sorted((v["clientAlgoId"], v["algoStatus"]) for v in views) == [
            (f"{parent}-sl", "CANCELED"), (f"{parent}-tp", "FINISHED"),
        ]  # fmt: skip
    finally:
        await server.stop()


def _single_broker_config(tmp_path: Path, server: BinanceServer, kind: str, symbol: str) -> Path:
    """One Binance gateway (``bn``) behind the router, the instruments file fine enough for any quantity to pass
    the sizer (the venue's own step decides)."""
    instruments = tmp_path / "instruments.yaml"
    instruments.write_text(
        f"instruments:\n  '{symbol}': {{kind: crypto_linear, base_currency: BTC, quote_currency: USDT, "
        'pip_size: "0.01", contract_size: "1", lot_step: "0.000001", min_lot: "0.000001", max_lot: "100", '
        'leverage: "1", margin_rate: "1"}\n'
    )
    config = tmp_path / "om.yaml"
    config.write_text(
        f"sizer:\n  instruments_file: {instruments}\n"
        "router:\n  default_broker: bn\n"
        "brokers:\n  paper:\n    type: paper\n"
        f"  bn:\n    type: {kind}\n    api_key: ${{BN_KEY}}\n    api_secret: ${{BN_SECRET}}\n"
        f"    base_url: {server.url}\n    poll_interval_ms: 200\n"
    )
    return config


async def test_a_quantity_below_the_venues_step_ends_as_order_rejected_with_the_reason_within_seconds(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = BinanceServer()
    await server.start()
    config = _single_broker_config(tmp_path, server, "binance_spot", "BTC/USDT")
    monkeypatch.setitem(harness.SERVICES, "gateway-bn", ["gateway", "bn"])
    env = {"BN_KEY": server.api_key, "BN_SECRET": server.api_secret}
    try:
        async with System(nats_server.url, tmp_path, config=config, env=env) as system:
            for name in ("keeper", "router", "sizer"):
                system.start(name)
            system.start("gateway-bn", service="gateway-bn")
            await system.wait_ready("keeper", "router", "sizer", "gateway")
            async with OrderMeshClient("s-bn", url=nats_server.url) as om:
                loop = asyncio.get_running_loop()
                started = loop.time()
                report = await om.wait(await om.buy("BTC/USDT", Decimal("0.000004")), timeout=10)
                assert loop.time() - started < 10
                assert isinstance(report, OrderRejected), report
                assert "Filter failure: LOT_SIZE" in report.reason and "0.000004" in report.reason, report.reason
                ok = await om.wait(await om.buy("BTC/USDT", Decimal("0.0001")), timeout=30)  # the gateway goes on
                assert isinstance(ok, OrderFilled), ok
        assert server.count_requests("POST", "order") == 1  # the refused quantity was never sent
    finally:
        await server.stop()


async def test_a_fill_the_trade_list_shows_late_reaches_the_keeper_exactly_once(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = BinanceServer()
    await server.start()
    sym = "BTC/USDT:USDT"
    config = _single_broker_config(tmp_path, server, "binance_usdm", sym)
    monkeypatch.setitem(harness.SERVICES, "gateway-bn", ["gateway", "bn"])
    env = {"BN_KEY": server.api_key, "BN_SECRET": server.api_secret}
    try:
        async with System(nats_server.url, tmp_path, config=config, env=env) as system:
            for name in ("keeper", "router", "sizer"):
                system.start(name)
            system.start("gateway-bn", service="gateway-bn")
            await system.wait_ready("keeper", "router", "sizer", "gateway")
            server.lag_trades(seconds=1.5)  # userTrades lists each trade 1.5 s after the order answered FILLED
            async with OrderMeshClient("s-bn", url=nats_server.url) as om:
                intent = await om.buy(sym, Decimal("0.01"))
                filled = await om.wait(intent, timeout=30)
                assert isinstance(filled, OrderFilled), filled
                (trade,) = server.futures.trades
                assert (filled.fill_id, filled.last_qty, filled.cum_qty, filled.last_px) == (
                    str(trade["id"]), Decimal("0.01"), Decimal("0.01"), Decimal("50001"),
                )  # fmt: skip

                async def booked_once() -> bool:
                    record = await om.order(intent)
                    try:
                        reply = await om.positions_reply()
                    except Exception:
                        return False
                    held = {(p.symbol, p.quantity) for p in reply.positions if p.quantity}
                    return (
                        record is not None
                        and record.fill_ids == [str(trade["id"])]
                        and held == {(sym, Decimal("0.01"))}
                    )

                await eventually(booked_once, timeout=30, what="the late fill booked once by the router and keeper")
        (order,) = server.futures.orders.values()
        assert order.status == "FILLED" and len(server.futures.trades) == 1
    finally:
        await server.stop()
