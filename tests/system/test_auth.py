"""Least privilege on the bus, against a real nats-server running the generated authorization block.

Each role's allowed traffic works end to end; each forbidden action (command bypass, trading state change,
forged fill, stream deletion, reading another strategy's reports) is refused by the server itself and leaves the
system's state unchanged. The server's log names every refused publish/subscribe ("Violation"), so the allowed
runs also prove that no service needs a permission it lacks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import msgspec
import nats
import nats.errors
import nats.js.errors
import pytest

from ordermesh.contract.codec import decode_any, encode
from ordermesh.contract.subjects import EXEC, Subjects
from ordermesh.contract.wire import (
    CancelAll,
    ControlReply,
    OrderCanceled,
    OrderFilled,
    OrderStatus,
    OrderType,
    PlaceOrder,
    SetTradingState,
    Side,
    TradingState,
    TradingStateQuery,
)
from ordermesh.platform.auth import generate, identities, inbox_prefix, read_seed, seed_path
from ordermesh.platform.bus import Bus, BusError
from ordermesh.platform.config import AuthSettings, NatsSettings, OrderMeshConfig
from ordermesh.platform.natsserver import NatsServer
from ordermesh.sdk import OrderMeshClient
from tests.harness import System, eventually
from tests.system.test_router import market_live

D = Decimal
S = Subjects()
STRATEGY, OTHER = "s-auth", "s-other"


class Secured(msgspec.Struct):
    server: NatsServer
    auth_dir: Path
    settings: NatsSettings

    def config(self) -> OrderMeshConfig:
        return OrderMeshConfig(nats=self.settings)

    async def raw(self, identity: str, errors: list[str]) -> nats.NATS:
        """A plain nats-py client as ``identity``, collecting the server's refusals (``-ERR ... Violation``)."""

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        seed = read_seed(seed_path(self.auth_dir, identity)).decode()
        return await nats.connect(
            self.server.url,
            nkeys_seed_str=seed,
            inbox_prefix=inbox_prefix(identity),
            error_cb=on_error,
            max_reconnect_attempts=0,
        )


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    auth = AuthSettings(dir=str(tmp_path / "auth"), strategies=[STRATEGY, OTHER])
    settings = NatsSettings(connect_timeout_s=2.0, auth=auth)
    files = generate(identities(OrderMeshConfig(nats=settings)), S, auth.dir)
    server = NatsServer(tmp_path / "nats", config_file=files.server_config).start()
    try:
        yield Secured(server, Path(auth.dir), msgspec.structs.replace(settings, url=server.url))
    finally:
        server.stop()


def violations(server: NatsServer) -> list[str]:
    return [line for line in server.log_file.read_text().splitlines() if "Violation" in line]


async def until_violation(server: NatsServer, subject: str) -> None:
    """The server logs a refusal as it makes it: wait for this one (no sleep on a guess)."""

    async def logged() -> bool:
        return any(f'"{subject}"' in line for line in violations(server))

    await eventually(logged, timeout=10, what=f"the server refusing {subject}")


@pytest.fixture
async def running(secured: Secured, tmp_path: Path) -> AsyncIterator[System]:
    env = {"ORDERMESH__NATS__AUTH__DIR": str(secured.auth_dir)}
    async with System(secured.server.url, tmp_path, env=env, settings=secured.settings) as system:
        await system.start_all()
        yield system


async def control(om: OrderMeshClient, subject: str, msg: object) -> ControlReply:
    reply = decode_any(await om.bus.request(subject, msg, timeout=10))  # type: ignore[arg-type]
    assert isinstance(reply, ControlReply)
    return reply


async def test_every_role_does_its_work_with_no_permission_refused(secured: Secured, running: System) -> None:
    config = secured.config()
    async with OrderMeshClient(STRATEGY, config=config) as om:
        assert om.bus.identity == f"strategy-{STRATEGY}"
        filled = await om.wait(await om.buy("EURUSD", D("0.10")))
        assert isinstance(filled, OrderFilled), filled
        # a resting order, cancelled by the strategy itself on its own control subject (once the router has a quote
        # to check its limit price against; a strategy may read the market)
        await market_live(om)
        resting = await om.buy("EURUSD", D("0.10"), limit_price=D("1.06000"))

        async def accepted() -> bool:
            rec = await om.order(resting)  # the router's record, read by the strategy's identity
            return rec is not None and rec.status is OrderStatus.ACCEPTED

        await eventually(accepted, what="the resting order accepted")
        assert (await om.cancel(resting)).ok
        assert isinstance(await om.wait(resting), OrderCanceled)

        # the keeper's read-only queries
        async def held() -> bool:
            positions = await om.positions(strategy_id=STRATEGY)
            return [(p.symbol, p.quantity) for p in positions] == [("EURUSD", D("0.10"))]

        await eventually(held, what="the keeper showing the position")

    async with OrderMeshClient("cli", config=config, identity="operator") as op:
        halted = await control(op, S.ctl("trading"), SetTradingState(state=TradingState.HALTED, account="paper-1"))
        assert halted.ok, halted.detail
        resumed = await control(op, S.ctl("trading"), SetTradingState(state=TradingState.ACTIVE, account="paper-1"))
        assert resumed.ok, resumed.detail

    assert violations(secured.server) == []


