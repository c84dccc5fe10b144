"""End-to-end: every service a separate OS process on a real nats-server."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import msgspec

from ordermesh.contract.codec import encode
from ordermesh.contract.subjects import COMMANDS, EXEC
from ordermesh.contract.wire import (
    Fixed,
    Intent,
    IntentRejected,
    OrderFilled,
    OrderRequest,
    PositionSizingResult,
    Side,
)
from ordermesh.platform.bus import Bus
from ordermesh.platform.natsserver import NatsServer
from ordermesh.sdk import OrderMeshClient
from tests.harness import System, eventually

SYMBOLS = ("EURUSD", "BTCUSD")
QTY = {"EURUSD": Decimal("0.10"), "BTCUSD": Decimal("0.005")}


def plan(n: int, strategies: tuple[str, ...] = ("s-a", "s-b")) -> list[tuple[str, str, Side, Decimal]]:
    """A deterministic mix of buys and sells over strategies and symbols."""
    out = []
    for i in range(n):
        symbol = SYMBOLS[i % 2]
        side = Side.BUY if (i * 7) % 5 < 3 else Side.SELL
        out.append((strategies[i % len(strategies)], symbol, side, QTY[symbol] * (1 + i % 3)))
    return out


def expected_positions(fills: list[OrderFilled]) -> dict[tuple[str, str], Decimal]:
    net: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for f in fills:
        net[(f.account, f.symbol)] += f.last_qty * f.side.sign
    return dict(net)


async def keeper_positions(client: OrderMeshClient, fills_expected: int) -> dict[tuple[str, str], Decimal]:
    async def caught_up() -> bool:
        try:
            return (await client.positions_reply()).fills_applied >= fills_expected
        except Exception:
            return False  # keeper (re)starting: no responder yet

    await eventually(caught_up, timeout=30, what=f"keeper applying {fills_expected} fills")
    reply = await client.positions_reply()
    assert reply.fills_applied == fills_expected
    return {(p.account, p.symbol): p.quantity for p in reply.positions}


async def test_intents_become_fills_and_positions(nats_server: NatsServer, tmp_path: Path) -> None:
    n = 40
    async with System(nats_server.url, tmp_path) as system:
        await system.start_all()
        clients = {s: await OrderMeshClient(s, url=nats_server.url).connect() for s in ("s-a", "s-b")}
        try:
            ids = []
            for strategy, symbol, side, qty in plan(n):
                om = clients[strategy]
                ids.append((om, await (om.buy if side is Side.BUY else om.sell)(symbol, qty)))
            outcomes = [await om.wait(intent_id, timeout=20) for om, intent_id in ids]
            assert all(isinstance(o, OrderFilled) for o in outcomes), outcomes
            fills: list[OrderFilled] = outcomes  # type: ignore[assignment]
            assert len({f.fill_id for f in fills}) == n
            # every fill is for exactly the requested quantity, at the touch
            for (_, symbol, side, qty), f in zip(plan(n), fills, strict=True):
                assert (f.symbol, f.side, f.last_qty, f.leaves_qty) == (symbol, side, qty, 0)
            positions = await keeper_positions(clients["s-a"], n)
            assert positions == expected_positions(fills)
            # per-strategy view adds up to the account view
            by_strategy = await clients["s-a"].positions(by_strategy=True)
            totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
            for p in by_strategy:
                totals[(p.account, p.symbol)] += p.quantity
            assert dict(totals) == positions
        finally:
            for om in clients.values():
                await om.close()


async def test_same_intent_twice_yields_one_order(nats_server: NatsServer, tmp_path: Path) -> None:
    async with System(nats_server.url, tmp_path) as system:
        await system.start_all()
        async with OrderMeshClient("dup", url=nats_server.url) as om:
            intent = om.intent(Side.BUY, "EURUSD", Decimal("0.30"))
            await om.submit(intent)
            await om.submit(intent)  # same intent_id: the stream keeps one
            first = await om.wait(intent.intent_id)
            assert isinstance(first, OrderFilled)
            # Past the stream's duplicate window, a repeat reaches the router again (other Nats-Msg-Id):
            # the router's order store must still refuse to send it a second time.
            bus: Bus = om.bus
            repeat = OrderRequest(
                intent=intent,
                quantity=Decimal("0.30"),
                sizing_audit=PositionSizingResult(
                    method="fixed",
                    status="ok",
                    account_balance=Decimal(0),
                    risk_amount=Decimal(0),
                    lot_size=Decimal("0.30"),
                ),
            )
            await bus.publish(bus.subjects.order(intent.account), repeat, msg_id="a-different-id")
            # Each stage handles its messages in order: once a later intent is filled, the repeat has been seen.
            marker = await om.buy("EURUSD", Decimal("0.10"))
            assert isinstance(await om.wait(marker), OrderFilled)
            assert await bus.stream_last_seq(COMMANDS) == 2  # the original and the marker, nothing else
            fills = await _fills_in_stream(bus)
            assert [f.intent_id for f in fills] == [intent.intent_id, marker]
            assert system.metric("router", "ordermesh_messages_total", consumer="router", outcome="duplicate") == 1


async def _fills_in_stream(bus: Bus) -> list[OrderFilled]:
    from ordermesh.contract.codec import EXEC_CODEC

    last = await bus.stream_last_seq(EXEC)
    out = []
    for seq in range(1, last + 1):
        raw = await bus.js.get_msg(EXEC, seq)
        event = EXEC_CODEC.decode(raw.data)
        if isinstance(event, OrderFilled):
            out.append(event)
    return out


async def test_malformed_messages_are_counted_and_survived(nats_server: NatsServer, tmp_path: Path) -> None:
    async with System(nats_server.url, tmp_path) as system:
        await system.start_all()
        async with OrderMeshClient("bad", url=nats_server.url) as om:
            bus = om.bus
            s = bus.subjects
            garbage = b"\xc1not msgpack at all"
            intent = om.intent(Side.BUY, "EURUSD", Decimal("0.10"))
            v2 = msgspec.msgpack.encode({**msgspec.to_builtins(intent), "v": 2})
            # undecodable bytes on every consumed subject
            await bus.publish_bytes(s.intent("bad"), garbage, msg_id="g1")
            await bus.publish_bytes(s.order("paper-1"), garbage, msg_id="g2")
            await bus.publish_bytes(s.cmd("paper"), garbage, msg_id="g3")
            await bus.publish_bytes(s.exec("paper", "bad"), garbage, msg_id="g4")
            reply = await bus.nc.request(s.q("positions"), garbage, timeout=5)
            assert b"undecodable" in reply.data
            # a message of the wrong type, and one of a newer schema version
            await bus.publish_bytes(s.order("paper-1"), encode(intent), msg_id="g5")
            await bus.publish_bytes(s.intent("bad"), v2, msg_id="g6")
            # ... and the system still trades
            good = await om.buy("EURUSD", Decimal("0.10"))
            assert isinstance(await om.wait(good, timeout=20), OrderFilled)
            await keeper_positions(om, 1)

            def bad(service: str, reason: str) -> float:
                return system.metric(service, "ordermesh_bad_messages_total", service=service, reason=reason)

            assert bad("sizer", "undecodable") == 1
            assert bad("sizer", "schema_version") == 1
            assert bad("router", "undecodable") == 2  # om.order and om.exec
            assert bad("router", "wrong_type") == 1
            assert bad("gateway", "undecodable") == 1
            assert bad("keeper", "undecodable") == 2  # om.exec and the query
            assert all(system.alive(name) for name in ("sizer", "router", "gateway", "keeper"))


async def test_keeper_sigkill_mid_stream_recovers_exact_positions(nats_server: NatsServer, tmp_path: Path) -> None:
    n = 300
    env = {"ORDERMESH__KEEPER__SNAPSHOT_EVERY": "13", "ORDERMESH__KEEPER__SNAPSHOT_INTERVAL_S": "0.2"}
    async with System(nats_server.url, tmp_path, env=env) as system:
        await system.start_all()
        async with OrderMeshClient("kill", url=nats_server.url) as om:
            ids = []
            for _, symbol, side, qty in plan(n, ("kill",)):
                ids.append(await om.submit(om.intent(side, symbol, qty)))
            # kill the keeper once part of the stream is applied, well before the end
            await eventually(
                lambda: _applied_at_least(om, n // 4), timeout=30, what="keeper applying a quarter of the fills"
            )
            system.kill("keeper")
            fills = [await om.wait(i, timeout=30) for i in ids]
            assert all(isinstance(f, OrderFilled) for f in fills)
            system.start("keeper")
            positions = await keeper_positions(om, n)
            assert positions == expected_positions(fills)  # type: ignore[arg-type]
            # the restarted keeper resumed from a snapshot taken mid-stream, not from the start or the end
            resumed = [
                json.loads(line)
                for line in (tmp_path / "keeper.log").read_text().splitlines()
                if '"keeper resuming"' in line
            ]
            assert len(resumed) == 2
            assert 0 < resumed[1]["fills"] < n
            # a keeper rebuilt from the first message of the stream agrees exactly
            system.kill("keeper", 15)
            system.start("keeper-replay", "--replay", "--instance", "replay", service="keeper")
            assert await keeper_positions(om, n) == positions


async def _applied_at_least(om: OrderMeshClient, count: int) -> bool:
    try:
        return (await om.positions_reply()).fills_applied >= count
    except Exception:
        return False


async def test_intent_for_unknown_broker_is_denied_with_reason(nats_server: NatsServer, tmp_path: Path) -> None:
    async with System(nats_server.url, tmp_path) as system:
        await system.start_all()
        async with OrderMeshClient("deny", url=nats_server.url) as om:
            bad_route = await om.buy("EURUSD", Decimal("0.1"), broker_id="nowhere")
            zero = await om.submit(
                Intent(
                    intent_id="zero-qty",
                    strategy_id="deny",
                    account="paper-1",
                    symbol="EURUSD",
                    side=Side.BUY,
                    sizing=Fixed(qty=Decimal(0)),
                )
            )
            unknown_symbol = await om.buy("NOPE", Decimal("1"))
            outcomes = await asyncio.gather(om.wait(bad_route), om.wait(zero), om.wait(unknown_symbol))
            reasons = [getattr(o, "reason", "") for o in outcomes]
            assert reasons[0].startswith("ROUTING: ") and "nowhere" in reasons[0]
            assert reasons[1].startswith("SIZING: ")
            assert reasons[2].startswith("INSTRUMENT: ") and "NOPE" in reasons[2]


async def test_an_intent_for_an_account_that_is_not_configured_is_refused(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A mistyped `--account nosuch` used to open a new 100,000 account and fill."""
    async with System(nats_server.url, tmp_path) as system:
        await system.start_all()
        async with OrderMeshClient("s-typo", url=nats_server.url, account="nosuch") as om:
            out = await om.wait(await om.buy("EURUSD", Decimal("0.10")))
            assert isinstance(out, IntentRejected), out
            assert out.reason == "INVALID: unknown account 'nosuch' (configured: paper-1)"
            assert await om.positions(account="nosuch") == []
