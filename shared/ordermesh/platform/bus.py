"""A thin layer over nats-py: connection and lifecycle in one place, no business logic.

* connect with reconnect and backoff (and retry of the first connection within a deadline),
* JetStream publish with ``Nats-Msg-Id`` (the stream drops a repeat inside its duplicate window),
* durable pull consumers (the caller acks after its own output is published),
* core publish / subscribe / request-reply, KV buckets,
* drain on close, so in-flight messages are finished rather than dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
import nats.nuid
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck
from nats.js.kv import KeyValue

from ordermesh.contract.codec import encode
from ordermesh.contract.subjects import Subjects, Topology, provision
from ordermesh.platform import metrics
from ordermesh.platform.auth import AuthError, inbox_prefix, read_seed, seed_path
from ordermesh.platform.config import NatsSettings, TlsSettings

MSG_ID = "Nats-Msg-Id"
log = structlog.get_logger("ordermesh.platform.bus")


class BusError(RuntimeError):
    pass


class Bus:
    def __init__(self, settings: NatsSettings, name: str, *, identity: str | None = None) -> None:
        self.settings = settings
        self.name = name
        #: The NATS identity this process connects as (its seed file and inbox prefix); ``nats.identity`` wins.
        self.identity = settings.identity or identity
        self.subjects = Subjects(settings.prefix)
        self.topology = Topology(
            self.subjects,
            replicas=settings.replicas,
            duplicate_window_s=settings.duplicate_window_s,
            lease_ttl_s=settings.lease_ttl_s,
        )
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._kv: dict[str, KeyValue] = {}
        self._pulls: list[JetStreamContext.PullSubscription] = []
        self._closing = False
        self._async_ready = False
        self._async_lock = asyncio.Lock()

    # ------------------------------------------------------------------------------ lifecycle

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise BusError("bus is not connected")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise BusError("bus is not connected")
        return self._js

    @property
    def metric_name(self) -> str:
        """The ``service`` label of this connection's metrics: the name's kind (``sizer`` of ``sizer:<instance>``)."""
        return self.name.partition(":")[0]

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def connect(self, deadline_s: float | None = None) -> None:
        """Connect, retrying with backoff until ``deadline_s`` (default: the settings' connect timeout x 6)."""
        s = self.settings
        started = time.monotonic()
        deadline = started + (deadline_s if deadline_s is not None else s.connect_timeout_s * 6)
        delay = 0.1
        service = self.name
        kind = self.metric_name

        async def disconnected() -> None:
            metrics.NATS_CONNECTED.labels(kind).set(0)
            if not self._closing and self._nc is not None:  # before the first connect: said once, at the deadline
                log.warning("nats disconnected", service=service)

        async def reconnected() -> None:
            metrics.NATS_CONNECTED.labels(kind).set(1)
            metrics.NATS_RECONNECTS.labels(kind).inc()
            log.info("nats reconnected", service=service, url=str(self.nc.connected_url.netloc))

        refused = asyncio.Event()
        last_error: list[str] = []

        async def error(exc: Exception) -> None:
            if self._nc is None:  # the first connect: its outcome is said once (connected, or one line at the deadline)
                last_error[:] = [str(exc) or type(exc).__name__]
                if "authorization violation" in str(exc).lower():
                    refused.set()  # nats-py would retry the first connect for ever: credentials do not heal
                return
            if isinstance(exc, nats.errors.SlowConsumerError):
                metrics.NATS_SLOW_CONSUMERS.labels(kind).inc()
            log.warning("nats error", service=service, error=str(exc))

        seed = self.seed()
        auth: dict[str, Any] = {"user": s.user, "password": s.password, "token": s.token}
        if seed is not None:
            auth["nkeys_seed_str"] = seed.decode()
        if self.identity:
            auth["inbox_prefix"] = inbox_prefix(self.identity)
        if s.tls is not None:
            auth["tls"] = tls_context(s.tls)
        while True:
            nc = Client()
            try:
                # nats-py retries its first connect for ever when reconnects are unlimited: bound each attempt
                connecting = asyncio.ensure_future(
                    nc.connect(
                        servers=[u.strip() for u in s.url.split(",")],
                        name=self.name,
                        connect_timeout=min(s.connect_timeout_s, 2.0),
                        max_reconnect_attempts=-1,
                        reconnect_time_wait=0.5,
                        disconnected_cb=disconnected,
                        reconnected_cb=reconnected,
                        error_cb=error,
                        **auth,
                    )
                )
                gave_up = asyncio.ensure_future(refused.wait())
                try:
                    await asyncio.wait(
                        {connecting, gave_up},
                        timeout=max(0.1, deadline - time.monotonic()),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    gave_up.cancel()
                    unfinished = not connecting.done()
                    if unfinished:
                        connecting.cancel()
                if refused.is_set():
                    raise nats.errors.AuthorizationError
                if unfinished:
                    raise TimeoutError
                connecting.result()
                self._nc = nc
                break
            except nats.errors.AuthorizationError:
                with contextlib.suppress(Exception):
                    await nc.close()
                raise BusError(self._refused()) from None
            except (TimeoutError, OSError, nats.errors.Error) as exc:
                with contextlib.suppress(Exception):
                    await nc.close()
                if "authorization" in str(exc).lower():
                    raise BusError(self._refused()) from None
                if time.monotonic() + delay > deadline:
                    why = (last_error or [str(exc)])[0] or "no answer"
                    waited = time.monotonic() - started
                    raise BusError(f"cannot connect to NATS at {s.url}: {why} (gave up after {waited:.1f} s)") from None
                log.info("waiting for nats", url=s.url, error=str(exc) or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._js = self._nc.jetstream(timeout=5.0)
        self._async_ready = False
        metrics.NATS_CONNECTED.labels(kind).set(1)

    def seed(self) -> bytes | None:
        """This process's nkey seed: ``nats.nkey_seed``, else ``<auth.dir>/<identity>.nk`` when auth is on."""
        s = self.settings
        if s.nkey_seed:
            path = Path(s.nkey_seed)
        elif s.auth.enabled and self.identity:
            path = seed_path(s.auth.dir, self.identity)
            if not path.exists():
                return None
        else:
            return None
        try:
            return read_seed(path)
        except (OSError, AuthError) as exc:
            raise BusError(f"cannot read the nkey seed of {self.identity or self.name}: {exc}") from None

    def _refused(self) -> str:
        s = self.settings
        who = f"identity {self.identity!r}" if self.identity else "this process"
        if self.seed() is None:
            where = seed_path(s.auth.dir, self.identity) if self.identity else "nats.nkey_seed"
            hint = f"no credentials ({where} not found; `ordermesh auth generate` writes them)"
        else:
            hint = "its credentials were refused (rotated, or another system's?)"
        return f"NATS at {s.url} refused {who}: {hint}"

    async def wait_stream(self, stream: str, deadline_s: float | None = None) -> None:
        """Wait until ``stream`` exists (the services create it; a client never does), up to the connect deadline."""
        deadline = time.monotonic() + (deadline_s if deadline_s is not None else self.settings.connect_timeout_s * 6)
        delay = 0.05
        while True:
            try:
                await self.js.stream_info(stream)
                return
            except nats.js.errors.NotFoundError:
                if time.monotonic() + delay > deadline:
                    raise BusError(
                        f"stream {stream} does not exist on {self.settings.url}: start the ordermesh services "
                        "(they create the streams) or run `ordermesh provision`"
                    ) from None
            except (TimeoutError, nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError) as exc:
                # JetStream busy or electing a leader (a cluster starting): ask again until the deadline
                if time.monotonic() + delay > deadline:
                    raise BusError(f"JetStream on {self.settings.url} did not answer about {stream}: {exc!r}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def provision(self, deadline_s: float | None = None) -> None:
        """Create or update the streams and buckets. A JetStream API that does not answer in time (a cluster
        electing leaders, a node starting, several services creating replicated streams at once) is asked again
        with backoff until ``deadline_s`` (default: the connect timeout x 6)."""
        deadline = time.monotonic() + (deadline_s if deadline_s is not None else self.settings.connect_timeout_s * 6)
        delay = 0.2
        while True:
            try:
                await provision(self.js, self.topology)
                return
            except (TimeoutError, nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("JetStream did not answer provisioning in time; retrying", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def close(self) -> None:
        self._closing = True
        # nats-py cannot drain a pull subscription (fetch never marks its queue done): unsubscribe those first.
        pulls, self._pulls = self._pulls, []
        for psub in pulls:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()
        nc, self._nc, self._js = self._nc, None, None
        self._kv.clear()
        if nc is None or nc.is_closed:
            return
        try:
            await asyncio.wait_for(nc.drain(), timeout=5.0)
        except (TimeoutError, nats.errors.Error):
            await nc.close()
        metrics.NATS_CONNECTED.labels(self.metric_name).set(0)

    # -------------------------------------------------------------------------------- publish

    async def publish(self, subject: str, msg: msgspec.Struct, *, msg_id: str | None = None) -> PubAck:
        """JetStream publish; returns once the stream has stored it (or recognised it as a duplicate)."""
        return await self.publish_bytes(subject, encode(msg), msg_id=msg_id)

    async def publish_bytes(
        self, subject: str, data: bytes, *, msg_id: str | None = None, timeout: float = 5.0
    ) -> PubAck:
        """Through nats-py's asynchronous publish: the PubAck arrives on one shared reply subscription, matched by
        token, instead of a request with its own timer task each (half the client CPU per publish, measured), so
        many handlers' publishes are in flight at once. The timeout is one loop timer. (No ``wait_stall``: it costs a
        ``wait_for`` per publish, and a service never has nats-py's 4,000 publishes pending: its consumers hold at
        most 4 batches each.)"""
        headers = {MSG_ID: msg_id} if msg_id else None
        js = self.js
        if not self._async_ready:  # nats-py sets its reply subscription up on first use: once, not twice at once
            async with self._async_lock:
                fut = await js.publish_async(subject, data, headers=headers)
                self._async_ready = True
        else:
            fut = await js.publish_async(subject, data, headers=headers)
        timer = asyncio.get_running_loop().call_later(timeout, _expire, fut, subject)
        try:
            return await fut  # type: ignore[no-any-return]
        finally:
            timer.cancel()

    async def publish_core(self, subject: str, msg: msgspec.Struct) -> None:
        """Core NATS publish (quotes, heartbeats): latest value matters, history does not."""
        await self.nc.publish(subject, encode(msg))

    async def request(self, subject: str, msg: msgspec.Struct, *, timeout: float = 2.0) -> bytes:
        reply = await self.nc.request(subject, encode(msg), timeout=timeout)
        return reply.data

    async def subscribe(self, subject: str, cb: Callable[[Msg], Awaitable[None]], *, queue: str = "") -> Subscription:
        return await self.nc.subscribe(subject, queue=queue, cb=cb)

    # ------------------------------------------------------------------------------ consumers

    async def ensure_pull_consumer(
        self,
        stream: str,
        durable: str,
        filter_subject: str | tuple[str, ...],
        *,
        ack_wait_s: float = 5.0,
        max_ack_pending: int = 1000,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    ) -> None:
        """Create or update a durable pull consumer with explicit acks (no subscription: see ``pipeline.Puller``).

        Updating matters: a consumer made by an older version keeps its old ack wait otherwise; a partitioned
        router's consumer takes more or fewer filter subjects when accounts move. An existing consumer keeps where
        it starts (the server allows no change there)."""
        filters = (filter_subject,) if isinstance(filter_subject, str) else tuple(filter_subject)
        if not filters:
            raise ValueError(f"consumer {durable} needs at least one filter subject")
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=-1,
            max_ack_pending=max_ack_pending,
            deliver_policy=deliver_policy,
        )
        if len(filters) == 1:
            config.filter_subject = filters[0]
        else:
            config.filter_subjects = list(filters)
        config.name = durable
        try:
            existing = (await self.js.consumer_info(stream, durable)).config
        except nats.js.errors.NotFoundError:
            existing = None
        if existing is not None:
            config.deliver_policy = existing.deliver_policy
            config.opt_start_seq = existing.opt_start_seq
            config.opt_start_time = existing.opt_start_time
        await self.js.add_consumer(stream, config=config)

    async def pull_consumer(
        self,
        stream: str,
        durable: str,
        filter_subject: str,
        *,
        ack_wait_s: float = 5.0,
        max_ack_pending: int = 1000,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
    ) -> JetStreamContext.PullSubscription:
        """Create or update a durable pull consumer with explicit acks, and bind to it (``fetch``)."""
        await self.ensure_pull_consumer(
            stream, durable, filter_subject, ack_wait_s=ack_wait_s, max_ack_pending=max_ack_pending,
            deliver_policy=deliver_policy,
        )  # fmt: skip
        psub = await self.js.pull_subscribe_bind(durable=durable, stream=stream)
        self._pulls.append(psub)
        return psub

    async def ordered_from(
        self, stream: str, filter_subject: str, start_seq: int, cb: Callable[[Msg], Awaitable[None]]
    ) -> Subscription:
        """An ordered (gap-free, auto-recreated) consumer starting at ``start_seq``: for state rebuilt from a
        stream, where the reader itself records the last sequence it applied."""
        if start_seq <= 1:
            return await self.js.subscribe(
                filter_subject, stream=stream, cb=cb, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
            )
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq)
        return await self.js.subscribe(filter_subject, stream=stream, cb=cb, ordered_consumer=True, config=config)

    async def feed(
        self,
        stream: str,
        filter_subject: str,
        cb: Callable[[Msg], Awaitable[None]],
        *,
        deliver_policy: DeliverPolicy = DeliverPolicy.NEW,
        start_seq: int = 0,
        heartbeat_s: float = 5.0,
    ) -> Feed:
        """A gap-free feed of ``filter_subject`` that permissions can scope (see :class:`Feed`)."""
        feed = Feed(self, stream, filter_subject, cb, heartbeat_s=heartbeat_s)
        await feed.start(deliver_policy, start_seq)
        return feed

    async def stream_last_seq(self, stream: str) -> int:
        info = await self.js.stream_info(stream)
        return int(info.state.last_seq)

    # ------------------------------------------------------------------------------------- KV

    async def kv(self, bucket: str) -> KeyValue:
        kv = self._kv.get(bucket)
        if kv is None:
            kv = self._kv[bucket] = _PipelinedKV(await self.js.key_value(bucket), bucket, self)  # type: ignore[assignment]
        return kv

    async def kv_mirror(
        self,
        bucket: str,
        on_change: Callable[[str, bytes | None], None] | None = None,
        *,
        keys: str = ">",
        on_entry: Callable[[str, bytes | None, int], None] | None = None,
    ) -> KVMirror:
        """A local copy of a bucket (or of its ``keys``), loaded now and kept current by a watch (``None`` value:
        deleted). ``on_entry`` also hears each entry's revision."""
        mirror = KVMirror(on_change, on_entry)
        watcher = await (await self.kv(bucket)).watch(keys)
        await mirror.start(watcher)
        return mirror


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """A client context that verifies the server against ``ca_file`` (else the system's trust store) and presents
    ``cert_file``/``key_file`` when given."""
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise BusError(f"cannot use the TLS files: {exc}") from None
    return ctx


class _PipelinedKV:
    """nats-py's ``KeyValue`` whose ``put`` goes through :meth:`Bus.publish_bytes` (a KV put is a JetStream publish
    to ``$KV.<bucket>.<key>``): the same stored value and revision, at about half the client CPU of nats-py's
    request per put. Everything else is nats-py's own."""

    def __init__(self, kv: KeyValue, bucket: str, bus: Bus) -> None:
        self._kv = kv
        self._bucket = bucket
        self._bus = bus

    async def put(self, key: str, value: bytes, validate_keys: bool = True) -> int:
        if validate_keys and (not _KV_KEY.fullmatch(key) or key[0] == "." or key[-1] == "."):
            raise nats.js.errors.InvalidKeyError(key)
        ack = await self._bus.publish_bytes(f"{self._prefix}{key}", value)
        return int(ack.seq)

    @property
    def _prefix(self) -> str:
        return str(getattr(self._kv, "_pre", f"$KV.{self._bucket}."))  # nats-py's own subject prefix

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kv, name)


#: What nats-py's KeyValue accepts as a key (``nats.js.kv._is_key_valid``).
_KV_KEY = re.compile(r"[-/_=.a-zA-Z0-9]+")


class Feed:
    """A gap-free, ack-less push consumer that names itself, so its filter travels in the API subject
    (``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``) where the server's permissions check it: a strategy
    reads its own reports and nobody else's. nats-py's ordered consumer creates unnamed consumers (the filter
    hidden in the request body, so any filter would pass) and re-creates a named one under the same name, which
    the server refuses. Like it, this one re-creates its consumer from the next stream sequence after a gap in
    the consumer sequence or a silence of three idle heartbeats; an abandoned consumer expires on the server."""

    def __init__(
        self,
        bus: Bus,
        stream: str,
        filter_subject: str,
        cb: Callable[[Msg], Awaitable[None]],
        *,
        heartbeat_s: float = 5.0,
    ) -> None:
        self.heartbeat_s = heartbeat_s
        self._bus = bus
        self._stream = stream
        self._filter = filter_subject
        self._cb = cb
        self._sub: Subscription | None = None
        self._sseq = 0  # last stream sequence delivered (or the stream's last one when the feed began "new")
        self._cseq = 0  # consumer sequence of the current consumer
        self._gen = 0  # which consumer is current
        self._last = time.monotonic()
        self._watchdog: asyncio.Task[None] | None = None
        self._resetting: asyncio.Task[None] | None = None
        self.resets = 0

    async def start(self, deliver_policy: DeliverPolicy, start_seq: int) -> None:
        await self._create(deliver_policy, start_seq)
        self._watchdog = asyncio.ensure_future(self._watch())

    async def _create(self, deliver_policy: DeliverPolicy, start_seq: int) -> None:
        nc = self._bus.nc
        inbox = nc.new_inbox()
        self._cseq = 0
        self._gen += 1
        gen = self._gen

        async def on_msg(msg: Msg) -> None:
            if gen == self._gen:  # not from a consumer already replaced
                await self._on_msg(msg)

        self._sub = await nc.subscribe(inbox, cb=on_msg)
        config = ConsumerConfig(
            name=f"feed_{nats.nuid.NUID().next().decode()}",
            filter_subject=self._filter,
            deliver_subject=inbox,
            deliver_policy=deliver_policy,
            opt_start_seq=start_seq or None,
            ack_policy=AckPolicy.NONE,
            max_deliver=1,
            idle_heartbeat=self.heartbeat_s,
            inactive_threshold=self.heartbeat_s * 12,
            mem_storage=True,
            num_replicas=1,
        )
        info = await self._bus.js.add_consumer(self._stream, config=config)
        self._sseq = max(self._sseq, int(info.delivered.stream_seq or 0))
        self._last = time.monotonic()

    async def _on_msg(self, msg: Msg) -> None:
        self._last = time.monotonic()
        headers = msg.headers or {}
        if headers.get("Status") == "100":  # idle heartbeat: it says how far the consumer has delivered
            last = headers.get("Nats-Last-Consumer")
            if last is not None and int(last) != self._cseq:
                self._reset()
            return
        try:
            seq = msg.metadata.sequence
        except Exception:
            return
        if int(seq.consumer) != self._cseq + 1:
            self._reset()
            return
        self._cseq, self._sseq = int(seq.consumer), int(seq.stream)
        await self._cb(msg)

    def _reset(self) -> None:
        if self._resetting is None or self._resetting.done():
            self._resetting = asyncio.ensure_future(self._recreate())

    async def _recreate(self) -> None:
        old, self._sub = self._sub, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.unsubscribe()
        self.resets += 1
        try:
            await self._create(DeliverPolicy.BY_START_SEQUENCE, self._sseq + 1)
        except Exception as exc:  # the watchdog tries again
            log.warning("feed re-create failed", stream=self._stream, filter=self._filter, error=str(exc))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            if self._bus.connected and time.monotonic() - self._last > 3 * self.heartbeat_s:
                self._reset()

    async def stop(self) -> None:
        for task in (self._watchdog, self._resetting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


class KVMirror:
    """Every key of a bucket with its latest value; reads never leave the process."""

    def __init__(
        self,
        on_change: Callable[[str, bytes | None], None] | None = None,
        on_entry: Callable[[str, bytes | None, int], None] | None = None,
    ) -> None:
        self.values: dict[str, bytes] = {}
        self._on_change = on_change
        self._on_entry = on_entry
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._watcher: Any = None

    async def start(self, watcher: Any) -> None:
        self._watcher = watcher
        while True:  # the initial values, up to the marker that ends them
            entry = await watcher.updates(timeout=10.0)
            if entry is None:
                break
            self._apply(entry)
        self._task = asyncio.ensure_future(self._follow())

    def _apply(self, entry: Any) -> None:
        if entry.operation in ("DEL", "PURGE") or entry.value is None:
            self.values.pop(entry.key, None)
            value = None
        else:
            self.values[entry.key] = value = entry.value
        if self._on_change is not None:
            self._on_change(entry.key, value)
        if self._on_entry is not None:
            self._on_entry(entry.key, value, int(entry.revision or 0))

    async def _follow(self) -> None:
        while not self._stopped:
            try:
                entry = await self._watcher.updates(timeout=60.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            if entry is not None:
                self._apply(entry)

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            # a cancel can be swallowed by wait_for when an entry arrives at the same moment (Python 3.11): again
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait([self._task], timeout=0.5)
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()


def _expire(fut: asyncio.Future[Any], subject: str) -> None:
    if not fut.done():
        fut.set_exception(nats.errors.TimeoutError(f"no PubAck for {subject}"))


def msg_delivery_count(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:
        return 1


def stream_seq(msg: Msg) -> int:
    return int(msg.metadata.sequence.stream)


def header(msg: Msg, name: str) -> Any:
    return (msg.headers or {}).get(name)
