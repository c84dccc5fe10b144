"""deploy/compose.yaml's topology, run for real on this machine: its 3-node NATS cluster and every ordermesh process it
lists, with the same commands, the same configuration file and the same generated credentials, each process seeing
only what compose mounts into its container (its own seed in its own /run/secrets); loopback addresses and free
ports in place of the service names and the fixed ports. A strategy sends orders through the SDK, and then:
every intent has exactly one outcome, a fill of the whole quantity; every keeper's positions equal the sum of the
fills in OM_EXEC; no NATS node refused anything to anyone; every process is still up and passes the image's health
check. (Prometheus, Grafana and Alertmanager are not run here: tests/deploy/test_compose.py checks their files.)"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import nats
import pytest

from ordermesh.contract.codec import HEARTBEAT_CODEC, BadMessage, decode_any
from ordermesh.contract.subjects import EXEC
from ordermesh.contract.wire import OrderFilled, Side
from ordermesh.platform.auth import inbox_prefix, read_seed, seed_path
from ordermesh.platform.bus import Bus
from ordermesh.platform.config import OrderMeshConfig, load_config
from ordermesh.platform.natsserver import NatsServer, free_port
from ordermesh.sdk import OrderMeshClient, is_final
from tests.deploy.common import (
    DEPLOY,
    DOCKER,
    ROOT,
    environment,
    flag,
    load_compose,
    materialize,
    nats_services,
    ordermesh_services,
    parse_cli,
)
from tests.harness import eventually

D = Decimal
COMPOSE = load_compose()
STRATEGY = "my-strategy"  # a strategy identity of the default configuration (nats.auth.strategies)
#: (side, symbol, lots): market orders of one strategy, sent at once
ORDERS = [
    (Side.BUY, "EURUSD", D("0.10")),
    (Side.BUY, "EURUSD", D("0.20")),
    (Side.SELL, "EURUSD", D("0.05")),
    (Side.BUY, "GBPUSD", D("0.30")),
    (Side.SELL, "GBPUSD", D("0.10")),
    (Side.SELL, "BTCUSD", D("0.010")),
    (Side.BUY, "BTCUSD", D("0.020")),
] * 3


#: compose restarts a process that exits (``restart: unless-stopped``) without end; here one that keeps exiting fails
#: the test after this many restarts.
MAX_RESTARTS = 3


@dataclass
class Process:
    """One compose service's process: its container's files under ``root``, its /healthz on ``port``. Restarted
    when it exits, as compose's ``restart: unless-stopped`` does, until the test stops it."""

    name: str
    argv: list[str]
    root: Path
    port: int
    instance: str
    kind: str
    env: dict[str, str]
    log: Path
    proc: asyncio.subprocess.Process | None = None
    exits: list[int] = field(default_factory=list)
    stopping: bool = False
    supervisor: asyncio.Task[None] | None = None

    async def spawn(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.cli",
                *self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,  # the image's WORKDIR holds deploy/instruments.yaml as the repository does
                start_new_session=True,
            )

    async def run(self) -> None:
        """Start, and restart on exit (compose's restart policy) at most MAX_RESTARTS times."""
        await self.spawn()
        while True:
            assert self.proc is not None
            self.exits.append(await self.proc.wait())
            if self.stopping or len(self.exits) > MAX_RESTARTS:
                return
            await self.spawn()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self) -> None:
        self.stopping = True
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.supervisor is not None:
            await self.supervisor


@dataclass
class Topology:
    nodes: dict[str, NatsServer]
    processes: dict[str, Process]
    client: OrderMeshConfig  # a strategy's configuration on this host: every generated seed in one folder
    auth_dir: Path
    logs: Path
    beats: dict[str, asyncio.Event] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes.values())

    def tail(self, lines: int = 20) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


def translate_url(url: str, nodes: dict[str, NatsServer]) -> str:
    """The compose file's NATS URLs (service names) as this machine's (the nodes' loopback ports)."""

    def node(m: re.Match[str]) -> str:
        return nodes[m.group(1)].url

    translated = re.sub(r"nats://([\w-]+):\d+", node, url)
    assert translated.count("127.0.0.1") == len(url.split(",")), url
    return translated


def start_nats(tmp_path: Path, compose_auth: Path) -> dict[str, NatsServer]:
    services = nats_services(COMPOSE)
    client_ports = {name: free_port() for name in services}
    route_ports = {name: free_port() for name in services}
    nodes = {}
    for name, svc in services.items():
        root = tmp_path / name
        placed = materialize(COMPOSE, svc, root, compose_auth)
        config = placed[PurePosixPath(flag(svc["command"], "--config"))]
        nodes[name] = NatsServer(
            root / "data",  # the node's volume (--store_dir)
            port=client_ports[name],
            cluster_port=route_ports[name],
            routes=[f"nats://127.0.0.1:{p}" for other, p in route_ports.items() if other != name],
            monitor_port=free_port(),
            config_file=config,
        )
    for node in nodes.values():
        node.start()
    return nodes


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


