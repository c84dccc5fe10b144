"""The console process: reads the bus as ``observer``, serves the page and its live updates, acts as ``operator``.

Reads (observer identity): the exec stream ``OM_EXEC`` (``om.exec.>``, ``om.reject.>``: fills, refusals, win
rates; from its start, or the last ``console.exec_history`` messages), the equity points of ``OM_EQUITY``, the
open orders of KV ``om_orders`` (a watch), the heartbeats ``om.health.>``, intents and orders as they pass
(``om.intent.>``, ``om.order.>``: counts and hop latency), and every ``console.refresh_s`` the keeper's
``om.q.positions`` and ``om.q.account``.

Acts (operator identity, a second connection): the router's control subjects ``om.ctl.trading`` (halt, reduce,
resume; and the ``TradingStateQuery`` the page shows, since only operators may publish there), ``om.ctl.cancel_all``,
and close-all through the SDK (``OrderMeshClient.close_all_positions``), each only for a browser session that
presented the operator token (``services.console.access``).

HTTP (aiohttp, ``http.console``): ``/`` the page, ``/static/*`` its files (uPlot vendored: no CDN),
``/api/events`` Server-Sent Events (``snapshot`` on connect, then ``state`` twice a second and ``equity`` with the
new points), ``/api/state``, ``/api/session``, ``/api/login``, ``/api/logout``, ``/api/action``, ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
import structlog
from aiohttp import web
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from ordermesh.contract.codec import HEARTBEAT_CODEC, ORDER_CODEC, BadMessage, decode_any
from ordermesh.contract.subjects import EQUITY, EXEC, KV_ORDERS
from ordermesh.contract.wire import (
    AccountQuery,
    AccountState,
    CancelAll,
    ControlReply,
    EquityPoint,
    ErrorReply,
    PositionsQuery,
    PositionsReply,
    SetTradingState,
    TradingState,
    TradingStateQuery,
)
from ordermesh.platform.auth import OBSERVER, OPERATOR
from ordermesh.platform.bus import Bus, BusError, Feed
from ordermesh.platform.config import OrderMeshConfig
from ordermesh.routing.orders import OrderRecord
from services.console.access import (
    COOKIE,
    CSRF_HEADER,
    Access,
    TokenError,
    ensure_token,
    loose_permissions,
    token_path,
)
from services.console.state import ConsoleState

STATIC = Path(__file__).resolve().parent / "static"
PUSH_INTERVAL_S = 0.5
TRADING_ACTIONS = {"halt": TradingState.HALTED, "reduce": TradingState.REDUCING, "resume": TradingState.ACTIVE}
ACTIONS = (*TRADING_ACTIONS, "cancel-all", "close-all", "kill")
CLOSE_ALL_TIMEOUT_S = 20.0

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _sse(event: str, data: str) -> bytes:
    return f"event: {event}\ndata: {data}\n\n".encode()


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class ConsoleService:
    name = "console"

    def __init__(self, config: OrderMeshConfig, *, instance: str | None = None, http_port: int | None = None) -> None:
        self.config = config
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self.http_port = http_port if http_port is not None else config.http.console
        self.http_url: str | None = None
        self.log = structlog.get_logger("ordermesh.console")
        self.state = ConsoleState(config)
        self.access = Access(token_path(config))
        self.reader = Bus(config.nats, f"console:{self.instance}", identity=OBSERVER)
        self.actor: Bus | None = None
        self.subjects = self.reader.subjects
        self.clients: set[asyncio.Queue[tuple[str, str] | None]] = set()
        self.started = time.time()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._feeds: list[Feed] = []
        self._subs: list[Any] = []
        self._runner: web.AppRunner | None = None
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        path = self.access.path
        try:
            _, created = ensure_token(path)
        except OSError as exc:
            raise TokenError(f"cannot write the console's operator token {path}: {exc.strerror or exc}") from None
        if created:
            self.log.warning("operator token created", file=str(path))
        elif loose_permissions(path):
            self.log.warning("the operator token file is readable by others: chmod 600 it", file=str(path))
        await self._start_http()
        await self.reader.connect()
        self.state.bus["observer"] = True
        await self._connect_actor()
        await self._subscribe_live()
        for coro, name in (
            (self._follow_exec(), "exec"),
            (self._follow_equity(), "equity"),
            (self._follow_orders(), "orders"),
            (self._poll_loop(), "poll"),
            (self._push_loop(), "push"),
        ):
            self._spawn(coro, name)
        self.log.info("console started", url=self.http_url, operator_file=str(path), operator=self.actor is not None)
        self.ready.set()
        await self._stop.wait()
        await self.shutdown()

    async def _connect_actor(self) -> None:
        actor = Bus(self.config.nats, f"console-actions:{self.instance}", identity=OPERATOR)
        try:
            await actor.connect()
        except BusError as exc:  # the page stays useful, read-only
            self.state.bus["operator_detail"] = str(exc)
            self.log.warning("no operator connection: actions are unavailable", error=str(exc))
            return
        self.actor = actor
        self.state.bus["operator"] = True
        self.state.bus["operator_detail"] = ""

    def _spawn(self, coro: Any, name: str) -> None:
        async def guard() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("console task failed; stopping", task=name)
                self.request_stop()

        self._tasks.append(asyncio.ensure_future(guard()))

    async def shutdown(self) -> None:
        self.log.info("console stopping")
        for q in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 3.0)
        for feed in self._feeds:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(feed.stop(), 2.0)
        for bus in (self.reader, self.actor):
            if bus is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(bus.close(), 6.0)
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._runner.cleanup(), 2.0)
        self.log.info("console stopped")

    # ---------------------------------------------------------------------------- reading

    async def _subscribe_live(self) -> None:
        p = self.subjects.prefix

        async def on_intent(_: Msg) -> None:
            self.state.on_intent()

        async def on_order(msg: Msg) -> None:
            with contextlib.suppress(BadMessage):
                self.state.on_order(ORDER_CODEC.decode(msg.data))

        async def on_health(msg: Msg) -> None:
            with contextlib.suppress(BadMessage):
                self.state.on_heartbeat(HEARTBEAT_CODEC.decode(msg.data))

        for subject, cb in ((f"{p}.intent.>", on_intent), (f"{p}.order.>", on_order), (f"{p}.health.>", on_health)):
            self._subs.append(await self.reader.subscribe(subject, cb))

    async def _wait_stream(self, stream: str) -> None:
        """Until the services have created ``stream`` (the console never creates or changes one)."""
        said = False
        while True:
            try:
                await self.reader.wait_stream(stream, deadline_s=5.0)
                return
            except BusError:
                if not said:
                    self.log.info("waiting for the services to create the streams", stream=stream)
                    said = True

    async def _follow_exec(self) -> None:
        await self._wait_stream(EXEC)
        head = await self.reader.stream_last_seq(EXEC)
        self.state.exec_head = head
        history = self.config.console.exec_history
        if history > 0 and head > history:
            policy, start = DeliverPolicy.BY_START_SEQUENCE, head - history + 1
        else:
            policy, start = DeliverPolicy.ALL, 0

        async def on_exec(msg: Msg) -> None:
            try:
                report = decode_any(msg.data)
            except BadMessage:
                return
            try:
                seq = int(msg.metadata.sequence.stream)
            except Exception:
                seq = 0
            self.state.on_report(report, seq)

        for subject in (self.subjects.all_exec, self.subjects.all_rejects):
            self._feeds.append(await self.reader.feed(EXEC, subject, on_exec, deliver_policy=policy, start_seq=start))

    async def _follow_equity(self) -> None:
        await self._wait_stream(EQUITY)
        head = await self.reader.stream_last_seq(EQUITY)
        keep = self.config.console.equity_points * max(1, len(self.config.accounts))
        start = max(1, head - keep + 1)

        async def on_point(msg: Msg) -> None:
            try:
                point = decode_any(msg.data)
            except BadMessage:
                return
            if isinstance(point, EquityPoint):
                self.state.on_equity(point)

        self._subs.append(await self.reader.ordered_from(EQUITY, self.subjects.all_equity, start, on_point))

    async def _follow_orders(self) -> None:
        while True:
            try:
                kv = await self.reader.kv(KV_ORDERS)
                break
            except (nats.js.errors.NotFoundError, nats.js.errors.BucketNotFoundError, nats.errors.TimeoutError):
                await asyncio.sleep(1.0)
        watcher = await kv.watchall()
        loaded = False
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=30.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                if entry is None:  # the current values are in: what follows are changes
                    loaded = self.state.orders_loaded = True
                    continue
                rec = None
                if entry.operation not in ("DEL", "PURGE") and entry.value:
                    try:
                        rec = msgspec.msgpack.decode(entry.value, type=OrderRecord)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        continue
                self.state.on_order_record(entry.key, rec)
                if loaded:
                    self._wake.set()
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.gather(self.refresh_books(), self.refresh_trading())
            await asyncio.sleep(self.config.console.refresh_s)

    async def refresh_books(self) -> None:
        """The keeper's positions (by strategy) and each account's state."""
        try:
            reply = decode_any(
                await self.reader.request(self.subjects.q("positions"), PositionsQuery(by_strategy=True), timeout=2.0)
            )
        except nats.errors.NoRespondersError:
            self.state.keeper_failed("no position-keeper answered")
            return
        except (nats.errors.Error, TimeoutError, BadMessage) as exc:
            self.state.keeper_failed(f"position-keeper query failed: {type(exc).__name__}")
            return
        if isinstance(reply, PositionsReply):
            self.state.set_positions(reply.positions, reply.applied_seq, reply.fills_applied)
        for account in self.state.accounts():
            try:
                data = await self.reader.request(self.subjects.q("account"), AccountQuery(account=account), timeout=2.0)
                state = decode_any(data)
            except (nats.errors.Error, TimeoutError, BadMessage):
                continue
            if isinstance(state, AccountState):
                self.state.account_states[account] = state
            elif isinstance(state, ErrorReply):
                self.state.account_states.pop(account, None)

    async def refresh_trading(self) -> None:
        """The router's trading states (a ``TradingStateQuery``: on the control subject, so as operator)."""
        if self.actor is None:
            self.state.set_trading(None, "unknown: the console has no operator connection")
            return
        try:
            data = await self.actor.request(self.subjects.ctl("trading"), TradingStateQuery(), timeout=2.0)
            reply = decode_any(data)
        except nats.errors.NoRespondersError:
            self.state.set_trading(None, "no router answered")
            return
        except (nats.errors.Error, TimeoutError, BadMessage) as exc:
            self.state.set_trading(None, f"trading state query failed: {type(exc).__name__}")
            return
        if isinstance(reply, ControlReply) and reply.ok:
            self.state.set_trading(reply.detail)
        else:
            self.state.set_trading(None, getattr(reply, "detail", "") or "the router did not say")

    # ---------------------------------------------------------------------------- pushing

    async def _push_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), PUSH_INTERVAL_S)
            self._wake.clear()
            self.state.bus["observer"] = self.reader.connected
            self.state.bus["operator"] = self.actor is not None and self.actor.connected
            new = self.state.take_new_equity()
            if not self.clients:
                continue
            items = [("state", _json(self.state.snapshot()))]
            if new:
                items.append(("equity", _json(new)))
            for q in list(self.clients):
                try:
                    for item in items:
                        q.put_nowait(item)
                except asyncio.QueueFull:  # a reader that cannot keep up is dropped; its page reconnects
                    self.clients.discard(q)
                    while not q.empty():
                        q.get_nowait()
                    q.put_nowait(None)

    # ------------------------------------------------------------------------------- HTTP

    async def _start_http(self) -> None:
        app = web.Application(middlewares=[self._headers])
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/session", self._session)
        app.router.add_post("/api/login", self._login)
        app.router.add_post("/api/logout", self._logout)
        app.router.add_post("/api/action", self._action)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.http.host, self.http_port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.http_url = f"http://{self.config.http.host}:{port}"

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    async def _index(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def _healthz(self, _: web.Request) -> web.Response:
        ok = self.reader.connected
        body = {
            "service": self.name,
            "instance": self.instance,
            "ok": ok,
            "uptime_s": round(time.time() - self.started, 3),
            "nats_connected": ok,
            "operator_link": self.actor is not None and self.actor.connected,
        }
        return web.json_response(body, status=200 if ok else 503)

    async def _state(self, _: web.Request) -> web.Response:
        return web.json_response(self.state.snapshot(), dumps=_json)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
                **SECURITY_HEADERS,
            }
        )
        await resp.prepare(request)
        q: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(maxsize=32)
        self.clients.add(q)
        try:
            first = {"state": self.state.snapshot(), "equity": self.state.equity_series()}
            await resp.write(_sse("snapshot", _json(first)))
            while True:
                item = await q.get()
                if item is None:
                    break
                await resp.write(_sse(*item))
        except (ConnectionError, RuntimeError):
            pass  # the page went away
        finally:
            self.clients.discard(q)
        return resp

    def _session_of(self, request: web.Request) -> Any:
        return self.access.session(request.cookies.get(COOKIE))

    async def _session(self, request: web.Request) -> web.Response:
        session = self._session_of(request)
        return web.json_response(
            {
                "role": "operator" if session is not None else "observer",
                "label": session.label if session is not None else "",
                "csrf": session.csrf if session is not None else "",
                "operator_link": self.actor is not None,
                "token_file": str(self.access.path),
            }
        )

    async def _login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            presented = str(body.get("token") or "")
        except (ValueError, AttributeError):
            return web.json_response({"ok": False, "error": 'send {"token": "..."}'}, status=400)
        made = self.access.login(presented)
        if made is None:
            self.log.warning("console login refused: wrong operator token", remote=request.remote)
            return web.json_response(
                {"ok": False, "error": f"wrong operator token (it is in {self.access.path})"}, status=403
            )
        cookie, session = made
        self.log.warning("console operator logged in", session=session.label, remote=request.remote)
        resp = web.json_response({"ok": True, "role": "operator", "label": session.label, "csrf": session.csrf})
        resp.set_cookie(COOKIE, cookie, httponly=True, samesite="Strict", path="/", max_age=int(self.access.ttl_s))
        return resp

    async def _logout(self, request: web.Request) -> web.Response:
        self.access.logout(request.cookies.get(COOKIE))
        resp = web.json_response({"ok": True, "role": "observer"})
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def _action(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            action = str(body.get("action") or "")
            account = str(body.get("account") or "") or None
            strategy = str(body.get("strategy") or "") or None
            reason = str(body.get("reason") or "")[:200]
        except (ValueError, AttributeError):
            return web.json_response({"ok": False, "error": "send a JSON object with an action"}, status=400)
        if action not in ACTIONS:
            return web.json_response(
                {"ok": False, "error": f"unknown action {action!r} (known: {', '.join(ACTIONS)})"}, status=400
            )
        scope = f"strategy {account}/{strategy}" if strategy else (f"account {account}" if account else "everything")
        session = self._session_of(request)
        if session is None:
            error = (
                f"refused: {action} needs the operator credential; this browser session is read-only (observer). "
                "Log in with the operator token."
            )
            self.state.record_action("observer", action, scope, False, error)
            self.log.warning("console action refused: no operator session", action=action, remote=request.remote)
            self._wake.set()
            return web.json_response({"ok": False, "error": error}, status=403)
        if not _same(request.headers.get(CSRF_HEADER, ""), session.csrf):
            error = "refused: the request did not carry this session's CSRF token (reload the page)"
            self.state.record_action(session.label, action, scope, False, error)
            return web.json_response({"ok": False, "error": error}, status=403)
        if strategy and not account:
            return web.json_response({"ok": False, "error": "a strategy needs an account"}, status=400)
        if account and account not in self.state.accounts():
            return web.json_response({"ok": False, "error": f"unknown account {account!r}"}, status=400)
        if self.actor is None:
            error = f"the console has no operator connection to NATS: {self.state.bus.get('operator_detail', '')}"
            return web.json_response({"ok": False, "error": error}, status=503)
        self.log.warning("console action", session=session.label, action=action, scope=scope, reason=reason)
        if action == "close-all":
            accounts = [account] if account else self.state.accounts()
            self._spawn(self._close_all(session.label, accounts, strategy), f"close-all:{scope}")
            detail = f"close-all of {scope} started; its outcome will appear under operator actions"
            self.state.record_action(session.label, action, scope, True, detail)
            self._wake.set()
            return web.json_response({"ok": True, "detail": detail}, status=202)
        if action == "kill":
            accounts = [account] if account else self.state.accounts()
            self._spawn(self._kill(session.label, accounts), f"kill:{scope}")
            detail = f"kill switch for {scope} started (reduce, cancel all, flatten, halt); its outcome follows"
            self.state.record_action(session.label, action, scope, True, detail)
            self._wake.set()
            return web.json_response({"ok": True, "detail": detail}, status=202)
        if action in TRADING_ACTIONS:
            why = reason or f"console {session.label}"
            subject = "trading"
            msg: Any = SetTradingState(state=TRADING_ACTIONS[action], account=account, strategy_id=strategy, reason=why)
        else:
            subject, msg = "cancel_all", CancelAll(account=account, strategy_id=strategy)
        try:
            reply = decode_any(await self.actor.request(self.subjects.ctl(subject), msg, timeout=10.0))
        except nats.errors.NoRespondersError:
            reply = ControlReply(ok=False, detail="no router answered (is the router running?)")
            status = 503
        except (nats.errors.Error, TimeoutError, BadMessage) as exc:
            reply = ControlReply(ok=False, detail=f"the router did not answer: {type(exc).__name__}")
            status = 504
        else:
            status = 200 if isinstance(reply, ControlReply) and reply.ok else 409
        ok = isinstance(reply, ControlReply) and reply.ok
        detail = getattr(reply, "detail", "") or str(reply)
        self.state.record_action(session.label, action, scope, ok, detail)
        if action in TRADING_ACTIONS:
            await self.refresh_trading()
        self._wake.set()
        return web.json_response({"ok": ok, "detail": detail} if ok else {"ok": False, "error": detail}, status=status)

    async def _close_all(self, who: str, accounts: list[str], strategy: str | None) -> None:
        from ordermesh.sdk import OrderMeshClient

        for account in accounts:
            try:
                async with OrderMeshClient("console", config=self.config, account=account, identity=OPERATOR) as om:
                    report = await om.close_all_positions(
                        account, strategy, whole_account=strategy is None, timeout=CLOSE_ALL_TIMEOUT_S
                    )
            except Exception as exc:  # reported on the page, never a dead task
                self.state.record_action(who, "close-all", f"account {account}", False, f"{type(exc).__name__} {exc}")
                continue
            closed = sum(1 for o in report.outcomes if o.status == "closed")
            failed = [f"{o.strategy_id or '*'} {o.symbol}: {o.status} {o.reason}".strip()
                      for o in report.outcomes if o.status != "closed"]  # fmt: skip
            detail = f"{closed} of {len(report.outcomes)} position(s) closed; open orders: {report.cancel}"
            if failed:
                detail += "; " + "; ".join(failed)
            where = f"strategy {account}/{strategy}" if strategy else f"account {account}"
            self.state.record_action(who, "close-all", where, report.flat, detail)
            self.log.warning("console close-all done", session=who, scope=where, flat=report.flat, detail=detail)
            self._wake.set()

    async def _kill(self, who: str, accounts: list[str]) -> None:
        """The kill switch (``OrderMeshClient.kill``) for each account, its outcome recorded for the page."""
        from ordermesh.sdk import OrderMeshClient

        for account in accounts:
            try:
                async with OrderMeshClient("console", config=self.config, account=account, identity=OPERATOR) as om:
                    report = await om.kill(account, timeout=CLOSE_ALL_TIMEOUT_S)
            except Exception as exc:  # reported on the page, never a dead task
                self.state.record_action(who, "kill", f"account {account}", False, f"{type(exc).__name__} {exc}")
                continue
            state = ("flat" if report.flat else "NOT FLAT") + (", halted" if report.halted else ", NOT HALTED")
            detail = f"{state}; " + "; ".join(report.steps)
            self.state.record_action(who, "kill", f"account {account}", report.flat and report.halted, detail)
            self.log.warning("console kill switch done", session=who, account=account, detail=detail)
            await self.refresh_trading()
            self._wake.set()


def _same(a: str, b: str) -> bool:
    return bool(a) and hmac.compare_digest(a.encode(), b.encode())


def run_console(config: OrderMeshConfig, *, http_port: int | None = None, instance: str | None = None) -> int:
    """Process entry point (``ordermesh console``)."""
    from ordermesh.platform.log import setup_logging
    from ordermesh.platform.runtime import install_uvloop

    setup_logging(config.log, service="console")
    install_uvloop()
    try:
        asyncio.run(ConsoleService(config, http_port=http_port, instance=instance).run())
    except TokenError as exc:
        print(f"ordermesh: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
