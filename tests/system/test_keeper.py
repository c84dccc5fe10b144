"""The keeper as real processes on a real nats-server: exactly-once under SIGKILL, close-all, reconciliation,
account state and the equity curve."""

from __future__ import annotations

import asyncio
import datetime
import json
import random
import re
import time
from decimal import Decimal
from pathlib import Path

import msgspec

from ordermesh.books.accounting import BookSnapshot, Ledger, Rules
from ordermesh.contract.subjects import EQUITY
from ordermesh.contract.wire import AccountState, Liquidity, OrderAccepted, OrderFilled, Side
from ordermesh.platform.config import OrderMeshConfig
from ordermesh.platform.natsserver import NatsServer
from ordermesh.sdk import OrderMeshClient
from ordermesh.sizing.instruments import load_instruments
from tests.harness import System, eventually
from tests.services.test_cli import aordermesh

D = Decimal
SYMBOLS = ("EURUSD", "BTCUSD", "GBPUSD")


def make_fills(n: int, seed: int) -> list[OrderFilled]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        symbol = SYMBOLS[rng.randrange(3)]
        px = {"EURUSD": D("1.08"), "BTCUSD": D(65000), "GBPUSD": D("1.27")}[symbol]
        qty = D(rng.randint(1, 50)) / 100 if symbol != "BTCUSD" else D(rng.randint(1, 20)) / 1000
        step = D("0.00001") if symbol != "BTCUSD" else D("0.01")
        base_fee = symbol == "BTCUSD" and i % 7 == 0
        out.append(
            OrderFilled(
                event_id=f"fill:paper:f{i}",
                client_order_id=f"om-k{i}",
                intent_id=f"k{i}",
                strategy_id=f"s{i % 3}",
                account="paper-1",
                broker_id="paper",
                symbol=symbol,
                broker_order_id=f"b{i}",
                fill_id=f"f{i}",
                side=Side.BUY if rng.random() < 0.5 else Side.SELL,
                last_qty=qty,
                last_px=px + step * rng.randint(-500, 500),
                cum_qty=qty,
                leaves_qty=D(0),
                order_qty=qty,
                commission=D("0.00001") if base_fee else D(rng.randint(0, 300)) / 100,
                commission_asset="BTC" if base_fee else "USD",
                liquidity=Liquidity.TAKER,
                ts_ns=1_700_000_000_000_000_000 + i,
            )
        )
    return out


async def publish_all(om: OrderMeshClient, fills: list[OrderFilled], dup_every: int) -> list[tuple[int, OrderFilled]]:
    """Publish the fills (and, every ``dup_every``, a redelivered copy under another message id and a
    non-fill report) straight into OM_EXEC; returns what the stream stored, with its sequence."""
    bus = om.bus
    stored: list[tuple[int, OrderFilled]] = []
    window = 256
    for start in range(0, len(fills), window):
        batch = fills[start : start + window]
        acks = await asyncio.gather(
            *(bus.publish(bus.subjects.exec(f.broker_id, f.strategy_id), f, msg_id=f.event_id) for f in batch)
        )
        stored += [(ack.seq, f) for ack, f in zip(acks, batch, strict=True)]
        for f in batch:
            i = int(f.fill_id[1:])
            if i % dup_every == 0:  # the same fill again (a gateway retry past the duplicate window)
                ack = await bus.publish(bus.subjects.exec("paper", f.strategy_id), f, msg_id=f"again:{f.fill_id}")
                stored.append((ack.seq, f))
                other = OrderAccepted(
                    event_id=f"acc:{i}", client_order_id=f.client_order_id, intent_id=f.intent_id,
                    strategy_id=f.strategy_id, account=f.account, broker_id="paper", symbol=f.symbol,
                    broker_order_id=f.broker_order_id,
                )  # fmt: skip
                await bus.publish(bus.subjects.exec("paper", f.strategy_id), other, msg_id=other.event_id)
    return sorted(stored, key=lambda x: x[0])


