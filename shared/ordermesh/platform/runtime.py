"""One way for a service to start, report and stop.

A service subclasses :class:`Service`, registers its consumers and subscriptions in ``setup()`` and keeps its
handlers small: decode (done here), call pure domain code, publish, return. The runtime acks a consumed
message only after the handler returned, i.e. after the handler's own output was stored by JetStream.

Bad input never kills a service: an undecodable message, a wrong schema version or a message of the wrong
type is logged with its subject, counted in ``ordermesh_bad_messages_total{service,reason}`` and terminated
(not redelivered forever). A handler exception is counted and the message redelivered with backoff; after
``max_attempts`` deliveries it is terminated and counted as ``handler_failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Generic, TypeVar

import nats.errors
import nats.js.errors
import structlog
from aiohttp import web
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ordermesh.contract.codec import BadMessage, Codec, encode
from ordermesh.contract.wire import Heartbeat
from ordermesh.platform import metrics
from ordermesh.platform.bus import Bus, msg_delivery_count
from ordermesh.platform.config import ConfigError, OrderMeshConfig
from ordermesh.platform.log import setup_logging
from ordermesh.platform.pipeline import InHand, Lanes, Puller

T = TypeVar("T")

#: How often a service reads its consumers' backlogs and the streams' sizes for its metrics.
JETSTREAM_METRICS_INTERVAL_S = 5.0


class RetryLater(Exception):
    """Raised by a handler whose message cannot be handled yet (it depends on something still on its way):
    the message is redelivered with backoff, without an error log, up to the consumer's max_attempts."""


#: Errors that say the bus did not answer in time, not that the message is bad.
BUS_UNAVAILABLE: tuple[type[BaseException], ...] = (
    TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)


class NotOwner(Exception):
    """Raised by a handler whose message belongs to work this process no longer holds (a partition whose lease it
    lost): the message goes back to the server at once, uncounted, for the owner to handle."""


Handler = Callable[[T, Msg], Awaitable[None]]
#: Called with a consumed message that did not decode, before it is terminated: a service answers whoever the
#: message names with a refusal (an intent's strategy, a command's order) instead of silence.
BadHandler = Callable[[Msg, BadMessage], Awaitable[None]]


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@dataclass(frozen=True, slots=True)
class _Consumer(Generic[T]):
    name: str
    stream: str
    filter_subject: str | tuple[str, ...]
    codec: Codec[T]
    handler: Handler[T]
    batch: int
    max_attempts: int
    deliver_policy: DeliverPolicy
    #: Messages with the same lane key are handled in stream order; different keys run concurrently within a
    #: fetched batch. None: one message at a time.
    lane: Callable[[T], str] | None
    #: Unacked messages come back after this long (e.g. those a killed process had in hand).
    ack_wait_s: float
    on_bad: BadHandler | None = None