async def cluster_ready(nodes: dict[str, NatsServer], admin_seed: str) -> bool:
    """Every node's /healthz (compose's health check) answers 200 and JetStream has a meta leader."""
    codes = await asyncio.gather(*(asyncio.to_thread(healthz, n.monitor_port) for n in nodes.values()))
    if any(code != 200 for code in codes):
        return False
    try:
        nc = await nats.connect(
            [n.url for n in nodes.values()],
            nkeys_seed_str=admin_seed,
            inbox_prefix=inbox_prefix("admin"),
            allow_reconnect=False,
            connect_timeout=2,
        )
    except Exception:
        return False
    try:
        await nc.jetstream().account_info()
        return True
    except Exception:
        return False
    finally:
        await nc.close()


def process_env(svc: dict[str, Any], proc: Process, nodes: dict[str, NatsServer]) -> dict[str, str]:
    """The container's environment on this machine: its compose environment with the NATS URLs on loopback and
    the configuration's container paths under the process's own root; nothing ORDERMESH from the test's own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORDERMESH")}
    env = environment(svc)
    env["ORDERMESH_CONFIG"] = str(proc.root / PurePosixPath(env["ORDERMESH_CONFIG"]).relative_to("/"))
    env["ORDERMESH__NATS__URL"] = translate_url(env["ORDERMESH__NATS__URL"], nodes)
    config = load_config(env["ORDERMESH_CONFIG"], env=env)
    # where the container's files are: the seeds compose mounts, the console's volume
    env["ORDERMESH__NATS__AUTH__DIR"] = str(proc.root / PurePosixPath(config.nats.auth.dir).relative_to("/"))
    if config.console.token_file:
        token = proc.root / PurePosixPath(config.console.token_file).relative_to("/")
        token.parent.mkdir(parents=True, exist_ok=True)
        env["ORDERMESH__CONSOLE__TOKEN_FILE"] = str(token)
    env["ORDERMESH__HTTP__HOST"] = "127.0.0.1"  # loopback in place of the container's 0.0.0.0
    return {**base, **env}


@pytest.fixture
async def topology(tmp_path: Path, compose_auth: Path) -> AsyncIterator[Topology]:
    """The compose file's NATS nodes and ordermesh processes, every one of them (two routers sharing the
    partitions, an active and a standby paper gateway: ``ordermesh.platform.lease``)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    nodes = start_nats(tmp_path, compose_auth)
    processes: dict[str, Process] = {}
    watcher: Bus | None = None
    try:
        admin = read_seed(seed_path(compose_auth, "admin")).decode()
        await eventually(lambda: cluster_ready(nodes, admin), timeout=30, what="the NATS cluster ready")
        client_env = {"ORDERMESH__NATS__URL": ",".join(n.url for n in nodes.values())}
        client_env["ORDERMESH__NATS__AUTH__DIR"] = str(compose_auth)
        client = load_config(DOCKER / "ordermesh.yaml", env=client_env)
        top = Topology(nodes, processes, client, compose_auth, logs)
        # heartbeats, read as the observer (the process a heartbeat names is its --instance)
        watcher = Bus(client.nats, "topology-test", identity="observer")
        await watcher.connect()

        async def on_health(msg: Any) -> None:
            try:
                hb = HEARTBEAT_CODEC.decode(msg.data)
            except BadMessage:
                return
            top.beats.setdefault(hb.instance, asyncio.Event()).set()

        await watcher.subscribe(f"{watcher.subjects.prefix}.health.>", on_health)
        for name, svc in ordermesh_services(COMPOSE).items():
            args = parse_cli(svc["command"])
            port = free_port()
            argv = list(svc["command"])
            argv[argv.index("--http-port") + 1] = str(port)
            root = tmp_path / name
            materialize(COMPOSE, svc, root, compose_auth)
            proc = Process(name, argv, root, port, args.instance, args.command, {}, logs / f"{name}.log")
            proc.env = process_env(svc, proc, nodes)
            proc.supervisor = asyncio.create_task(proc.run())
            processes[name] = proc
        yield top
    finally:
        await asyncio.gather(*(p.stop() for p in processes.values()))
        if watcher is not None:
            await watcher.close()
        for node in nodes.values():
            node.stop()


async def all_healthy(top: Topology) -> bool:
    for p in top.processes.values():
        if len(p.exits) > MAX_RESTARTS:
            raise AssertionError(f"{p.name} keeps exiting ({p.exits}):\n{top.tail()}")
    codes = await asyncio.gather(*(asyncio.to_thread(healthz, p.port) for p in top.processes.values()))
    beating = all(
        top.beats.get(p.instance, asyncio.Event()).is_set() for p in top.processes.values() if p.kind != "console"
    )
    return beating and all(code == 200 for code in codes)


