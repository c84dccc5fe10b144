"""The router through the running system: trading states, cancels, restart, registry reload."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import msgspec

from ordermesh.brokers.registry import ADAPTER_TYPES
from ordermesh.contract.codec import decode_any
from ordermesh.contract.ids import client_order_id
from ordermesh.contract.wire import (
    CancelAll,
    CancelRequest,
    ControlReply,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderStatus,
    RegistryReload,
    SetTradingState,
    Side,
    TradingState,
    TradingStateQuery,
)
from ordermesh.platform.natsserver import NatsServer
from ordermesh.routing.orders import OrderRecord
from ordermesh.sdk import OrderMeshClient
from tests.harness import ROOT, System, eventually

D = Decimal
#: Far enough below the market never to fill during a test, inside the 5 % price collar.
RESTING_BUY = D("1.06000")


async def control(om: OrderMeshClient, name: str, msg: object) -> ControlReply:
    reply = decode_any(await om.bus.request(om.subjects.ctl(name), msg, timeout=10))  # type: ignore[arg-type]
    assert isinstance(reply, ControlReply)
    return reply


async def test_halt_reduce_resume_through_the_running_system(nats_server: NatsServer, tmp_path: Path) -> None:
    async with System(nats_server.url, tmp_path) as system:
        await system.start_all()
        async with OrderMeshClient("s-halt", url=nats_server.url) as om:
            opened = await om.buy("EURUSD", D("1.00"))
            assert isinstance(await om.wait(opened), OrderFilled)

            reply = await control(om, "trading", SetTradingState(state=TradingState.HALTED, account="paper-1"))
            assert reply.ok and "account paper-1 is now HALTED" in reply.detail
            denied = await om.wait(await om.sell("EURUSD", D("0.50")))
            assert isinstance(denied, OrderDenied)
            assert denied.reason == "TRADING_STATE: trading is HALTED (account paper-1)"

            reply = await control(om, "trading", SetTradingState(state=TradingState.REDUCING, account="paper-1"))
            assert reply.ok
            # closing part of the long passes; opening more, or flipping, does not
            assert isinstance(await om.wait(await om.sell("EURUSD", D("0.50"))), OrderFilled)
            more = await om.wait(await om.buy("EURUSD", D("0.10")))
            flip = await om.wait(await om.sell("EURUSD", D("0.60")))
            for refused in (more, flip):
                assert isinstance(refused, OrderDenied)
                assert refused.reason == (
                    "TRADING_STATE: trading is REDUCING (account paper-1): only orders that reduce the "
                    "EURUSD position pass"
                )
            assert isinstance(await om.wait(await om.sell("EURUSD", D("0.50"))), OrderFilled)  # flat

            # the state is persisted: a restarted router still refuses
            await control(
                om, "trading", SetTradingState(state=TradingState.HALTED, strategy_id="s-halt", account="paper-1")
            )
            await control(om, "trading", SetTradingState(state=TradingState.ACTIVE, account="paper-1"))
            system.kill("router")
            system.start("router")
            await system.wait_ready("router")
            again = await om.wait(await om.buy("EURUSD", D("0.10")), timeout=20)
            assert (
                isinstance(again, OrderDenied) and again.reason == "TRADING_STATE: trading is HALTED (strategy s-halt)"
            )
            await control(
                om, "trading", SetTradingState(state=TradingState.ACTIVE, strategy_id="s-halt", account="paper-1")
            )
            assert isinstance(await om.wait(await om.buy("EURUSD", D("0.10"))), OrderFilled)


async def test_cancel_one_and_cancel_all(nats_server: NatsServer, tmp_path: Path) -> None:
    async with System(nats_server.url, tmp_path) as system:
        await system.start_all()
        async with OrderMeshClient("s-cancel", url=nats_server.url) as om:
            await market_live(om)
            ids = [await om.buy("EURUSD", D("0.10"), limit_price=RESTING_BUY) for _ in range(3)]
            for i in ids:
                await eventually(lambda i=i: _status_is(om, i, OrderStatus.ACCEPTED), what="order accepted")
            listing = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "services.cli", "--nats", nats_server.url, "orders"],
                capture_output=True, text=True, timeout=30, cwd=ROOT,
            )  # fmt: skip
            assert listing.returncode == 0, listing.stderr
            lines = listing.stdout.splitlines()
            assert lines[-1] == "3 open orders"
            assert lines[0].split() == ["client", "order", "id", "account", "strategy", "broker", "side", "quantity",
                                        "symbol", "limit", "status", "filled", "avg", "price"]  # fmt: skip
            rows = lines[2:-1]
            assert len(rows) == 3
            assert all(
                re.search(r"s-cancel\s+paper\s+BUY\s+0\.10\s+EURUSD\s+1\.06000\s+ACCEPTED\s+0\.00\s+-$", row)
                for row in rows
            ), rows
            # the paper venue stores its orders with their commands: the gateway keeps no second copy
            assert await _keys(om, "om_gateway") == []
            reply = await om.cancel(ids[0])  # the SDK's way; `ordermesh cancel` sends the same request
            assert reply.ok, reply.detail
            first = await om.wait(ids[0])
            assert isinstance(first, OrderCanceled) and first.reason == "canceled on request"
            reply = await control(om, "cancel_all", CancelAll(account="paper-1"))
            assert reply.ok and reply.detail == "2 cancel(s) sent"
            for i in ids[1:]:
                assert isinstance(await om.wait(i), OrderCanceled)
            # canceling a finished order says so
            reply = await control(
                om, "cancel", CancelRequest(account="paper-1", strategy_id="s-cancel", intent_id=ids[0])
            )
            assert not reply.ok and reply.detail.endswith("is already CANCELED")
            for i in ids:
                await eventually(lambda i=i: _status_is(om, i, OrderStatus.CANCELED), what="order record canceled")


async def market_live(om: OrderMeshClient, symbol: str = "EURUSD") -> None:
    """Wait for a quote: the router checks limit prices against the last one (no quote, no limit order)."""
    got = asyncio.Event()

    async def on(_: object) -> None:
        got.set()

    sub = await om.bus.subscribe(om.subjects.md("paper", symbol), on)
    await asyncio.wait_for(got.wait(), 10)
    await sub.unsubscribe()


async def _status_is(om: OrderMeshClient, intent_id: str, status: OrderStatus) -> bool:
    rec = await om.order(intent_id)
    return rec is not None and rec.status is status


async def test_router_killed_mid_stream_continues_with_the_same_order_states(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    config = tmp_path / "om.yaml"
    config.write_text("accounts:\n  paper-1: {}\n  paper-2: {}\nrisk:\n  paper-2:\n    max_open_orders: 5\n")
    async with System(nats_server.url, tmp_path, config=config) as system:
        await system.start_all()
        async with (
            OrderMeshClient("s-rest", account="paper-2", url=nats_server.url) as rest,
            OrderMeshClient("s-restart", url=nats_server.url) as om,
        ):
            await market_live(om)
            resting = [await rest.buy("EURUSD", D("0.10"), limit_price=RESTING_BUY) for _ in range(5)]
            market = [
                await om.submit(om.intent(Side.BUY if n % 2 else Side.SELL, "EURUSD", D("0.10"))) for n in range(40)
            ]
            await eventually(lambda: _status_is(om, market[5], OrderStatus.FILLED), what="some market orders filled")
            system.kill("router")  # mid-stream: some market orders are still on their way
            system.start("router")
            outcomes = await asyncio.gather(*(om.wait(i, timeout=30) for i in market))
            assert all(isinstance(o, OrderFilled) for o in outcomes)
            for i in market:
                await eventually(lambda i=i: _status_is(om, i, OrderStatus.FILLED), what="market order records FILLED")
            for i in resting:
                assert await _status_is(rest, i, OrderStatus.ACCEPTED)
            # the restarted router counts the five open orders it inherited
            sixth = await rest.wait(await rest.buy("EURUSD", D("0.10"), limit_price=RESTING_BUY))
            assert isinstance(sixth, OrderDenied)
            assert sixth.reason == "RISK: account paper-2 has 5 open orders (limit 5)"


async def test_registry_reload_without_restart(nats_server: NatsServer, tmp_path: Path) -> None:
    config = tmp_path / "om.yaml"
    config.write_text("brokers:\n  paper:\n    type: paper\n")
    async with System(nats_server.url, tmp_path, config=config) as system:
        await system.start_all()
        async with OrderMeshClient("s-reload", url=nats_server.url) as om:
            before = await om.wait(await om.buy("EURUSD", D("0.10"), broker_id="paper2"))
            assert isinstance(before, OrderDenied) and before.reason.startswith("ROUTING: broker 'paper2'")
            config.write_text(
                "brokers:\n  paper:\n    type: paper\n  paper2:\n    type: paper\n    seed: 9\n"
                "  broken:\n    type: fix\n"
            )
            reply = await control(om, "registry.reload", RegistryReload())
            assert reply.ok
            assert reply.detail.splitlines() == [
                "2 usable broker(s): paper, paper2",
                f"error: brokers.broken: unknown type 'fix' (known types: {', '.join(sorted(ADAPTER_TYPES))})",
            ]
            routed = await om.buy("EURUSD", D("0.10"), broker_id="paper2")
            await eventually(lambda: _status_is(om, routed, OrderStatus.SUBMITTED), what="order routed to paper2")


async def test_venue_created_stop_loss_and_take_profit_are_recorded_and_canceled(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async with System(nats_server.url, tmp_path) as system:
        await system.start_all()
        async with OrderMeshClient("s-sltp", url=nats_server.url) as om:
            await market_live(om)
            parent = await om.buy("EURUSD", D("0.30"), stop_loss=D("1.00000"), take_profit=D("1.20000"))
            assert isinstance(await om.wait(parent), OrderFilled)
            coid = client_order_id("paper-1", parent)  # deterministic: no need to wait for the router's record

            async def children() -> list[OrderRecord]:
                out = []
                for kind in ("sl", "tp"):
                    entry = await _record(om, f"{coid}-{kind}")
                    if entry is not None:
                        out.append(entry)
                return out

            await eventually(
                lambda: _all(
                    children(), lambda recs: len(recs) == 2 and all(r.status is OrderStatus.ACCEPTED for r in recs)
                ),
                what="stop-loss and take-profit recorded as working orders",
            )
            for rec in await children():
                assert (rec.side, rec.quantity, rec.reduce_only) == (Side.SELL, D("0.30"), True)
                assert (rec.parent_client_order_id, rec.intent_id, rec.strategy_id) == (coid, parent, "s-sltp")
            reply = await control(om, "cancel_all", CancelAll(account="paper-1", strategy_id="s-sltp"))
            assert reply.ok and reply.detail == "2 cancel(s) sent"
            await eventually(
                lambda: _all(children(), lambda recs: all(r.status is OrderStatus.CANCELED for r in recs)),
                what="both canceled",
            )
            assert system.metric("router", "ordermesh_handler_errors_total", consumer="router-exec") == 0


async def _record(om: OrderMeshClient, coid: str) -> OrderRecord | None:
    import msgspec
    from nats.js.errors import KeyNotFoundError

    from ordermesh.contract.subjects import KV_ORDERS, kv_key

    try:
        entry = await (await om.bus.kv(KV_ORDERS)).get(kv_key(coid))
    except KeyNotFoundError:
        return None
    return msgspec.msgpack.decode(entry.value, type=OrderRecord) if entry.value else None


async def _all(found: Awaitable[list[OrderRecord]], cond: Callable[[list[OrderRecord]], bool]) -> bool:
    return cond(await found)


async def _keys(om: OrderMeshClient, bucket: str) -> list[str]:
    from nats.js.errors import NoKeysError

    try:
        return await (await om.bus.kv(bucket)).keys()
    except NoKeysError:
        return []


async def test_the_kill_switch_cancels_flattens_and_halts(nats_server: NatsServer, tmp_path: Path) -> None:
    async with System(nats_server.url, tmp_path) as system:
        await system.start_all()
        async with (
            OrderMeshClient("s-long", url=nats_server.url) as a,
            OrderMeshClient("s-short", url=nats_server.url) as b,
        ):
            await market_live(a)
            for om, side, sym, qty in ((a, "buy", "EURUSD", "0.30"), (b, "sell", "EURUSD", "0.10"),
                                       (a, "buy", "GBPUSD", "0.05")):  # fmt: skip
                assert isinstance(await om.wait(await getattr(om, side)(sym, D(qty))), OrderFilled)
            resting = await b.buy("EURUSD", D("0.10"), limit_price=RESTING_BUY)
            await eventually(lambda: _status_is(b, resting, OrderStatus.ACCEPTED), what="the resting order")

            out = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "services.cli", "--nats", nats_server.url, "kill", "--account", "paper-1"],
                capture_output=True, text=True, timeout=60, cwd=ROOT,
            )  # fmt: skip
            assert out.returncode == 0, out.stdout + out.stderr
            assert "open orders: 1 cancel(s) sent" in out.stdout
            assert out.stdout.strip().endswith("flat, halted")
            # the account's net is flat in every symbol, by reduce-only orders booked to the holders of its side
            assert {p.symbol: p.quantity for p in await a.positions(account="paper-1") if p.quantity} == {}
            assert re.search(r"EURUSD\s+s-long\s+0\.20\s+closed", out.stdout), out.stdout
            assert re.search(r"GBPUSD\s+s-long\s+0\.05\s+closed", out.stdout), out.stdout
            assert isinstance(await b.wait(resting), OrderCanceled)
            # and nothing trades any more until an operator resumes
            denied = await a.wait(await a.buy("EURUSD", D("0.10")))
            assert isinstance(denied, OrderDenied)
            assert denied.reason == "TRADING_STATE: trading is HALTED (account paper-1)"


async def test_the_daily_loss_limit_can_run_the_kill_switch_by_itself(nats_server: NatsServer, tmp_path: Path) -> None:
    config = tmp_path / "om.yaml"
    config.write_text(
        "accounts:\n  paper-1: {}\n"
        "risk:\n  paper-1:\n    daily_loss_limit: '5'\n    kill_on_daily_loss: true\n    check_margin: false\n"
    )
    env = {"ORDERMESH__KEEPER__EQUITY_INTERVAL_S": "0.5"}
    async with System(nats_server.url, tmp_path, config=config, env=env) as system:
        await system.start_all()
        async with OrderMeshClient("s-loser", url=nats_server.url) as om:
            await market_live(om)

            assert isinstance(await om.wait(await om.buy("GBPUSD", D("0.10"))), OrderFilled)  # costs ~1.1: below

            async def day_started() -> bool:
                try:
                    entry = await (await om.bus.kv("om_control")).get("router")
                except Exception:
                    return False
                start = msgspec.msgpack.decode(entry.value or b"\x80").get("day_start", {}).get("paper-1")
                return start is not None

            # the router measures the day's loss from the first account state it saw (the keeper's, after a fill)
            await eventually(day_started, timeout=20, what="the router's day-start equity of paper-1")
            # a lot bought: the spread and the commission cost more than the limit of 5 at once
            assert isinstance(await om.wait(await om.buy("EURUSD", D("1"))), OrderFilled)

            async def flat_and_halted() -> bool:
                held = {p.symbol: p.quantity for p in await om.positions(account="paper-1") if p.quantity}
                reply = await control(om, "trading", TradingStateQuery())
                return not held and "account paper-1 HALTED" in reply.detail

            await eventually(flat_and_halted, timeout=45, what="the account flat and halted by the kill switch")
            # the close was booked to the strategy that held the position, and nothing trades any more
            assert {p.symbol: p.quantity for p in await om.positions(strategy_id="s-loser") if p.quantity} == {}
            denied = await om.wait(await om.buy("EURUSD", D("0.10")))
            assert isinstance(denied, OrderDenied) and denied.reason.startswith("TRADING_STATE"), denied
        assert "kill switch done: account halted" in (tmp_path / "router.log").read_text()
