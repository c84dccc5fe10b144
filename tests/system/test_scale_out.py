"""Scale-out on a real 3-node JetStream cluster (replicas 3): partitioned routers, an active and a standby gateway,
NATS nodes and stream leaders killed under load. Each test ends with the invariants of ``tests.invariants``."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from ordermesh.contract.codec import decode_any
from ordermesh.contract.subjects import COMMANDS, EXEC, KV_LEASES, gateway_lease, router_lease
from ordermesh.contract.wire import Fence, OrderAccepted, OrderRejected, OrderType, PlaceOrder, Side
from ordermesh.platform.lease import LeaseRecord
from ordermesh.platform.natsserver import NatsCluster
from ordermesh.routing.partitions import partition_of
from ordermesh.sdk import OrderMeshClient
from tests import invariants
from tests.harness import System, eventually

D = Decimal
#: One account in each of the 4 partitions (ordermesh.routing.partitions.partition_of).
ACCOUNTS = ("acct-6", "acct-4", "acct-0", "acct-2")
PARTITIONS = 4
TTL = 3.0


def write_config(tmp_path: Path, *, books: Path | None = None, ttl: float = TTL) -> Path:
    accounts = "\n".join(f"  {a}: {{}}" for a in ACCOUNTS)
    paper = "  paper:\n    type: paper\n"
    if books is not None:
        paper += f"    replay_file: {books}\n    quote_interval_ms: 50\n"
        paper += "    symbols:\n      EURUSD: {initial_price: 1.085, spread: 0.0001, tick_size: 0.00001}\n"
    path = tmp_path / "ordermesh.yaml"
    path.write_text(
        f"nats:\n  replicas: 3\n  lease_ttl_s: {ttl}\n"
        f"router:\n  partitions: {PARTITIONS}\n  default_broker: paper\n"
        f"accounts:\n{accounts}\nbrokers:\n{paper}"
    )
    return path


def test_the_accounts_cover_every_partition() -> None:
    assert [partition_of(a, PARTITIONS) for a in ACCOUNTS] == [0, 1, 2, 3]


def live(system: System, service: str, within_s: float = 2.5) -> dict[str, dict[str, str]]:
    """instance -> heartbeat detail of the ``service`` processes heard within ``within_s``."""
    now = time.time_ns()
    return {
        inst: hb.detail
        for (svc, inst), hb in system.heartbeats.items()
        if svc == service and now - hb.ts_ns < within_s * 1e9
    }


def held(system: System) -> dict[str, set[int]]:
    """router instance -> the partitions it says it holds."""
    return {
        inst: {int(p) for p in detail.get("partitions", "").split(",") if p}
        for inst, detail in live(system, "router").items()
    }


async def _true(value: bool) -> bool:
    return value


def metric_at(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def send(om: OrderMeshClient, n: int, intents: dict[str, Decimal], sent: asyncio.Event, at: int) -> None:
    """``n`` market orders over every account, both sides; ``sent`` is set once ``at`` of them are stored."""
    for i in range(n):
        qty = D("0.01") * (1 + i % 3)
        side = Side.BUY if i % 2 == 0 else Side.SELL
        intent_id = await om.submit(om.intent(side, "EURUSD", qty, account=ACCOUNTS[i % len(ACCOUNTS)]))
        intents[intent_id] = qty
        if i + 1 == at:
            sent.set()
        if i % 20 == 19:
            await asyncio.sleep(0)  # let reports in while sending


async def lease_of(om: OrderMeshClient, key: str) -> LeaseRecord:
    entry = await (await om.bus.kv(KV_LEASES)).get(key)
    assert entry.value
    return msgspec.msgpack.decode(entry.value, type=LeaseRecord)


@pytest.mark.timeout(300)
async def test_routers_share_the_partitions_and_a_killed_owner_is_replaced(tmp_path: Path) -> None:
    with NatsCluster(tmp_path / "nats") as cluster:
        config = write_config(tmp_path)
        async with System(cluster.url, tmp_path, config=config) as system:
            for name in ("keeper", "sizer", "gateway"):
                system.start(name)
            system.start("router-a", "--instance", "router-a", service="router")
            system.start("router-b", "--instance", "router-b", service="router")
            await system.wait_ready("keeper", "sizer", "gateway", "router", timeout=60)

            async def shared_out() -> bool:
                h = held(system)
                return len(h) == 2 and all(len(p) == 2 for p in h.values()) and set().union(*h.values()) == {0, 1, 2, 3}

            await eventually(shared_out, timeout=30, what="two routers holding two partitions each")
            async with OrderMeshClient("s-scale", url=cluster.url) as om:
                # both routers carry load
                intents: dict[str, Decimal] = {}
                await send(om, 80, intents, asyncio.Event(), 0)
                await invariants.check(om, intents)
                urls = {inst: system.heartbeats[("router", inst)].metrics_url for inst in ("router-a", "router-b")}
                for inst, url in urls.items():
                    assert url and metric_at(url, "ordermesh_orders_total", status="SUBMITTED") > 0, inst

                # SIGKILL the owner of acct-0's partition under load
                p = partition_of("acct-0", PARTITIONS)
                victim = next(inst for inst, parts in held(system).items() if p in parts)
                survivor = ({"router-a", "router-b"} - {victim}).pop()
                old = await lease_of(om, router_lease(p))
                assert old.holder == victim
                sent = asyncio.Event()
                load = asyncio.ensure_future(send(om, 400, intents, sent, 100))
                await sent.wait()
                system.kill(victim)
                await eventually(
                    lambda: _true(held(system).get(survivor) == {0, 1, 2, 3}),
                    timeout=TTL + 10,
                    what="the survivor to take every partition within the lease ttl and a few seconds",
                )
                await load
                await invariants.check(om, intents, timeout=90)
                new = await lease_of(om, router_lease(p))
                assert new.holder == survivor and new.token > old.token

                # the deposed router's token is refused by the gateway: its command is not placed
                zombie = PlaceOrder(
                    command_id="zombie-1",
                    client_order_id="om-zombie-1",
                    intent_id="zombie-intent-1",
                    strategy_id="s-scale",
                    account="acct-0",
                    broker_id="paper",
                    symbol="EURUSD",
                    side=Side.BUY,
                    order_type=OrderType.MARKET,
                    quantity=D("0.01"),
                    fence=Fence(lease=router_lease(p), token=old.token),
                )
                await om.bus.publish(om.subjects.cmd("paper"), zombie, msg_id=zombie.command_id)

                async def refused() -> bool:
                    rec = await invariants.read_exec(om.bus)
                    return any(isinstance(r, OrderRejected) for r in rec.refusals["zombie-intent-1"])

                await eventually(refused, timeout=20, what="the gateway to refuse the deposed router's command")
                rec = await invariants.read_exec(om.bus)
                assert not rec.fills["zombie-intent-1"]
                (rejected,) = rec.refusals["zombie-intent-1"]
                assert "fenced" in rejected.reason and survivor in rejected.reason
                assert (await om.bus.js.stream_info(COMMANDS)).config.num_replicas == 3


def dip_books(path: Path, high_rows: int) -> Path:
    """EURUSD at 1.0850 for ``high_rows`` steps, then at 1.0700 for 20: a resting buy at 1.0750 fills in the dip."""
    rows = ["seq,symbol,bids,asks"]
    for seq in range(1, high_rows + 1):
        rows.append(f"{seq},EURUSD,1.08495@100,1.08505@100")
    for seq in range(high_rows + 1, high_rows + 21):
        rows.append(f"{seq},EURUSD,1.06995@100,1.07005@100")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.timeout(300)
async def test_a_killed_active_gateway_is_replaced_by_the_standby_and_resting_fills_are_reported_once(
    tmp_path: Path,
) -> None:
    # 240 steps of 50 ms above the resting orders: the dip comes ~12 s after the gateway that replays it starts
    config = write_config(tmp_path, books=dip_books(tmp_path / "books.csv", 240))
    with NatsCluster(tmp_path / "nats") as cluster:
        async with System(cluster.url, tmp_path, config=config) as system:
            for name in ("keeper", "sizer", "router"):
                system.start(name)
            system.start("gw-a", "--instance", "gw-a", service="gateway")
            await system.wait_ready("keeper", "sizer", "router", "gateway", timeout=60)
            system.start("gw-b", "--instance", "gw-b", service="gateway")

            def roles() -> dict[str, str]:
                return {inst: d.get("role", "") for inst, d in live(system, "gateway").items()}

            await eventually(
                lambda: _true(roles() == {"gw-a": "active", "gw-b": "standby"}),
                timeout=30,
                what="gw-a active and gw-b standby",
            )
            async with OrderMeshClient("s-standby", url=cluster.url) as om:
                assert (await lease_of(om, gateway_lease("paper"))).holder == "gw-a"
                resting = {}
                for account in ACCOUNTS:
                    qty = D("0.05")
                    intent_id = await om.buy("EURUSD", qty, limit_price=D("1.07500"), account=account)
                    resting[intent_id] = qty

                async def all_accepted() -> bool:
                    last = await om.bus.stream_last_seq(EXEC)
                    seen = set()
                    for seq in range(1, last + 1):
                        event = decode_any((await om.bus.js.get_msg(EXEC, seq)).data)
                        if isinstance(event, OrderAccepted):
                            seen.add(event.intent_id)
                    return seen >= set(resting)

                await eventually(all_accepted, timeout=20, what="the resting orders accepted by gw-a")
                intents = dict(resting)
                sent = asyncio.Event()
                load = asyncio.ensure_future(send(om, 120, intents, sent, 40))
                await sent.wait()
                system.kill("gw-a")
                await eventually(
                    lambda: _true(roles().get("gw-b") == "active"), timeout=TTL + 15, what="gw-b to take over"
                )
                await load
                # the resting orders fill in the dip that gw-b's market brings, each reported once
                rec = await invariants.check(om, intents, timeout=120)
                for intent_id, qty in resting.items():
                    assert sum((f.last_qty for f in rec.fills[intent_id]), D(0)) == qty
                assert (await lease_of(om, gateway_lease("paper"))).holder == "gw-b"


async def all_current(om: OrderMeshClient) -> None:
    """Every stream and bucket has its three replicas again, all caught up (a node is back in full)."""

    async def current() -> bool:
        names = [c.name or "" for c in om.bus.topology.streams()] + [
            f"KV_{b.bucket}" for b in om.bus.topology.buckets()
        ]
        try:
            for name in names:
                cl = (await om.bus.js.stream_info(name)).cluster
                if cl is None or cl.leader is None or len(cl.replicas or []) != 2:
                    return False
                if not all(r.current and not r.offline for r in cl.replicas or []):
                    return False
        except Exception:
            return False
        return True

    await eventually(current, timeout=60, what="every stream's replicas current again")


@pytest.mark.timeout(300)
async def test_a_killed_nats_node_and_then_the_stream_leaders_lose_nothing(tmp_path: Path) -> None:
    with NatsCluster(tmp_path / "nats") as cluster:
        # the default lease ttl: a holder rides out a leader election of the lease bucket without losing it
        config = write_config(tmp_path, ttl=6.0)
        async with System(cluster.url, tmp_path, config=config) as system:
            for name in ("keeper", "sizer", "gateway"):
                system.start(name)
            system.start("router-a", "--instance", "router-a", service="router")
            system.start("router-b", "--instance", "router-b", service="router")
            await system.wait_ready("keeper", "sizer", "gateway", "router", timeout=60)
            async with OrderMeshClient("s-nodes", url=cluster.url) as om:
                intents: dict[str, Decimal] = {}
                # a node (the last one: not necessarily a leader) SIGKILLed under load, then back
                sent = asyncio.Event()
                load = asyncio.ensure_future(send(om, 120, intents, sent, 40))
                await sent.wait()
                cluster.nodes[2].kill()
                await load
                await invariants.check(om, intents, timeout=120)
                cluster.nodes[2].start(30)
                await all_current(om)

                # then the leaders of the order path's streams, one at a time, each back before the next
                for stream in (COMMANDS, EXEC):
                    leader = (await om.bus.js.stream_info(stream)).cluster.leader
                    node = next(n for n in cluster.nodes if n.name == leader)
                    sent = asyncio.Event()
                    load = asyncio.ensure_future(send(om, 60, intents, sent, 20))
                    await sent.wait()
                    node.kill()
                    await load
                    await invariants.check(om, intents, timeout=120)
                    node.start(30)
                    await all_current(om)
