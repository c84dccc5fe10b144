"""Least privilege on the bus: one NATS identity per role, the permissions NATS enforces for it, and the files.

NATS does the enforcing: each identity is an nkey user (an Ed25519 key pair; the server keeps only the public
key and checks a signature of its nonce, so no secret crosses the wire) with publish and subscribe permissions in
the server's ``authorization`` block. ordermesh only writes that block and one seed file per identity from the
``auth`` section of the configuration (``ordermesh auth generate``; ``ordermesh up`` does it on start).

Roles and what they may do (``p`` is the subject prefix, ``om`` by default):

* ``sizer``      reads ``OM_INTENTS``; publishes ``p.order.>`` and refusals ``p.reject.>``.
* ``router``     reads ``OM_ORDERS`` and ``OM_EXEC``; the only publisher of ``p.cmd.>``; answers ``p.ctl.>``.
* ``gateway-B``  reads only its own commands ``p.cmd.B``; the only publisher of ``p.exec.B.>`` and ``p.md.B.>``.
* ``keeper``     reads ``OM_EXEC``; publishes ``p.equity.>``; answers ``p.q.positions|account|reconcile``.
* ``strategy-S`` publishes only ``p.intent.S`` and its own cancels ``p.ctl.cancel[_all].S``; reads only its own
  reports (a consumer on ``OM_EXEC`` whose filter, carried in the API subject, is ``p.exec.*.S`` or
  ``p.reject.S``), its own inbox and the quotes ``p.md.>``; may ask the keeper's read-only queries; no JetStream
  administration.
* ``operator``   everything an observer may, plus control (``p.ctl.>``) and manual intents (``p.intent.>``).
* ``observer``   reads every stream, bucket and live subject; asks read-only queries; changes nothing.
* ``admin``      everything (``>``): provisioning by hand, backups, break-glass. No process uses it by default.

Every identity has its own inbox prefix (``_INBOX.<identity>``) and may subscribe only there, so one cannot read
the replies meant for another. Services create or update streams and buckets (never delete or purge them);
nobody but ``admin`` may delete or purge.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ordermesh.contract.subjects import (
    COMMANDS,
    EQUITY,
    EXEC,
    INTENTS,
    KV_ACCOUNTS,
    KV_CONTROL,
    KV_GATEWAY,
    KV_INSTRUMENTS,
    KV_KEEPER,
    KV_LEASES,
    KV_MT5,
    KV_ORDERS,
    KV_PAPER,
    KV_POSITIONS,
    ORDERS,
    Subjects,
    gateway_lease,
    kv_key,
    router_durables,
    token,
)
from ordermesh.platform.config import OrderMeshConfig

API = "$JS.API"
#: The identities the command line and the live view connect as (unless ``nats.identity`` says otherwise).
OPERATOR = "operator"
OBSERVER = "observer"
SERVICE_ROLES = ("sizer", "router", "keeper")
#: Durable consumers that services own: nobody else may create (and so re-point) a consumer of that name.
SERVICE_DURABLES = {INTENTS: ("sizer",), ORDERS: ("router",), EXEC: ("router-exec",)}
STREAMS = (INTENTS, ORDERS, COMMANDS, EXEC, EQUITY)
BUCKETS = (
    KV_ACCOUNTS,
    KV_POSITIONS,
    KV_ORDERS,
    KV_INSTRUMENTS,
    KV_KEEPER,
    KV_CONTROL,
    KV_GATEWAY,
    KV_PAPER,
    KV_MT5,
    KV_LEASES,
)
SEED_SUFFIX = ".nk"
SERVER_FILE = "nats-auth.conf"

_UNSAFE_NAME = re.compile(r"[^-_a-zA-Z0-9]")


class AuthError(Exception):
    """A problem with the auth files; the message is one line."""


def safe_name(value: str) -> str:
    """``value`` as one subject token and one file name (anything but ``[-_a-zA-Z0-9]`` becomes ``=XX``)."""
    if not value:
        raise ValueError("an identity name cannot be empty")
    return _UNSAFE_NAME.sub(lambda m: "".join(f"={b:02X}" for b in m.group().encode()), value)


def inbox_prefix(identity: str) -> str:
    return f"_INBOX.{safe_name(identity)}"


@dataclass(frozen=True, slots=True)
class Identity:
    """One NATS user. ``scope``: the broker id of a gateway, the strategy ids of a strategy."""

    name: str
    role: str
    scope: tuple[str, ...] = ()
    #: ``router.partitions``: the routers' durables are one per partition, and nobody else may take their names.
    partitions: int = 1


def gateway_identity(broker_id: str) -> str:
    return f"gateway-{broker_id}"


def strategy_identity(strategy_id: str) -> str:
    return f"strategy-{strategy_id}"


def identities(config: OrderMeshConfig) -> list[Identity]:
    """Every identity the configuration calls for: the services, one gateway per configured broker, one per
    strategy (``nats.auth.strategies`` and the demo's), the operators, the observers and ``admin``."""
    auth = config.nats.auth
    n = config.router.partitions
    out = [Identity(role, role, partitions=n) for role in SERVICE_ROLES]
    out += [Identity(gateway_identity(b), "gateway", (b,), partitions=n) for b in sorted(config.brokers)]
    strategies = dict.fromkeys([*auth.strategies, *config.demo.strategies])
    out += [Identity(strategy_identity(s), "strategy", (s,), partitions=n) for s in strategies]
    out += [Identity(name, "operator", partitions=n) for name in auth.operators]
    out += [Identity(name, "observer", partitions=n) for name in auth.observers]
    out.append(Identity("admin", "admin", partitions=n))
    names = [i.name for i in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise AuthError(f"identity names used twice: {', '.join(dupes)}")
    return out


@dataclass(slots=True)
class Permissions:
    publish: set[str] = field(default_factory=set)
    publish_deny: set[str] = field(default_factory=set)
    subscribe: set[str] = field(default_factory=set)
    allow_responses: bool = False

    def to_conf(self) -> dict[str, object]:
        publish: dict[str, list[str]] = {"allow": sorted(self.publish)}
        if self.publish_deny:
            publish["deny"] = sorted(self.publish_deny)
        out: dict[str, object] = {"publish": publish, "subscribe": {"allow": sorted(self.subscribe)}}
        if self.allow_responses:
            # Reply to a request received (once, within NATS's default window) and to nothing else.
            out["allow_responses"] = True
        return out

    # ------------------------------------------------------------------------ JetStream grants

    def provision(self) -> None:
        """Create or update (never delete or purge) every stream and bucket."""
        for name in (*STREAMS, *(f"KV_{b}" for b in BUCKETS)):
            self.publish |= {f"{API}.STREAM.CREATE.{name}", f"{API}.STREAM.UPDATE.{name}", f"{API}.STREAM.INFO.{name}"}

    def consume(self, stream: str, durable: str) -> None:
        """Bind to (and create) the durable pull consumer ``durable`` of ``stream``, fetch and ack."""
        self.publish |= {
            f"{API}.CONSUMER.CREATE.{stream}.{durable}",
            f"{API}.CONSUMER.CREATE.{stream}.{durable}.>",
            f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
            f"{API}.CONSUMER.INFO.{stream}.{durable}",
            f"{API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
        }

    def ordered(self, stream: str) -> None:
        """Ordered consumers (unnamed, so they cannot take over a named one) on ``stream``, any filter."""
        self.publish |= {
            f"{API}.CONSUMER.CREATE.{stream}",
            f"{API}.CONSUMER.INFO.{stream}.*",
            f"{API}.STREAM.INFO.{stream}",
            f"$JS.FC.{stream}.>",
        }

    def feed(self, stream: str, filter_subject: str, partitions: int = 1) -> None:
        """Named ordered feeds on ``stream`` whose filter is ``filter_subject`` (or narrower within it)."""
        self.publish.add(f"{API}.CONSUMER.CREATE.{stream}.*.{filter_subject}")
        self.publish.add(f"{API}.STREAM.INFO.{stream}")
        self.publish_deny |= {f"{API}.CONSUMER.CREATE.{stream}.{d}.>" for d in service_durables(stream, partitions)}

    def kv_read(self, bucket: str) -> None:
        stream = f"KV_{bucket}"
        self.publish |= {
            f"{API}.STREAM.INFO.{stream}",
            f"{API}.STREAM.MSG.GET.{stream}",
            f"{API}.DIRECT.GET.{stream}",
            f"{API}.DIRECT.GET.{stream}.>",
        }

    def kv_watch(self, bucket: str) -> None:
        self.kv_read(bucket)
        self.ordered(f"KV_{bucket}")

    def kv_write(self, bucket: str, keys: str = ">") -> None:
        self.kv_read(bucket)
        self.publish.add(f"$KV.{bucket}.{keys}")


def service_durables(stream: str, partitions: int = 1) -> tuple[str, ...]:
    """The durables of ``stream`` that services own (with one router durable per partition)."""
    names = list(SERVICE_DURABLES.get(stream, ()))
    for k in range(partitions):
        orders, exec_ = router_durables(k)
        names += [orders] if stream == ORDERS else [exec_] if stream == EXEC else []
    return tuple(dict.fromkeys(names))


def permissions(identity: Identity, subjects: Subjects) -> Permissions:
    """What ``identity`` may publish and subscribe to; everything else the server refuses."""
    p = subjects.prefix
    perm = Permissions(subscribe={f"{inbox_prefix(identity.name)}.>"})
    role = identity.role
    if role == "admin":
        perm.publish.add(">")
        perm.subscribe.add(">")
        return perm
    if role in (*SERVICE_ROLES, "gateway"):
        perm.provision()
        perm.publish.add(f"{p}.health.{token(role)}.>")
    if role == "sizer":
        perm.consume(INTENTS, "sizer")
        perm.publish |= {f"{p}.order.>", f"{p}.reject.>"}
        perm.kv_watch(KV_INSTRUMENTS)
        perm.kv_watch(KV_ACCOUNTS)
        perm.subscribe.add(f"{p}.md.>")
    elif role == "router":
        for k in range(identity.partitions):
            orders, exec_ = router_durables(k)
            perm.consume(ORDERS, orders)
            perm.consume(EXEC, exec_)
        perm.kv_write(KV_LEASES, "router.>")
        perm.kv_watch(KV_LEASES)
        perm.kv_watch(KV_CONTROL)  # trading states another router set
        perm.publish.add(f"{p}.router.>")  # control requests forwarded to a partition's owner
        perm.subscribe |= {f"{p}.router.>", f"{p}.health.router.>"}
        perm.publish |= {f"{p}.cmd.>", f"{p}.reject.>"}
        perm.publish.add(f"{p}.intent.>")  # the kill switch on the daily loss limit flattens through the sizer
        perm.kv_write(KV_ORDERS)
        perm.kv_write(KV_CONTROL)
        perm.ordered(f"KV_{KV_ORDERS}")  # its open orders, loaded at start
        perm.kv_watch(KV_ACCOUNTS)
        perm.kv_watch(KV_INSTRUMENTS)
        perm.subscribe |= {f"{p}.md.>", f"{p}.health.gateway.>", f"{p}.ctl.>"}
        perm.allow_responses = True
    elif role == "keeper":
        perm.ordered(EXEC)
        perm.publish |= {f"{p}.equity.>", f"{p}.recon.>", f"{p}.q.broker_positions.*"}
        perm.kv_write(KV_KEEPER)
        perm.kv_write(KV_ACCOUNTS)
        perm.kv_write(KV_POSITIONS)
        perm.kv_read(KV_INSTRUMENTS)
        perm.subscribe |= {f"{p}.md.>", f"{p}.q.positions", f"{p}.q.account", f"{p}.q.reconcile"}
        perm.allow_responses = True
    elif role == "gateway":
        (broker_id,) = identity.scope
        b = token(broker_id)
        perm.consume(COMMANDS, f"gw-{broker_id}")
        perm.publish |= {f"{p}.exec.{b}.>", f"{p}.md.{b}.>"}
        own = f"{kv_key(broker_id)}.>"
        for bucket in (KV_GATEWAY, KV_INSTRUMENTS, KV_PAPER, KV_MT5):
            perm.kv_write(bucket, own)
            perm.ordered(f"KV_{bucket}")  # a gateway reloads its own keys by watching them
        perm.subscribe |= {f"{p}.q.unresolved.{b}", f"{p}.q.broker_positions.{b}"}
        perm.kv_write(KV_LEASES, gateway_lease(broker_id))  # active or standby
        perm.kv_watch(KV_LEASES)  # the routers' leases: commands from a deposed router are refused
        perm.allow_responses = True
    elif role == "strategy":
        for sid in identity.scope:
            s = token(sid)
            perm.publish |= {f"{p}.intent.{s}", f"{p}.ctl.cancel.{s}", f"{p}.ctl.cancel_all.{s}"}
            perm.feed(EXEC, f"{p}.exec.*.{s}", identity.partitions)
            perm.feed(EXEC, f"{p}.reject.{s}", identity.partitions)
        perm.publish |= {f"{p}.q.positions", f"{p}.q.account"}
        perm.subscribe.add(f"{p}.md.>")  # the market: quotes are what a strategy decides on
        perm.kv_read(KV_ORDERS)  # its orders' records, by client order id (unguessable: it holds the intent id)
    elif role in ("operator", "observer"):
        for stream in (*STREAMS, *(f"KV_{b}" for b in BUCKETS)):
            perm.ordered(stream)
        for bucket in BUCKETS:
            perm.kv_read(bucket)
        perm.feed(EXEC, f"{p}.exec.>", identity.partitions)
        perm.feed(EXEC, f"{p}.reject.>", identity.partitions)
        perm.publish |= {f"{p}.q.positions", f"{p}.q.account", f"{p}.q.reconcile", f"{p}.q.unresolved.*"}
        perm.subscribe |= {f"{p}.{kind}.>" for kind in ("intent", "order", "exec", "reject", "md", "health")}
        perm.subscribe |= {f"{p}.equity.>", f"{p}.recon.>"}
        if role == "operator":
            perm.publish |= {f"{p}.ctl.>", f"{p}.intent.>"}
    else:
        raise ValueError(f"unknown role {role!r}")
    return perm


# ------------------------------------------------------------------------------------ files


def seed_path(directory: str | os.PathLike[str], identity: str) -> Path:
    return Path(directory) / f"{safe_name(identity)}{SEED_SUFFIX}"


def read_seed(path: Path) -> bytes:
    seed = path.read_bytes().strip()
    if not seed.startswith(b"SU"):
        raise AuthError(f"{path}: not an nkey user seed")
    return seed


def new_seed() -> bytes:
    """A fresh nkey user seed (``SU...``), from the ``nkeys`` library NATS clients use."""
    import nacl.signing
    import nkeys

    return bytes(nkeys.encode_seed(bytes(nacl.signing.SigningKey.generate()), nkeys.PREFIX_BYTE_USER))


def public_key(seed: bytes) -> str:
    import nkeys

    return nkeys.from_seed(bytearray(seed)).public_key.decode()


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by its owner only (created 0600, never world-readable for a moment)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class Generated:
    server_config: Path
    seeds: dict[str, Path]
    created: tuple[str, ...]
    rotated: tuple[str, ...]


def generate(
    identities: Iterable[Identity],
    subjects: Subjects,
    directory: str | os.PathLike[str],
    *,
    rotate: Iterable[str] = (),
) -> Generated:
    """Write one seed per identity (kept if it exists, replaced if named in ``rotate``) and the server's
    ``authorization`` block; idempotent. The server must reload its configuration (``nats-server --signal
    reload``, or a restart) to take a change."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    rotate = set(rotate)
    users: list[dict[str, object]] = []
    seeds: dict[str, Path] = {}
    created: list[str] = []
    rotated: list[str] = []
    idents = list(identities)
    unknown = rotate - {i.name for i in idents}
    if unknown:
        raise AuthError(f"no identity named {', '.join(sorted(unknown))} in the auth configuration")
    for ident in idents:
        path = seed_path(out, ident.name)
        if path.exists() and ident.name not in rotate:
            seed = read_seed(path)
        else:
            (rotated if path.exists() else created).append(ident.name)
            seed = new_seed()
            write_private(path, seed + b"\n")
        seeds[ident.name] = path
        users.append({"nkey": public_key(seed), "permissions": permissions(ident, subjects).to_conf()})
    names = "\n".join(f"#   {u['nkey']}  {i.name} ({i.role})" for u, i in zip(users, idents, strict=True))
    text = (
        "# Generated by `ordermesh auth generate` from the `auth` section of the configuration: do not edit.\n"
        "# Include it from the server's configuration (`include nats-auth.conf`) or pass it with `-c`.\n"
        f"# Users (nkey public key, identity):\n{names}\n"
        + json.dumps({"authorization": {"users": users}}, indent=2)
        + "\n"
    )
    server_config = out / SERVER_FILE
    write_private(server_config, text.encode())
    return Generated(server_config, seeds, tuple(created), tuple(rotated))