async def exec_history(top: Topology) -> list[Any]:
    """Every message of OM_EXEC, decoded, read as `admin` (backups' identity)."""
    seed = read_seed(seed_path(top.auth_dir, "admin")).decode()
    nc = await nats.connect(top.url.split(","), nkeys_seed_str=seed, inbox_prefix=inbox_prefix("admin"))
    try:
        js = nc.jetstream()
        info = await js.stream_info(EXEC)
        assert info.config.num_replicas == 3, "nats.replicas: 3 reached the streams"
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(EXEC, seq)
            out.append(decode_any(msg.data or b""))
        return out
    finally:
        await nc.close()


def keeper_positions(port: int) -> dict[tuple[str, str], float]:
    """A keeper's ``ordermesh_position_quantity`` series for the strategy: (account, symbol) -> lots."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("ordermesh_position_quantity{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if labels.get("strategy") == STRATEGY:
                out[(labels["account"], labels["symbol"])] = float(line.rsplit(" ", 1)[1])
    return out


async def test_compose_topology_fills_every_order_once_and_the_keepers_agree_with_the_fills(
    topology: Topology,
) -> None:
    top = topology
    await eventually(lambda: all_healthy(top), timeout=60, what="every compose process healthy and beating")
    listed = [parse_cli(s["command"]).command for s in ordermesh_services(COMPOSE).values()]
    assert len(listed) == 9 and len(top.processes) == 9
    assert listed.count("router") == 2 and listed.count("gateway") == 2

    async with OrderMeshClient(STRATEGY, config=top.client) as om:
        assert om.bus.identity == f"strategy-{STRATEGY}"
        sent = await asyncio.gather(
            *(om.buy(sym, qty) if side is Side.BUY else om.sell(sym, qty) for side, sym, qty in ORDERS)
        )
        outcomes = await asyncio.gather(*(om.wait(intent_id, timeout=12) for intent_id in sent))
        for (side, symbol, qty), outcome in zip(ORDERS, outcomes, strict=True):
            assert isinstance(outcome, OrderFilled), f"{side} {qty} {symbol}: {outcome}"

    # every intent exactly one final outcome, its whole quantity filled once, in the exec stream
    history = await exec_history(top)
    wanted = dict(zip(sent, ORDERS, strict=True))
    finals: dict[str, list[Any]] = {i: [] for i in sent}
    filled: dict[str, Decimal] = dict.fromkeys(sent, D(0))
    net: dict[tuple[str, str], Decimal] = {}
    fill_ids: list[tuple[str, str]] = []
    for msg in history:
        intent_id = getattr(msg, "intent_id", None)
        if intent_id not in wanted:
            continue
        if is_final(msg):
            finals[intent_id].append(msg)
        if isinstance(msg, OrderFilled):
            fill_ids.append((msg.broker_id, msg.fill_id))
            filled[intent_id] += msg.last_qty
            signed = msg.last_qty if msg.side is Side.BUY else -msg.last_qty
            net[(msg.account, msg.symbol)] = net.get((msg.account, msg.symbol), D(0)) + signed
    assert {i: len(f) for i, f in finals.items()} == dict.fromkeys(sent, 1), "one outcome per intent"
    assert filled == {i: qty for i, (_, _, qty) in wanted.items()}, "each intent filled once, in full"
    assert len(fill_ids) == len(set(fill_ids)), "no fill reported twice"

    # the positions, from the keeper that answers the query and from each keeper's own books
    expected = {key: q for key, q in net.items() if q != 0}

    async def query_agrees() -> bool:
        async with OrderMeshClient(STRATEGY, config=top.client) as om:
            positions = await om.positions(strategy_id=STRATEGY)
        return {(p.account, p.symbol): p.quantity for p in positions if p.quantity} == expected

    await eventually(query_agrees, timeout=20, what="the keeper's positions equal to the fills")
    for p in top.processes.values():
        if p.kind == "keeper":

            async def books_agree(port: int = p.port) -> bool:
                seen = await asyncio.to_thread(keeper_positions, port)
                return seen.keys() == expected.keys() and all(
                    math.isclose(seen[k], float(v), abs_tol=1e-9) for k, v in expected.items()
                )

            await eventually(books_agree, timeout=20, what=f"{p.name}'s positions equal to the fills")

    # nothing refused by any node (the server logs every refused publish or subscribe), nobody down
    for name, node in top.nodes.items():
        refused = [ln for ln in node.log_file.read_text().splitlines() if "Violation" in ln]
        assert refused == [], f"{name} refused: {refused[:5]}"
    restarted = {p.name: p.exits for p in top.processes.values() if p.exits}
    if restarted:  # compose restarts them too; say so (exit codes per process)
        warnings.warn(f"processes exited and were restarted (exit codes): {restarted}", stacklevel=1)
    for p in top.processes.values():
        assert p.alive, f"{p.name} is down"
        check = await asyncio.create_subprocess_exec(
            sys.executable,
            str(DEPLOY / "docker" / "healthcheck.py"),
            env={"ORDERMESH_HEALTH_PORT": str(p.port), "PATH": os.environ.get("PATH", "")},
            stderr=subprocess.PIPE,
        )
        _, err = await check.communicate()
        assert check.returncode == 0, f"{p.name}: {err.decode()}"
