"""Leases on a real nats-server: create-if-absent, renew by revision, expiry by the bucket's max age, release,
and the fencing book gateways keep."""

from __future__ import annotations

import time

import msgspec

from ordermesh.contract.subjects import KV_LEASES
from ordermesh.platform.bus import Bus
from ordermesh.platform.config import NatsSettings
from ordermesh.platform.lease import Fences, Lease, LeaseRecord
from tests.harness import eventually

TTL = 2.0


async def _bus(settings: NatsSettings, name: str) -> Bus:
    bus = Bus(msgspec.structs.replace(settings, lease_ttl_s=TTL), name)
    await bus.connect()
    await bus.provision()
    return bus


async def test_one_holder_at_a_time_and_tokens_grow(nats_settings: NatsSettings) -> None:
    a_bus, b_bus = await _bus(nats_settings, "a"), await _bus(nats_settings, "b")
    try:
        a = Lease(await a_bus.kv(KV_LEASES), "router.p0", "a", TTL)
        b = Lease(await b_bus.kv(KV_LEASES), "router.p0", "b", TTL)
        assert await a.acquire()
        assert a.held and a.token > 0
        assert not await b.acquire()  # taken
        assert await a.renew()
        entry = await (await b_bus.kv(KV_LEASES)).get("router.p0")
        rec = msgspec.msgpack.decode(entry.value, type=LeaseRecord)
        assert (rec.holder, rec.token) == ("a", a.token)  # the record names the tenure's token after creation
        first = a.token
        await a.release()
        assert not a.held
        assert await b.acquire()  # a released lease is free at once
        assert b.token > first
        assert not await a.renew()  # a's tenure is over
    finally:
        await a_bus.close()
        await b_bus.close()


async def test_an_unrenewed_lease_expires_and_its_holder_knows_first(nats_settings: NatsSettings) -> None:
    a_bus, b_bus = await _bus(nats_settings, "a"), await _bus(nats_settings, "b")
    try:
        a = Lease(await a_bus.kv(KV_LEASES), "gateway.paper", "a", TTL)
        b = Lease(await b_bus.kv(KV_LEASES), "gateway.paper", "b", TTL)
        assert await a.acquire()
        started = time.monotonic()

        async def b_took_it() -> bool:
            return await b.acquire()

        await eventually(b_took_it, timeout=TTL + 5, what="the lease to expire and b to take it")
        took = time.monotonic() - started
        # the holder stopped counting itself the holder before anyone else could take it
        assert not a.held
        assert took > TTL - a.margin_s
        assert not await a.renew()
        assert b.held
    finally:
        await a_bus.close()
        await b_bus.close()


async def test_a_renewal_after_someone_else_wrote_the_key_loses_the_lease(nats_settings: NatsSettings) -> None:
    bus = await _bus(nats_settings, "a")
    try:
        kv = await bus.kv(KV_LEASES)
        a = Lease(kv, "router.p1", "a", TTL)
        assert await a.acquire()
        await kv.put("router.p1", msgspec.msgpack.encode(LeaseRecord(holder="intruder", token=a.token + 99)))
        assert not await a.renew()
        assert not a.held and a.token == 0
    finally:
        await bus.close()


async def test_fences_refuse_a_lower_token_than_the_watch_or_a_command_showed(nats_settings: NatsSettings) -> None:
    a_bus, b_bus = await _bus(nats_settings, "a"), await _bus(nats_settings, "b")
    fences = Fences()
    mirror = await b_bus.kv_mirror(KV_LEASES, keys="router.>", on_entry=fences.on_entry)
    try:
        a = Lease(await a_bus.kv(KV_LEASES), "router.p0", "a", TTL)
        assert await a.acquire()
        old = a.token
        await eventually(lambda: _async(fences.latest.get("router.p0") == old), what="the watch to see a's tenure")
        assert fences.refusal("router.p0", old) == ""
        await a.release()
        b = Lease(await b_bus.kv(KV_LEASES), "router.p0", "b", TTL)
        assert await b.acquire()
        await eventually(lambda: _async(fences.latest.get("router.p0") == b.token), what="the watch to see b")
        why = fences.refusal("router.p0", old)
        assert why.startswith("fenced:") and "b holds it" in why
        assert fences.refusal("router.p0", b.token) == ""
        # a command never moves the book: a token the bucket never held cannot fence the real holder out
        assert fences.refusal("router.p0", b.token + 10) == ""
        assert fences.refusal("router.p0", b.token) == ""
    finally:
        await mirror.stop()
        await a_bus.close()
        await b_bus.close()


async def _async(value: bool) -> bool:
    return value