class Consuming:
    """A consumer started while the service runs (``Service.start_consuming``), e.g. for a partition it took."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.task: asyncio.Task[None] | None = None
        self.stopping = asyncio.Event()
        self.in_hand = lambda: 0

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop pulling; let the messages in hand finish for up to ``drain_s`` (their outputs stored and acked),
        then cancel what is left (unacked: the server delivers it again, to whoever consumes next)."""
        self.stopping.set()
        deadline = time.monotonic() + drain_s
        while self.in_hand() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class Service:
    """Base of every ordermesh process."""

    name: str = "service"

    def __init__(self, config: OrderMeshConfig, *, instance: str | None = None, http_port: int | None = None):
        self.config = config
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        #: The name in metrics: the configured instance, or the service's kind (never a process id).
        self.instance_name = instance or self.name
        self.bus = Bus(config.nats, f"{self.name}:{self.instance}", identity=self.identity)
        self.subjects = self.bus.subjects
        self.log = structlog.get_logger(f"ordermesh.{self.name}")
        self.http_port = http_port if http_port is not None else self.default_http_port()
        self.http_url: str | None = None
        self.started_ns = time.time_ns()
        self._stop = asyncio.Event()
        self._consumers: list[_Consumer[Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.ready = asyncio.Event()

    # ---------------------------------------------------------------------------- overridables

    @property
    def identity(self) -> str:
        """The NATS identity this process connects as (``ordermesh.platform.auth``)."""
        return self.name

    def default_http_port(self) -> int:
        return 0

    async def setup(self) -> None:
        """Register consumers (:meth:`consume`), subscriptions and background tasks."""

    async def teardown(self) -> None:
        """Flush state before the bus is drained (snapshots, broker disconnects)."""

    def heartbeat(self) -> Heartbeat:
        return Heartbeat(
            service=self.name, instance=self.instance, started_ns=self.started_ns, metrics_url=self.http_url
        )

    def health(self) -> dict[str, Any]:
        return {"nats_connected": self.bus.connected}

    @property
    def metric_groups(self) -> tuple[str, ...]:
        """Whose metric families this process serves (``ordermesh.platform.metrics``): its kind's."""
        return (self.name,)

    def metric_values(self) -> dict[str, tuple[str, ...]]:
        """Label values this process knows: their series start at zero (``metrics.start_at_zero``)."""
        consumers = tuple(c.name for c in self._consumers)
        return {"service": (self.name,), "consumer": consumers, "hop": metrics.HOPS_BY_SERVICE.get(self.name, ())}

    def refresh_metrics(self) -> None:
        """Set gauges from the service's own state, just before ``/metrics`` answers."""

    # --------------------------------------------------------------------------- registration

    def consume(
        self,
        *,
        stream: str,
        durable: str,
        filter_subject: str | tuple[str, ...],
        codec: Codec[T],
        handler: Handler[T],
        batch: int = 64,
        max_attempts: int = 10,
        deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
        lane: Callable[[T], str] | None = None,
        ack_wait_s: float = 5.0,
        on_bad: BadHandler | None = None,
    ) -> None:
        """Consume ``filter_subject`` of ``stream`` through the durable ``durable``; ack after ``handler``.

        ``lane`` enables concurrency: messages whose lane keys differ are handled concurrently, messages with
        the same key strictly in stream order (e.g. key by client order id so one order's events stay ordered).
        ``on_bad`` answers a message that does not decode (it is counted and terminated either way).
        """
        self._consumers.append(
            _Consumer(
                durable,
                stream,
                filter_subject,
                codec,
                handler,
                batch,
                max_attempts,
                deliver_policy,
                lane,
                ack_wait_s,
                on_bad,
            )
        )

    def start_consuming(self, **kw: Any) -> Consuming:
        """Like :meth:`consume`, for a service already running: starts now; the handle stops it."""
        self.consume(**kw)
        c = self._consumers.pop()
        handle = Consuming(c.name)
        handle.task = asyncio.ensure_future(self._guard(self._consume_loop(c, handle), f"consume:{c.name}"))
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(handle.task)  # cancelled at shutdown like every other task
        return handle

    def spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self._guard(coro, name))
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(task)
        return task

    async def _guard(self, coro: Awaitable[None], name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("background task failed; stopping the service", task=name)
            self.request_stop()

    # ---------------------------------------------------------------------------------- run

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        await self.bus.connect()
        await self.bus.provision()
        await self._start_http()
        await self.setup()
        for consumer in self._consumers:
            self.spawn(self._consume_loop(consumer), f"consume:{consumer.name}")
        self.spawn(self._heartbeat_loop(), "heartbeat")
        metrics.start_at_zero(self.metric_groups, self.metric_values())
        metrics.SERVICE_INFO.labels(self.name, self.instance_name, _version()).set(1)
        self.spawn(self._jetstream_metrics_loop(), "jetstream-metrics")
        # Start-up objects (modules, config) never die: keep them out of every future collection, which
        # otherwise pauses the loop for milliseconds each time it walks them.
        gc.collect()
        gc.freeze()
        self.log.info("service started", service=self.name, instance=self.instance, http=self.http_url)
        self.ready.set()
        await self._stop.wait()
        self.log.info("service stopping", service=self.name, instance=self.instance)
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop in bounded time (orchestrators follow SIGTERM with SIGKILL): each phase gets a few seconds, and a
        phase that overruns is logged and passed. State is rebuilt from the durable streams after any stop."""
        for task in self._tasks:
            task.cancel()
        await self._bounded("background tasks", asyncio.gather(*self._tasks, return_exceptions=True), 3.0)
        try:
            await self._bounded("teardown", self.teardown(), 4.0)
        finally:
            await self._bounded("bus close", self.bus.close(), 6.0)
            if self._runner is not None:
                await self._bounded("http server", self._runner.cleanup(), 1.0)
        self.log.info("service stopped", service=self.name, instance=self.instance)

    async def _bounded(self, phase: str, aw: Awaitable[Any], seconds: float) -> None:
        try:
            await asyncio.wait_for(aw, seconds)
        except TimeoutError:
            self.log.error("shutdown phase overran; going on", phase=phase, seconds=seconds)

    # ------------------------------------------------------------------------------ consuming

    async def _consume_loop(self, c: _Consumer[Any], control: Consuming | None = None) -> None:
        """Pipelined (``ordermesh.platform.pipeline``): pull requests stay outstanding, up to 4 batches are in hand,
        lanes keep one key's messages in order, each message is acked once its handler (and so its outputs'
        PubAcks) is done."""
        delay = 0.2
        while True:  # JetStream may be electing a leader (a node down): keep asking, never stop the service
            try:
                await self.bus.ensure_pull_consumer(
                    c.stream,
                    c.name,
                    c.filter_subject,
                    deliver_policy=c.deliver_policy,
                    ack_wait_s=c.ack_wait_s,
                )
                break
            except BUS_UNAVAILABLE as exc:
                self.log.warning("consumer not ready; retrying", consumer=c.name, error=repr(exc))
            except nats.js.errors.APIError as exc:
                if exc.code not in (503, 500, 408):
                    raise
                self.log.warning("consumer not ready; retrying", consumer=c.name, error=repr(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        in_hand = InHand(c.ack_wait_s / 2)

        async def handle(obj: Any, msg: Msg) -> None:
            in_hand.add(msg)
            try:
                await self._handle(c, obj, msg)
            finally:
                in_hand.remove(msg)

        lanes = Lanes(handle, limit=4 * c.batch, on_done=lambda: puller.top_up())

        async def on_msg(msg: Msg) -> None:
            obj = await self._decode(c, msg)
            if obj is not None:
                lanes.add(c.lane(obj) if c.lane is not None else None, obj, msg)

        puller = Puller(self.bus, c.stream, c.name, on_msg, room=lambda: lanes.room, batch=2 * c.batch)
        await puller.start()
        keepalive = asyncio.ensure_future(in_hand.run())
        try:
            if control is None:
                await asyncio.Event().wait()  # until the service stops (this task is cancelled)
            else:
                control.in_hand = lambda: lanes.in_hand
                await control.stopping.wait()
                await puller.stop()  # no more pulls; what is in hand drains until the task is cancelled
                await asyncio.Event().wait()
        finally:
            keepalive.cancel()
            await puller.stop()
            await lanes.stop()

    async def _decode(self, c: _Consumer[T], msg: Msg) -> T | None:
        if _redelivered(msg):
            metrics.REDELIVERIES.labels(self.name, c.name).inc()
        try:
            return c.codec.decode(msg.data)
        except BadMessage as exc:
            if c.on_bad is not None:
                try:
                    await c.on_bad(msg, exc)
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # the refusal could not be published: try again later, a bounded number
                    if msg_delivery_count(msg) < c.max_attempts:
                        self.log.warning(
                            "refusing a bad message failed; will retry", subject=msg.subject, error=repr(err)
                        )
                        await msg.nak(delay=min(0.05 * 2 ** msg_delivery_count(msg), 5.0))
                        return None
                    self.log.error("refusing a bad message failed; giving up", subject=msg.subject, error=repr(err))
            self.bad_message(msg.subject, exc.reason, exc.detail)
            metrics.MESSAGES.labels(self.name, c.name, "bad").inc()
            await msg.term()
            return None

    async def _handle(self, c: _Consumer[T], obj: T, msg: Msg) -> None:
        started = time.perf_counter()
        try:
            await c.handler(obj, msg)
        except asyncio.CancelledError:
            raise
        except NotOwner as exc:
            self.log.info("message left to its owner", subject=msg.subject, reason=str(exc))
            with contextlib.suppress(Exception):
                await msg.nak()
            return
        except Exception as exc:
            attempts = msg_delivery_count(msg)
            if isinstance(exc, BUS_UNAVAILABLE):
                # NATS did not answer (a leader election, a node down): not this message's fault, so it is never
                # given up for it; it comes back until the bus answers (a command must not vanish in an outage)
                metrics.MESSAGES.labels(self.name, c.name, "retry").inc()
                self.log.warning("bus unavailable; message will be redelivered", subject=msg.subject, error=repr(exc))
                with contextlib.suppress(Exception):
                    await msg.nak(delay=min(0.05 * 2 ** min(attempts, 10), 2.0))
                return
            if isinstance(exc, RetryLater) and attempts < c.max_attempts:
                metrics.MESSAGES.labels(self.name, c.name, "retry").inc()
                self.log.info("message not ready; will be redelivered", subject=msg.subject, reason=str(exc))
                await msg.nak(delay=min(0.05 * 2**attempts, 5.0))
                return
            metrics.HANDLER_ERRORS.labels(self.name, c.name).inc()
            if attempts >= c.max_attempts:
                self.log.exception("handler failed; giving up on the message", subject=msg.subject, attempts=attempts)
                self.bad_message(msg.subject, "handler_failed", f"{type(exc).__name__}: {exc}")
                await msg.term()
            else:
                self.log.warning(
                    "handler failed; message will be redelivered",
                    subject=msg.subject,
                    attempts=attempts,
                    error=f"{type(exc).__name__}: {exc}",
                )
                await msg.nak(delay=min(0.05 * 2**attempts, 5.0))
            return
        metrics.HANDLER_SECONDS.labels(self.name, c.name).observe(time.perf_counter() - started)
        metrics.MESSAGES.labels(self.name, c.name, "ok").inc()
        await msg.ack()

    async def respond(self, msg: Msg, reply: Any) -> None:
        """Answer a request with the message ``reply``; a message sent without a reply subject is not a request
        and gets no answer (answering it would raise in the subscription)."""
        if msg.reply:
            await msg.respond(encode(reply))

    def bad_message(self, subject: str, reason: str, detail: str) -> None:
        metrics.BAD_MESSAGES.labels(self.name, reason).inc()
        self.log.warning("bad message", subject=subject, reason=reason, detail=detail[:300])

    # ------------------------------------------------------------------------- http and health

    async def _start_http(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_get("/healthz", self._health_handler)
        self.metrics_registry = metrics.registry(self.metric_groups)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.http.host, self.http_port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.http_url = f"http://{self.config.http.host}:{port}"

    async def _metrics_handler(self, _: web.Request) -> web.Response:
        try:
            self.refresh_metrics()
        except Exception:  # the rest of the metrics are still served
            self.log.exception("refreshing metrics failed")
        body = generate_latest(self.metrics_registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health_handler(self, _: web.Request) -> web.Response:
        detail = self.health()
        ok = all(v for k, v in detail.items() if k.endswith("connected"))
        body = {
            "service": self.name,
            "instance": self.instance,
            "ok": ok,
            "uptime_s": round((time.time_ns() - self.started_ns) / 1e9, 3),
            **detail,
        }
        return web.json_response(body, status=200 if ok else 503)

    async def _heartbeat_loop(self) -> None:
        subject = self.subjects.health(self.name, self.instance)
        while True:
            if self.bus.connected:
                with contextlib.suppress(nats.errors.Error):
                    await self.bus.publish_core(subject, self.heartbeat())
                    metrics.HEARTBEATS.labels(self.name).inc()
            await asyncio.sleep(1.0)

    async def _jetstream_metrics_loop(self) -> None:
        consumers = [(c.stream, c.name) for c in self._consumers]
        while True:
            if self.bus.connected:
                try:
                    await metrics.observe_jetstream(self.bus.js, self.name, consumers)
                except Exception as exc:  # metrics never stop a service; the next round tries again
                    self.log.debug("jetstream metrics not read", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(JETSTREAM_METRICS_INTERVAL_S)


def _redelivered(msg: Msg) -> bool:
    """Whether JetStream delivers ``msg`` again, from its reply subject's delivery count: a split, where parsing the
    whole metadata costs ten times more on the hot path."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>
        return tokens[4] != "1"
    if len(tokens) >= 12:  # $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>...
        return tokens[6] != "1"
    return False


def _version() -> str:
    try:
        return version("ordermesh")
    except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
        return "unknown"


def run_service(make: Callable[[], Service], log_settings: Any, **bind: Any) -> int:
    """Process entry point: logging, uvloop, run until SIGTERM/SIGINT. Returns the exit code."""
    setup_logging(log_settings, **bind)
    install_uvloop()
    try:
        service = make()
        asyncio.run(service.run())
    except ConfigError as exc:
        print(f"ordermesh: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
