"""Leases in JetStream KV (bucket ``om_leases``): one holder at a time for a named piece of work, with a fencing
token.

NATS's own primitives, no consensus of our own: a lease is a key that is **created only if absent**
(``KV.create``: expected last subject sequence 0), **renewed by revision** (``KV.update`` with the revision the
holder last wrote: it fails once anyone else wrote the key, or once it expired) and **expires** by the bucket's
max age (the server removes a key not written for ``ttl``; then ``create`` succeeds for the next process). A
released lease is a delete marker, which ``create`` also replaces.

The **token** of a tenure is the revision of the write that created it: the bucket's sequence only grows, so a
later holder's token is always higher. Commands carry it (:class:`ordermesh.contract.wire.Fence`) and a gateway
refuses one whose token is lower than the highest it knows for that lease (:class:`Fences`).

A holder counts itself the holder until ``ttl - margin`` after it *sent* its last successful write: the server
wrote that later still, so the holder stops before the server can let anyone else in. A process paused past its
deadline (GC, SIGSTOP, a slow disk) may still send a command in flight; the fence is for that case.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
import structlog

log = structlog.get_logger("ordermesh.lease")


class LeaseRecord(msgspec.Struct, frozen=True, kw_only=True):
    """The value of a lease key: who holds it, and the tenure's token (0 in the write that creates the tenure:
    that write's own revision is the token)."""

    holder: str
    token: int = 0
    acquired_ns: int = 0


def lease_token(value: bytes | None, revision: int) -> tuple[str, int] | None:
    """(holder, token) of a lease entry; None for a deleted key or a value that is not a lease."""
    if not value:
        return None
    try:
        rec = msgspec.msgpack.decode(value, type=LeaseRecord)
    except msgspec.DecodeError:
        return None
    return rec.holder, rec.token or revision


class Lease:
    """One lease, held or not by this process (``holder``)."""

    def __init__(
        self, kv: Any, key: str, holder: str, ttl_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kv = kv
        self.key = key
        self.holder = holder
        self.ttl_s = ttl_s
        #: How long before the server's expiry the holder stops counting itself the holder.
        self.margin_s = max(0.5, ttl_s / 4)
        self._clock = clock
        self.token = 0  # this tenure's token; 0 when not held
        self.revision = 0  # the revision this process last wrote
        self._valid_until = 0.0
        self._acquired_ns = 0

    @property
    def held(self) -> bool:
        return self.token > 0 and self._clock() < self._valid_until

    def _record(self) -> bytes:
        return msgspec.msgpack.encode(LeaseRecord(holder=self.holder, token=self.token, acquired_ns=self._acquired_ns))

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it. True when this process holds it now."""
        if self.held:
            return True
        sent = self._clock()
        self.token = 0
        self._acquired_ns = time.time_ns()
        try:
            revision = await self.kv.create(self.key, self._record())
        except nats.js.errors.KeyWrongLastSequenceError:
            return False  # someone holds it
        except (TimeoutError, nats.errors.Error) as exc:
            # Unknown outcome: if the create landed, nobody (us included) can take the key until it expires.
            log.warning("lease create failed", lease=self.key, error=str(exc) or type(exc).__name__)
            return False
        self.token = self.revision = revision
        self._valid_until = sent + self.ttl_s - self.margin_s
        await self.renew()  # writes the token into the record, for those who watch later renewals
        return self.held

    async def renew(self) -> bool:
        """Extend the lease by revision. False once it is lost (someone else wrote it, or it expired)."""
        if not self.token:
            return False
        sent = self._clock()
        if sent >= self._valid_until:
            self._lost("its deadline passed before the renewal")
            return False
        try:
            self.revision = await self.kv.update(self.key, self._record(), last=self.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            self._lost("renewal refused: the key changed (expired or taken)")
            return False
        except (TimeoutError, nats.errors.Error) as exc:
            # Not known whether it landed: the lease stays ours until the deadline we already have.
            log.warning("lease renewal failed; retrying", lease=self.key, error=str(exc) or type(exc).__name__)
            return self.held
        self._valid_until = sent + self.ttl_s - self.margin_s
        return True

    async def release(self) -> None:
        """Give the lease up now (a delete marker at our revision), so the next holder need not wait for expiry."""
        if not self.token:
            return
        revision, self.token, self._valid_until = self.revision, 0, 0.0
        try:
            await self.kv.delete(self.key, last=revision)
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            log.warning("lease release failed; it expires instead", lease=self.key, error=str(exc) or repr(exc))

    def _lost(self, why: str) -> None:
        log.warning("lease lost", lease=self.key, token=self.token, reason=why)
        self.token = 0
        self._valid_until = 0.0


class Fences:
    """The highest tenure token known for each lease, from the lease bucket's watch (:meth:`on_entry`); tokens only
    grow, so the book never goes back. Commands do not raise it: a token the bucket never held (forged, or a
    bug) must not fence the real holder out."""

    def __init__(self) -> None:
        self.latest: dict[str, int] = {}
        self.holders: dict[str, str] = {}

    def on_entry(self, key: str, value: bytes | None, revision: int) -> None:
        found = lease_token(value, revision)
        if found is None:
            return  # released or expired: the next tenure's create will raise the token
        holder, token = found
        if token >= self.latest.get(key, 0):
            self.latest[key] = token
            self.holders[key] = holder

    def refusal(self, lease: str, token: int) -> str:
        """Why a command sent under (lease, token) must not be executed ("" when it may)."""
        latest = self.latest.get(lease, 0)
        if token < latest:
            who = self.holders.get(lease, "another process")
            return f"fenced: sent under {lease} token {token}, but {who} holds it since token {latest}"
        return ""
