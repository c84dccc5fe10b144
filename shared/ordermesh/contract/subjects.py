"""Subjects, JetStream streams, consumers and KV buckets: the one place that names them.

Provisioning is idempotent: a stream or bucket that exists is updated to the configured shape (never
deleted, never purged), so every service can call :func:`provision` at start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

#: Characters NATS gives a meaning inside a subject; escaped as %XX so any symbol becomes one token.
_UNSAFE = re.compile(r"[.*>%\s]")


def _escape(char: str, marker: str) -> str:
    return "".join(f"{marker}{b:02X}" for b in char.encode())


def token(value: str) -> str:
    """Make ``value`` a single, reversible subject token (``BTC/USDT:USDT`` stays readable).

    Each unsafe character becomes its UTF-8 bytes as ``%XX``, so distinct values never share a token."""
    if not value:
        raise ValueError("a subject token cannot be empty")
    return _UNSAFE.sub(lambda m: _escape(m.group(), "%"), value)


def untoken(value: str) -> str:
    return re.sub(r"(?:%[0-9A-F]{2})+", lambda m: bytes.fromhex(m.group().replace("%", "")).decode(), value)


#: ``=`` is the escape marker, so it is escaped itself; ``.`` separates key parts.
_KV_UNSAFE = re.compile(r"[^-/_a-zA-Z0-9]")


_KV_SAFE = re.compile(r"[-/_a-zA-Z0-9]+")


def kv_key(*parts: str) -> str:
    """A JetStream KV key from parts (KV keys allow only ``[-/_=.a-zA-Z0-9]``; ``.`` separates parts)."""
    out = []
    for part in parts:
        if _KV_SAFE.fullmatch(part):  # the common case (ids, broker ids): nothing to escape
            out.append(part)
            continue
        if not part:
            raise ValueError("a KV key part cannot be empty")
        out.append(_KV_UNSAFE.sub(lambda m: _escape(m.group(), "="), part))
    return ".".join(out)


def kv_key_parts(key: str) -> list[str]:
    """The parts :func:`kv_key` was built from."""
    unescape = re.compile(r"(?:=[0-9A-F]{2})+")
    return [unescape.sub(lambda m: bytes.fromhex(m.group().replace("=", "")).decode(), p) for p in key.split(".")]


#: Control requests the router answers on ``<prefix>.ctl.<name>``; those in STRATEGY_CONTROLS also on
#: ``<prefix>.ctl.<name>.<strategy>`` (what a strategy's identity may publish).
CONTROLS = ("trading", "cancel", "cancel_all", "registry.reload")
STRATEGY_CONTROLS = ("cancel", "cancel_all")


class Subjects:
    """Subject builders under one prefix (default ``om``)."""

    def __init__(self, prefix: str = "om") -> None:
        if not prefix or _UNSAFE.search(prefix):
            raise ValueError(f"invalid subject prefix {prefix!r}")
        self.prefix = prefix

    def intent(self, strategy_id: str) -> str:
        return f"{self.prefix}.intent.{token(strategy_id)}"

    def order(self, account: str) -> str:
        return f"{self.prefix}.order.{token(account)}"

    def cmd(self, broker_id: str) -> str:
        return f"{self.prefix}.cmd.{token(broker_id)}"

    def exec(self, broker_id: str, strategy_id: str) -> str:
        return f"{self.prefix}.exec.{token(broker_id)}.{token(strategy_id)}"

    def reject(self, strategy_id: str) -> str:
        return f"{self.prefix}.reject.{token(strategy_id)}"

    def md(self, broker_id: str, symbol: str) -> str:
        return f"{self.prefix}.md.{token(broker_id)}.{token(symbol)}"

    def health(self, service: str, instance: str) -> str:
        return f"{self.prefix}.health.{token(service)}.{token(instance)}"

    def ctl(self, name: str, strategy_id: str | None = None) -> str:
        """A control subject; a request about one strategy's orders carries the strategy in its last token, so
        the server's permissions can let a strategy cancel its own orders and nobody else's."""
        if strategy_id is None:
            return f"{self.prefix}.ctl.{name}"
        if name not in STRATEGY_CONTROLS:
            raise ValueError(f"control {name!r} is not scoped by strategy")
        return f"{self.prefix}.ctl.{name}.{token(strategy_id)}"

    def parse_ctl(self, subject: str) -> tuple[str, str | None] | None:
        """``(name, strategy id or None)`` of a control subject, or None if it is not one."""
        head = f"{self.prefix}.ctl."
        if not subject.startswith(head):
            return None
        rest = subject[len(head) :]
        if rest in CONTROLS:
            return rest, None
        name, _, tok = rest.rpartition(".")
        if name in STRATEGY_CONTROLS and tok:
            return name, untoken(tok)
        return None

    @property
    def all_ctl(self) -> str:
        return f"{self.prefix}.ctl.>"

    def q(self, name: str) -> str:
        return f"{self.prefix}.q.{name}"

    def partition_ctl(self, partition: int) -> str:
        """Where the router owning ``partition`` answers control requests about its orders (a router that receives
        one on ``ctl`` for another router's partition forwards it here)."""
        return f"{self.prefix}.router.p{partition}.ctl"

    # wildcards
    @property
    def all_intents(self) -> str:
        return f"{self.prefix}.intent.>"

    @property
    def all_orders(self) -> str:
        return f"{self.prefix}.order.>"

    @property
    def all_exec(self) -> str:
        return f"{self.prefix}.exec.>"

    @property
    def all_rejects(self) -> str:
        return f"{self.prefix}.reject.>"

    @property
    def all_health(self) -> str:
        return f"{self.prefix}.health.>"

    def equity(self, account: str) -> str:
        return f"{self.prefix}.equity.{token(account)}"

    @property
    def all_equity(self) -> str:
        return f"{self.prefix}.equity.>"

    def recon(self, broker_id: str) -> str:
        return f"{self.prefix}.recon.{token(broker_id)}"

    def strategy_exec(self, strategy_id: str) -> str:
        return f"{self.prefix}.exec.*.{token(strategy_id)}"


# -------------------------------------------------------------------------------------- streams

INTENTS = "OM_INTENTS"
ORDERS = "OM_ORDERS"
COMMANDS = "OM_COMMANDS"
EXEC = "OM_EXEC"
EQUITY = "OM_EQUITY"

KV_ACCOUNTS = "om_accounts"
KV_POSITIONS = "om_positions"
KV_ORDERS = "om_orders"
KV_INSTRUMENTS = "om_instruments"
KV_KEEPER = "om_keeper"  # keeper snapshots (state + last applied exec sequence)
KV_CONTROL = "om_control"  # trading states, day-start equity (router)
KV_GATEWAY = "om_gateway"  # gateways: the command of every order still working, by broker and client order id
KV_MT5 = "om_mt5"  # MT5 gateways: client order id <-> order ticket <-> position id <-> deal tickets
KV_PAPER = "om_paper"  # the paper venue: tickets and orders (its account is rebuilt from their fills)
KV_LEASES = "om_leases"  # who owns what: router partitions, the active gateway of a broker (ordermesh.platform.lease)


def router_lease(partition: int) -> str:
    """The lease (KV ``om_leases`` key) of one account partition: its owner is the one router that routes it."""
    return f"router.p{partition}"


def gateway_lease(broker_id: str) -> str:
    """The lease of one broker connection: its holder is the active gateway, the others wait."""
    return kv_key("gateway", broker_id)


def router_durables(partition: int) -> tuple[str, str]:
    """The durable consumers of one partition on OM_ORDERS and OM_EXEC (its owner's; they outlive any owner).
    Partition 0's are ``router`` and ``router-exec`` (what the single router always used, so a system that adds
    partitions keeps its place); partition k's are ``router-p<k>`` and ``router-exec-p<k>``."""
    if partition == 0:
        return "router", "router-exec"
    return f"router-p{partition}", f"router-exec-p{partition}"


DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Topology:
    """Stream and bucket shapes, from configuration (replicas = 3 on a production cluster)."""

    subjects: Subjects
    replicas: int = 1
    duplicate_window_s: float = 600.0
    intents_max_age_s: float = 7 * DAY_S
    exec_max_age_s: float = 365 * DAY_S
    lease_ttl_s: float = 6.0

    def streams(self) -> list[StreamConfig]:
        s = self.subjects
        common = dict(
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=self.duplicate_window_s,
            discard=DiscardPolicy.OLD,
        )
        return [
            StreamConfig(
                name=INTENTS,
                subjects=[s.all_intents],
                retention=RetentionPolicy.LIMITS,
                max_age=self.intents_max_age_s,
                description="strategy intents; Nats-Msg-Id = intent_id",
                **common,
            ),
            StreamConfig(
                name=ORDERS,
                subjects=[s.all_orders],
                retention=RetentionPolicy.LIMITS,
                max_age=self.intents_max_age_s,
                description="sized orders, sizer -> router; Nats-Msg-Id = intent_id",
                **common,
            ),
            StreamConfig(
                name=COMMANDS,
                subjects=[f"{s.prefix}.cmd.>"],
                retention=RetentionPolicy.WORK_QUEUE,
                max_age=DAY_S,
                description="broker commands, router -> gateway (work queue); Nats-Msg-Id = command_id",
                **common,
            ),
            StreamConfig(
                name=EXEC,
                subjects=[s.all_exec, s.all_rejects],
                retention=RetentionPolicy.LIMITS,
                max_age=self.exec_max_age_s,
                description="execution reports and refusals; the durable fill history",
                **common,
            ),
            StreamConfig(
                name=EQUITY,
                subjects=[s.all_equity],
                retention=RetentionPolicy.LIMITS,
                max_age=self.exec_max_age_s,
                description="equity-curve points per account, keeper; Nats-Msg-Id = equity:<account>:<seq or time>",
                **common,
            ),
        ]

    def buckets(self) -> list[KeyValueConfig]:
        out = [
            KeyValueConfig(bucket=name, history=1, replicas=self.replicas, storage=StorageType.FILE)
            for name in (KV_ACCOUNTS, KV_POSITIONS, KV_ORDERS, KV_INSTRUMENTS, KV_KEEPER, KV_CONTROL)
        ]
        # Working orders' commands: an order that has rested for 30 days without a word is looked up at the broker.
        out.append(
            KeyValueConfig(
                bucket=KV_GATEWAY, history=1, replicas=self.replicas, storage=StorageType.FILE, ttl=30 * DAY_S
            )
        )
        out.append(KeyValueConfig(bucket=KV_PAPER, history=1, replicas=self.replicas, storage=StorageType.FILE))
        # MT5 gateways: the ticket map (client order id <-> order ticket <-> position id <-> deal tickets).
        out.append(KeyValueConfig(bucket=KV_MT5, history=1, replicas=self.replicas, storage=StorageType.FILE))
        # Leases expire by the bucket's max age: a holder that stops renewing is gone after lease_ttl_s.
        out.append(
            KeyValueConfig(
                bucket=KV_LEASES, history=1, replicas=self.replicas, storage=StorageType.FILE, ttl=self.lease_ttl_s
            )
        )
        return out


#: The stream fields provisioning owns; every other field (limits an operator set, placement, ...) is left as found.
OWNED_FIELDS = ("subjects", "retention", "max_age", "description", "storage", "duplicate_window", "discard")


def merged_stream(existing: StreamConfig, wanted: StreamConfig) -> StreamConfig | None:
    """``existing`` with the fields provisioning owns brought to ``wanted`` and a replica count never lowered; None
    when nothing differs (no update is sent at all)."""
    changes = {f: getattr(wanted, f) for f in OWNED_FIELDS if getattr(existing, f) != getattr(wanted, f)}
    if (existing.num_replicas or 1) < (wanted.num_replicas or 1):
        changes["num_replicas"] = wanted.num_replicas
    return existing.evolve(**changes) if changes else None


async def provision(js: JetStreamContext, topology: Topology) -> None:
    """Create what is missing; bring what exists to the configured shape in the fields ordermesh owns. Never
    deletes, purges, lowers a replica count or drops a setting someone else made."""
    for cfg in topology.streams():
        try:
            info = await js.stream_info(cfg.name or "")
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(cfg)
                continue
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != 10058:  # 10058: created by another process meanwhile
                    raise
            info = await js.stream_info(cfg.name or "")
        update = merged_stream(info.config, cfg)
        if update is not None:
            await js.update_stream(update)
    for kv in topology.buckets():
        try:
            await js.key_value(kv.bucket)  # an existing bucket is left as it is
        except nats.js.errors.BucketNotFoundError:
            await js.create_key_value(kv)