async def reply_when(om: OrderMeshClient, fills: int, timeout: float = 40.0) -> None:
    async def ok() -> bool:
        try:
            return (await om.positions_reply()).fills_applied >= fills
        except Exception:
            return False  # (re)starting

    await eventually(ok, timeout=timeout, what=f"keeper applying {fills} fills")


def without_ts(state: AccountState) -> AccountState:
    return msgspec.structs.replace(state, ts_ns=0)


async def test_keeper_sigkilled_at_random_points_of_10000_fills_ends_exactly_like_a_clean_run(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    n = 10_000
    rng = random.Random(20240601)
    env = {
        "ORDERMESH__KEEPER__SNAPSHOT_EVERY": "250",
        "ORDERMESH__KEEPER__SNAPSHOT_INTERVAL_S": "0.1",
        "ORDERMESH__KEEPER__RECONCILE_INTERVAL_S": "0",
    }
    fills = make_fills(n, seed=7)
    async with System(nats_server.url, tmp_path, env=env) as system:
        system.start("keeper")
        await system.wait_ready("keeper")
        async with OrderMeshClient("kill", url=nats_server.url) as om:
            publisher = asyncio.ensure_future(publish_all(om, fills, dup_every=50))
            kills = sorted(rng.sample(range(300, n - 300), 5))
            for at in kills:  # SIGKILL once the keeper has applied a random number of fills
                await reply_when(om, at)
                system.kill("keeper")
                system.start("keeper")
            stored = await asyncio.wait_for(publisher, 60)
            await reply_when(om, n)
            reply = await om.positions_reply()
            by_strategy = await om.positions(by_strategy=True)
            state = await om.account_state("paper-1")

            # the uninterrupted run: the same stream, applied once in order
            config = OrderMeshConfig()
            clean = Ledger(
                rules=Rules(accounts=dict(config.accounts), specs=load_instruments(config.sizer.instruments_file))
            )
            for seq, f in stored:
                clean.apply_fill(f, seq)
            assert clean.fills_applied == n  # the redelivered copies were recognised
            assert reply.fills_applied == n  # ... by the killed-and-restarted keeper too: none applied twice
            assert reply.positions == clean.positions()
            assert by_strategy == clean.positions(by_strategy=True)
            expected = clean.account_state("paper-1", lambda _s: None)
            assert without_ts(msgspec.structs.replace(state, applied_seq=0)) == without_ts(
                msgspec.structs.replace(expected, applied_seq=0)
            )
            assert sum(1 for p in reply.positions if p.quantity) > 0

            # each restart resumed from a snapshot taken mid-stream (not from the start, not the end)
            resumed = [
                json.loads(line)["fills"]
                for line in (tmp_path / "keeper.log").read_text().splitlines()
                if '"keeper resuming"' in line
            ]
            assert len(resumed) == len(kills) + 1 and resumed[0] == 0
            assert all(0 < r < n for r in resumed[1:]) and resumed[1:] == sorted(resumed[1:])
            assert "duplicate fill ignored" in (tmp_path / "keeper.log").read_text()

            # `--replay` from the first message gives the same state
            system.kill("keeper", 15)
            system.start("keeper-replay", "--replay", "--instance", "replay", service="keeper")
            await reply_when(om, n)
            assert (await om.positions_reply()).positions == reply.positions
            assert without_ts(await om.account_state("paper-1")) == without_ts(state)


async def test_close_all_reconciliation_account_and_equity_through_the_running_system(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    url = nats_server.url
    env = {"ORDERMESH__KEEPER__EQUITY_INTERVAL_S": "0.5", "ORDERMESH__KEEPER__RECONCILE_INTERVAL_S": "0"}
    async with System(url, tmp_path, env=env) as system:
        await system.start_all()
        async with OrderMeshClient("s-a", url=url) as a, OrderMeshClient("s-b", url=url) as b:
            outcomes = [
                await a.wait(await a.buy("EURUSD", D("0.30"))),
                await b.wait(await b.sell("BTCUSD", D("0.010"))),
                await b.wait(await b.buy("GBPUSD", D("0.20"))),
                await a.wait(await a.sell("GBPUSD", D("0.05"))),
            ]
            assert all(isinstance(o, OrderFilled) for o in outcomes), outcomes
            await reply_when(a, 4)

            # the keeper and the paper broker agree
            check = await aordermesh("--nats", url, "positions", "--check")
            assert check.returncode == 0, check.stdout + check.stderr
            assert "reconciliation with the brokers (paper):" in check.stdout and "no differences" in check.stdout

            # account state: from the keeper, and in KV om_accounts for the sizer and router
            acct = await aordermesh("--nats", url, "account")
            assert acct.returncode == 0, acct.stderr
            assert re.search(r"balance\s+\d", acct.stdout) and re.search(r"margin used\s+[1-9]", acct.stdout)
            state = await a.account_state()
            assert state.margin_used > 0 and state.free_margin == state.equity - state.margin_used
            assert state.fills == 4

            # close-all: every position flat, and the report
            out = await aordermesh("--nats", url, "close-all", "--timeout", "20")
            assert out.returncode == 0, out.stdout + out.stderr
            # each strategy's position closed in its own name (GBPUSD: s-b long 0.20, s-a short 0.05)
            assert re.search(r"EURUSD\s+s-a\s+0\.30\s+closed", out.stdout), out.stdout
            assert re.search(r"BTCUSD\s+s-b\s+-0\.010\s+closed", out.stdout), out.stdout
            assert re.search(r"GBPUSD\s+s-b\s+0\.20\s+closed", out.stdout), out.stdout
            assert re.search(r"GBPUSD\s+s-a\s+-0\.05\s+closed", out.stdout), out.stdout
            assert "4 of 4 position(s) closed" in out.stdout
            assert all(p.quantity == 0 for p in await a.positions())
            per_strategy = (await a.positions_reply(by_strategy=True)).positions
            assert {p.strategy_id for p in per_strategy} == {"s-a", "s-b"}  # nothing booked to a "close-all"
            assert all(p.quantity == 0 for p in per_strategy)
            again = await a.close_all_positions()
            assert again.outcomes == [] and again.flat

            # a fill the broker never made: the reconciliation finds, publishes, logs and counts it
            recon_seen = asyncio.Event()

            async def on_recon(_msg: object) -> None:
                recon_seen.set()

            await a.bus.subscribe(a.subjects.recon("paper"), on_recon)
            ghost = OrderFilled(
                event_id="fill:paper:ghost", client_order_id="om-ghost", intent_id="ghost", strategy_id="s-a",
                account="paper-1", broker_id="paper", symbol="EURUSD", broker_order_id="g", fill_id="ghost",
                side=Side.BUY, last_qty=D("0.07"), last_px=D("1.08"), cum_qty=D("0.07"), leaves_qty=D(0),
                order_qty=D("0.07"),
            )  # fmt: skip
            await a.bus.publish(a.subjects.exec("paper", "s-a"), ghost, msg_id=ghost.event_id)
            await reply_when(a, 8)
            check = await aordermesh("--nats", url, "positions", "--check")
            assert check.returncode == 1
            assert re.search(r"paper\s+EURUSD\s+0\.07\s+0\s+0\.07", check.stdout), check.stdout
            await asyncio.wait_for(recon_seen.wait(), 10)
            assert system.metric("keeper", "ordermesh_reconciliation_differences_total", broker_id="paper") == 1
            assert "position differs from the broker" in (tmp_path / "keeper.log").read_text()

            # the equity curve: points on every fill and on the interval; a chart, and a PNG
            async def points() -> bool:
                info = await a.bus.js.stream_info(EQUITY)
                return info.state.messages >= 10

            await eventually(points, timeout=20, what="equity points")
            png = tmp_path / "equity.png"
            eq = await aordermesh("--nats", url, "equity", "--png", str(png))
            assert eq.returncode == 0, eq.stderr
            assert "paper-1 equity curve:" in eq.stdout and "max drawdown" in eq.stdout and "*" in eq.stdout
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_hostile_fills_never_poison_the_books_across_restart_replay_and_an_old_snapshot(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    env = {"ORDERMESH__KEEPER__SNAPSHOT_INTERVAL_S": "0.1", "ORDERMESH__KEEPER__RECONCILE_INTERVAL_S": "0"}
    good = make_fills(4, seed=3)
    base = msgspec.to_builtins(good[0])
    hostile = [  # (what the fill says, the reason the keeper counts it under)
        ({"last_px": "NaN"}, "invalid"),
        ({"last_qty": "1e999999"}, "invalid"),
        ({"last_px": "1e300"}, "invalid"),
        ({"last_qty": "-Infinity"}, "invalid"),
        ({"last_qty": "-1"}, "invalid"),
        ({"last_qty": "100000000000000"}, "out_of_bounds"),  # 1e14 lots: fine on the wire, absurd in the books
        ({"last_qty": "999999999999999", "last_px": "999999999999999", "symbol": "ZZZ"}, "out_of_bounds"),
        ({"broker_id": "forged"}, "unknown_broker"),
    ]
    async with System(nats_server.url, tmp_path, env=env) as system:
        system.start("keeper")
        await system.wait_ready("keeper")
        async with OrderMeshClient("hostile", url=nats_server.url) as om:
            bus = om.bus
            for f in good[:3]:
                await bus.publish(bus.subjects.exec("paper", f.strategy_id), f, msg_id=f.event_id)
            await reply_when(om, 3)
            for i, (fields, _) in enumerate(hostile):
                data = msgspec.msgpack.encode({**base, "fill_id": f"h{i}", "event_id": f"fill:h{i}", **fields})
                await bus.js.publish(bus.subjects.exec("paper", "s0"), data, headers={"Nats-Msg-Id": f"h{i}"})
            last = good[3]
            await bus.publish(bus.subjects.exec("paper", last.strategy_id), last, msg_id=last.event_id)
            await reply_when(om, 4)

            clean = Ledger(rules=Rules(accounts=dict(OrderMeshConfig().accounts), specs=load_instruments(
                OrderMeshConfig().sizer.instruments_file)))  # fmt: skip
            for seq, f in enumerate(good, 1):
                clean.apply_fill(f, seq)
            reply = await om.positions_reply()
            state = await om.account_state("paper-1")
            assert reply.fills_applied == 4 and reply.positions == clean.positions()
            assert state.equity.is_finite() and state.equity == clean.account_state("paper-1", lambda _s: None).equity

            def counted(reason: str) -> float:
                return system.metric("keeper", "ordermesh_bad_messages_total", service="keeper", reason=reason)

            expected = {r: sum(1 for _, x in hostile if x == r) for _, r in hostile}
            assert {r: counted(r) for r in expected} == expected
            log = (tmp_path / "keeper.log").read_text()
            assert log.count('"bad message"') == len(hostile)  # each logged once

            # a restart resumes from its snapshot; the books are the same
            system.kill("keeper", 15)
            system.start("keeper")
            await system.wait_ready("keeper")
            await reply_when(om, 4)
            assert (await om.positions_reply()).positions == reply.positions
            assert without_ts(await om.account_state("paper-1")) == without_ts(state)

            # a snapshot from before fills were checked (NaN in it): rebuilt from the stream, with the checks
            system.kill("keeper", 15)
            kv = await bus.kv("om_keeper")
            snap = msgspec.msgpack.decode((await kv.get("snapshot.keeper")).value, type=BookSnapshot)
            snap.accounts["paper-1"].positions[good[0].symbol].avg_price = D("NaN")
            await kv.put("snapshot.keeper", msgspec.msgpack.encode(snap))
            system.start("keeper")
            await system.wait_ready("keeper")
            await reply_when(om, 4)
            assert (await om.positions_reply()).positions == reply.positions
            assert without_ts(await om.account_state("paper-1")) == without_ts(state)
            assert (
                "snapshot holds impossible values; rebuilding from the stream" in (tmp_path / "keeper.log").read_text()
            )
            assert {r: counted(r) for r in expected} == expected  # refused again on the way

            # `--replay` refuses the same fills: the same books
            system.kill("keeper", 15)
            system.start("keeper-replay", "--replay", "--instance", "replay", service="keeper")
            await system.wait_ready("keeper")
            await reply_when(om, 4)
            assert (await om.positions_reply()).positions == reply.positions
            assert without_ts(await om.account_state("paper-1")) == without_ts(state)
            assert {r: counted(r) for r in expected} == expected


async def test_a_forged_timestamp_cannot_charge_years_of_swaps(nats_server: NatsServer, tmp_path: Path) -> None:
    # the rollover half a day away: no legitimate night passes during the test
    hour = (datetime.datetime.now(datetime.UTC).hour + 12) % 24
    env = {
        "ORDERMESH__KEEPER__SWAPS": "{EURUSD: {long: '5', short: '5'}}",
        "ORDERMESH__KEEPER__SWAP_ROLLOVER_HOUR_UTC": str(hour),
        "ORDERMESH__KEEPER__RECONCILE_INTERVAL_S": "0",
    }
    now = time.time_ns()
    first, last = (
        msgspec.structs.replace(f, symbol="EURUSD", commission=D(0), ts_ns=now) for f in make_fills(2, seed=5)
    )
    async with System(nats_server.url, tmp_path, env=env) as system:
        system.start("keeper")
        await system.wait_ready("keeper")
        async with OrderMeshClient("clock", url=nats_server.url) as om:
            bus = om.bus
            await bus.publish(bus.subjects.exec("paper", first.strategy_id), first, msg_id=first.event_id)
            await reply_when(om, 1)
            forged = OrderAccepted(
                event_id="acc:forged", client_order_id="om-x", intent_id="x", strategy_id="s0", account="paper-1",
                broker_id="paper", symbol="EURUSD", broker_order_id="b", ts_ns=2**63 - 1,  # the year 2262
            )  # fmt: skip
            await bus.publish(bus.subjects.exec("paper", "s0"), forged, msg_id=forged.event_id)
            await bus.publish(bus.subjects.exec("paper", last.strategy_id), last, msg_id=last.event_id)
            await reply_when(om, 2)
            state = await om.account_state("paper-1")
            assert state.swap == 0, state  # not 5 a lot for each of ~86,000 nights
            assert [p.swap for p in await om.positions()] == [0]


async def test_a_strategy_closes_its_own_positions_on_a_netting_account_where_others_hold_the_opposite(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """`close-all --strategy cli` used to fail ("reduce-only SELL 0.10 would increase or flip the EURUSD position
    -0.10"), and the README's `close_all_positions()` flattened every strategy's positions."""
    url = nats_server.url
    async with System(url, tmp_path) as system:
        await system.start_all()
        async with OrderMeshClient("cli", url=url) as cli, OrderMeshClient("s-short", url=url) as short:
            assert isinstance(await cli.wait(await cli.buy("EURUSD", D("0.10"))), OrderFilled)
            assert isinstance(await short.wait(await short.sell("EURUSD", D("0.30"))), OrderFilled)
            assert isinstance(await short.wait(await short.buy("GBPUSD", D("0.10"))), OrderFilled)

            out = await aordermesh("--nats", url, "close-all", "--strategy", "cli", "--timeout", "20")
            assert out.returncode == 0, out.stdout + out.stderr
            assert re.search(r"EURUSD\s+cli\s+0\.10\s+closed", out.stdout), out.stdout
            assert "1 of 1 position(s) closed" in out.stdout

            async def held(om: OrderMeshClient) -> dict[str, Decimal]:
                return {p.symbol: p.quantity for p in await om.positions(strategy_id=om.strategy_id) if p.quantity}

            assert await held(cli) == {}
            assert await held(short) == {"EURUSD": D("-0.30"), "GBPUSD": D("0.10")}  # untouched

            # the SDK's close_all_positions() closes the calling strategy's positions, and only those
            assert isinstance(await cli.wait(await cli.buy("GBPUSD", D("0.05"))), OrderFilled)
            report = await cli.close_all_positions(timeout=20)
            assert report.flat and [(o.symbol, o.strategy_id, o.quantity) for o in report.outcomes] == [
                ("GBPUSD", "cli", D("0.05"))
            ]
            assert await held(cli) == {}
            assert await held(short) == {"EURUSD": D("-0.30"), "GBPUSD": D("0.10")}
