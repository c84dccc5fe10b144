"""The keeper as real processes on a real nats-server: exactly-once under SIGKILL, close-all, reconciliation,
account state and the equity curve."""

from __future__ import annotations

import asyncio
import json
import random
import re
from decimal import Decimal
from pathlib import Path

import msgspec

from ordermesh.books.accounting import Ledger, Rules
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
            assert re.search(r"EURUSD\s+\*\s+0\.30\s+closed", out.stdout), out.stdout
            assert re.search(r"BTCUSD\s+\*\s+-0\.010\s+closed", out.stdout), out.stdout
            assert re.search(r"GBPUSD\s+\*\s+0\.15\s+closed", out.stdout), out.stdout
            assert "3 of 3 position(s) closed" in out.stdout
            assert all(p.quantity == 0 for p in await a.positions())
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