async def test_a_strategy_cannot_bypass_risk_change_trading_forge_fills_or_delete_streams(
    secured: Secured, running: System
) -> None:
    config = secured.config()
    async with OrderMeshClient("cli", config=config, identity="operator") as op:
        before = await op.positions()
        exec_seq = await op.bus.stream_last_seq(EXEC)

    errors: list[str] = []
    nc = await secured.raw(f"strategy-{STRATEGY}", errors)
    try:
        # 1. a command straight to the gateway, past the router's risk checks
        cmd = PlaceOrder(
            command_id="forged-1", client_order_id="forged-1", intent_id="forged-1", strategy_id=STRATEGY,
            account="paper-1", broker_id="paper", symbol="EURUSD", side=Side.BUY, order_type=OrderType.MARKET,
            quantity=D("7"),
        )  # fmt: skip
        await nc.publish(S.cmd("paper"), encode(cmd))
        await until_violation(secured.server, S.cmd("paper"))
        # 2. halting (or resuming) trading
        await nc.publish(S.ctl("trading"), encode(SetTradingState(state=TradingState.HALTED)))
        await until_violation(secured.server, S.ctl("trading"))
        # 3. a forged fill for the keeper
        await nc.publish(S.exec("paper", STRATEGY), b"{}")
        await until_violation(secured.server, S.exec("paper", STRATEGY))
        # 4. an intent in another strategy's name
        await nc.publish(S.intent(OTHER), b"{}")
        await until_violation(secured.server, S.intent(OTHER))
        # 5. JetStream administration: deleting the fill history
        js = nc.jetstream(timeout=1.0)
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error, nats.errors.NoRespondersError)):
            await js.delete_stream(EXEC)
        await until_violation(secured.server, f"$JS.API.STREAM.DELETE.{EXEC}")
        # 6. reading everybody's reports: a live subscription, and a consumer with a wider filter
        await nc.subscribe(S.all_exec)
        await nc.flush()
        await until_violation(secured.server, S.all_exec)
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error, nats.errors.NoRespondersError)):
            await js.add_consumer(EXEC, name="peek", filter_subject=S.strategy_exec(OTHER), deliver_subject="x.y")
        # 7. cancelling another strategy's orders
        await nc.publish(S.ctl("cancel_all", OTHER), encode(CancelAll(strategy_id=OTHER)))
        await until_violation(secured.server, S.ctl("cancel_all", OTHER))
    finally:
        await nc.close()
    refused = " ".join(errors).lower()
    for subject in (S.cmd("paper"), S.ctl("trading"), S.exec("paper", STRATEGY), f"$JS.API.STREAM.DELETE.{EXEC}"):
        assert f'permissions violation for publish to "{subject.lower()}"' in refused, errors

    # 8. its own cancel subject, used to carry another request: the router refuses it (the subject decides)
    async with OrderMeshClient(STRATEGY, config=config) as om:
        reply = await control(om, S.ctl("cancel_all", STRATEGY), SetTradingState(state=TradingState.HALTED))
        assert not reply.ok and "not accepted" in reply.detail
        reply = await control(om, S.ctl("cancel_all", STRATEGY), CancelAll(strategy_id=OTHER))
        assert not reply.ok and "speaks for strategy" in reply.detail

    # nothing changed: no report, the same positions, trading still ACTIVE
    async with OrderMeshClient("cli", config=config, identity="operator") as op:
        assert await op.bus.stream_last_seq(EXEC) == exec_seq
        assert await op.positions() == before
        state = await control(op, S.ctl("trading"), TradingStateQuery())
        assert "HALTED" not in state.detail, state.detail
        # and the system still trades
        async with OrderMeshClient(STRATEGY, config=config) as om:
            assert isinstance(await om.wait(await om.buy("EURUSD", D("0.10"))), OrderFilled)


async def test_a_strategy_reads_only_its_own_reports(secured: Secured, running: System) -> None:
    config = secured.config()
    async with (
        OrderMeshClient(STRATEGY, config=config) as mine,
        OrderMeshClient(OTHER, config=config) as other,
    ):
        seen: list[str] = []

        async def on(msg: nats.aio.msg.Msg) -> None:
            seen.append(msg.subject)

        # its own feed works; the other strategy's fill never reaches it
        await mine.bus.feed(EXEC, S.strategy_exec(STRATEGY), on)
        theirs = await other.wait(await other.buy("EURUSD", D("0.10")))
        ours = await mine.wait(await mine.buy("EURUSD", D("0.10")))
        assert isinstance(theirs, OrderFilled) and isinstance(ours, OrderFilled)
        await eventually(lambda: _true(bool(seen)), what="its own reports")
        assert all(s.endswith(f".{STRATEGY}") for s in seen), seen
        with pytest.raises(Exception):  # noqa: B017 - the server refuses; nats-py reports it as a timeout
            await asyncio.wait_for(mine.bus.feed(EXEC, S.strategy_exec(OTHER), on), 3)


async def _true(value: bool) -> bool:
    return value


async def test_a_process_without_credentials_is_refused_in_one_line(secured: Secured, tmp_path: Path) -> None:
    nowhere = msgspec.structs.replace(secured.settings, auth=AuthSettings(dir=str(tmp_path / "none")))
    bus = Bus(nowhere, "test", identity="sizer")
    with pytest.raises(BusError) as refused:
        await bus.connect(deadline_s=5)
    message = str(refused.value)
    assert "refused identity 'sizer'" in message and "ordermesh auth generate" in message
    assert "\n" not in message
