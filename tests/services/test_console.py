"""The operator's web console (``ordermesh console``), driven in a real headless browser (Debian's chromium).

The services and the console run as processes against a nats-server with the generated authorization block, so
the console reads as ``observer`` and acts as ``operator`` exactly as under ``make run`` (and the server's log
shows no refused publish or subscribe). Every wait is on a condition with a timeout; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ordermesh.contract.codec import decode_any
from ordermesh.contract.subjects import Subjects
from ordermesh.contract.wire import (
    ControlReply,
    OrderDenied,
    OrderFilled,
    OrderRequest,
    PositionSizingResult,
    Side,
    TradingStateQuery,
)
from ordermesh.platform.auth import OPERATOR, generate, identities
from ordermesh.platform.bus import Bus
from ordermesh.platform.config import AuthSettings, NatsSettings, OrderMeshConfig
from ordermesh.platform.natsserver import NatsServer, free_port
from ordermesh.sdk import OrderMeshClient
from services.console.access import Access, ensure_token
from services.console.state import ConsoleState, Latencies, TradingStates, WinRates
from tests.harness import ROOT, System, eventually

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
STRATEGY = "s-console"
D = Decimal

needs_browser = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="chromium and chromedriver not installed (`make test` installs them: apt-get install chromium "
    "chromium-driver)",
)


# ------------------------------------------------------------------------------------------ fixtures


@dataclass
class Running:
    """A secured nats-server, the services, the console process and its URL."""

    server: NatsServer
    settings: NatsSettings
    system: System
    url: str
    token: str
    log_dir: Path

    def config(self) -> OrderMeshConfig:
        return OrderMeshConfig(nats=self.settings)

    def client(self) -> OrderMeshClient:
        return OrderMeshClient(STRATEGY, config=self.config())

    async def router_trading(self) -> str:
        """What the router says about trading states, asked directly (as the operator), not through the page."""
        bus = Bus(self.settings, "test-operator", identity=OPERATOR)
        await bus.connect()
        try:
            reply = decode_any(await bus.request(bus.subjects.ctl("trading"), TradingStateQuery(), timeout=5))
        finally:
            await bus.close()
        assert isinstance(reply, ControlReply) and reply.ok
        return reply.detail

    def violations(self) -> list[str]:
        return [line for line in self.server.log_file.read_text().splitlines() if "Violation" in line]


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _start_console(url: str, port: int, log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "--nats", url, "console", "--http-port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True,
        )  # fmt: skip


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    auth_dir = tmp_path / "auth"
    auth = AuthSettings(dir=str(auth_dir), strategies=[STRATEGY])
    files = generate(identities(OrderMeshConfig(nats=NatsSettings(auth=auth))), Subjects(), auth_dir)
    server = NatsServer(tmp_path / "nats", config_file=files.server_config).start()
    settings = NatsSettings(url=server.url, connect_timeout_s=2.0, auth=auth)
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {"ORDERMESH__NATS__AUTH__DIR": str(auth_dir), "ORDERMESH__CONSOLE__REFRESH_S": "0.2"}
    port = free_port()
    console: subprocess.Popen[bytes] | None = None
    try:
        async with System(server.url, logs, env=env, settings=settings) as system:
            await system.start_all()
            console = _start_console(server.url, port, logs / "console.log", system.env)
            url = f"http://127.0.0.1:{port}"

            async def healthy() -> bool:
                if console is not None and console.poll() is not None:
                    raise AssertionError(f"the console exited ({console.returncode}):\n{system.logs_tail()}")
                try:
                    status, _ = await asyncio.to_thread(_get, f"{url}/healthz")
                except OSError:
                    return False
                return status == 200

            await eventually(healthy, 30, "the console answering /healthz")
            token = (auth_dir / "console-operator.token").read_text().strip()
            yield Running(server, settings, system, url, token, logs)
            console.terminate()
            assert console.wait(15) == 0, system.logs_tail()
            assert "Traceback" not in (logs / "console.log").read_text(), system.logs_tail()
    finally:
        if console is not None and console.poll() is None:
            console.kill()
            console.wait()
        server.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="om-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,1200",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# ------------------------------------------------------------------------------------- page helpers


class Page:
    """The console page in the browser; every wait runs in a thread so the test's event loop (the SDK) goes on."""

    def __init__(self, driver: Any, url: str) -> None:
        self.driver = driver
        self.url = url

    def _open(self, fragment: str = "") -> None:
        self.driver.get(self.url + "/" + fragment)

    async def open(self, fragment: str = "") -> None:
        await asyncio.to_thread(self._open, fragment)
        await self.wait_text("#link", "live", 20)  # the Server-Sent Events stream is up

    def _wait(self, condition: Any, timeout: float, what: str) -> Any:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(condition)
        except TimeoutException:
            logs = "\n".join(str(e) for e in self.driver.get_log("browser"))
            raise AssertionError(f"the page did not show {what} within {timeout}s; browser log:\n{logs}") from None

    async def wait_text(self, css: str, text: str, timeout: float = 10.0) -> str:
        from selenium.webdriver.common.by import By

        def found(driver: Any) -> str | bool:
            for el in driver.find_elements(By.CSS_SELECTOR, css):
                if text in el.text:
                    return str(el.text)
            return False

        return str(await asyncio.to_thread(self._wait, found, timeout, f"{text!r} in {css}"))

    async def wait_row(self, table: str, match: Any, timeout: float = 10.0, what: str = "") -> list[str]:
        """The cells of the first row of ``#table`` for which ``match({"intent": ..., "cells": [...]})`` holds."""
        script = """
            return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr')).map((tr) => ({
                intent: tr.dataset.intent || '', cells: Array.from(tr.cells).map((td) => td.textContent)}));"""

        def found(driver: Any) -> list[str] | bool:
            for row in driver.execute_script(script, table):
                if match(row):
                    return list(row["cells"])
            return False

        cells = await asyncio.to_thread(self._wait, found, timeout, what or f"the expected row in #{table}")
        return list(cells)

    async def text(self, css: str) -> str:
        from selenium.webdriver.common.by import By

        return str(await asyncio.to_thread(lambda: self.driver.find_element(By.CSS_SELECTOR, css).text))

    async def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        await asyncio.to_thread(lambda: self.driver.find_element(By.CSS_SELECTOR, css).click())

    async def type(self, css: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        await asyncio.to_thread(lambda: self.driver.find_element(By.CSS_SELECTOR, css).send_keys(text))

    def errors(self) -> list[str]:
        """Errors the page itself logged (script errors, refused resources, CSP violations)."""
        return [
            str(e["message"])
            for e in self.driver.get_log("browser")
            if e["level"] == "SEVERE" and "/api/action" not in e["message"] and "/api/login" not in e["message"]
        ]


# ------------------------------------------------------------------------------------- browser tests


@needs_browser
async def test_the_page_shows_a_fill_within_seconds_of_a_submit(running: Running, browser: Any) -> None:
    page = Page(browser, running.url)
    await page.open()
    assert await page.text("#trading-state") == "ACTIVE"
    assert "observer" in await page.text("#role")
    async with running.client() as om:
        intent_id = await om.buy("EURUSD", D("0.10"))
        report = await om.wait(intent_id, timeout=20)
    assert isinstance(report, OrderFilled), report
    fill = await page.wait_row("fills", lambda r: r["intent"] == intent_id, 10, "the fill")
    assert fill[1:7] == [STRATEGY, "BUY", "0.10", "EURUSD", f"{report.last_px:.5f}", "paper"], fill
    # the keeper's books: the account, the strategy's position, its profit summary
    pos = await page.wait_row("positions", lambda r: r["cells"][1:3] == [STRATEGY, "EURUSD"], 10, "the position")
    assert pos[0] == "paper-1" and pos[3] == "0.10" and pos[4] == f"{report.last_px:.5f}"
    summary = await page.wait_row("strategies", lambda r: r["cells"][1] == STRATEGY, 10, "the strategy's summary")
    assert summary[0] == "paper-1" and summary[6:] == ["0", "-", "1"]  # no trade closed yet: no win rate
    # (the row is there before the fill: wait for the keeper's state that counts it, read every second)
    account = await page.wait_row(
        "accounts", lambda r: r["cells"][0] == "paper-1 (netting, USD)" and r["cells"][-1] == "1", 10, "counted"
    )
    assert account[1] == "ACTIVE" and account[-1] == "1"  # one fill
    # health of every process and of the broker, and the hop latency of that order
    for name in ("gateway paper", "keeper", "router", "sizer"):
        await page.wait_row("processes", lambda r, n=name: r["cells"][:2] == [n, "ok"], 10, f"{name} ok")
    await page.wait_row("brokers", lambda r: r["cells"][:2] == ["paper", "connected"], 10, "the broker connected")
    await page.wait_row(
        "latency", lambda r: r["cells"][0] == "intent → first fill" and int(r["cells"][2]) >= 1, 10, "its latency"
    )
    assert page.errors() == []
    assert running.violations() == []


@needs_browser
async def test_the_halt_button_halts_and_the_next_submit_is_refused(running: Running, browser: Any) -> None:
    page = Page(browser, running.url)
    await page.open()
    await page.type("#token", running.token)
    await page.click("#login")
    await page.wait_text("#role", "operator", 10)
    await page.click("#btn-halt")
    await page.wait_text("#trading-state", "HALTED", 10)
    assert "global is now HALTED" in await page.wait_text("#action-result", "halt:", 10)
    assert (await running.router_trading()).startswith("global HALTED")
    # the next submit is refused by the router, with the reason, and the page shows that refusal
    async with running.client() as om:
        intent_id = await om.buy("EURUSD", D("0.10"))
        report = await om.wait(intent_id, timeout=20)
    assert isinstance(report, OrderDenied), report
    assert report.reason.startswith("TRADING_STATE:") and "HALTED" in report.reason
    refusal = await page.wait_row("refusals", lambda r: r["intent"] == intent_id, 10, "the refusal")
    assert refusal[1:4] == ["router", STRATEGY, "EURUSD"] and refusal[4] == report.reason
    action = await page.wait_row("actions", lambda r: r["cells"][2] == "halt", 10, "the halt in the actions log")
    assert action[1] == "operator#1" and action[3] == "everything"
    assert action[4].startswith("ok: global is now HALTED")
    # and resume puts it back
    await page.click("#btn-resume")
    await page.wait_text("#trading-state", "ACTIVE", 10)
    assert (await running.router_trading()).startswith("global ACTIVE")
    assert page.errors() == []
    assert running.violations() == []


@needs_browser
async def test_an_observers_click_on_an_action_is_refused(running: Running, browser: Any) -> None:
    page = Page(browser, running.url)
    await page.open()
    assert "observer" in await page.text("#role")
    await page.click("#btn-halt")
    shown = await page.wait_text("#action-result", "403", 10)
    assert shown.startswith("403 refused: halt needs the operator credential; this browser session is read-only")
    action = await page.wait_row("actions", lambda r: r["cells"][1:3] == ["observer", "halt"], 10, "the refusal")
    assert action[4].startswith("refused/failed: refused: halt needs the operator credential")
    # close-all asks for a second click, then is refused the same way
    await page.click("#btn-close-all")
    await page.wait_text("#btn-close-all", "confirm", 5)
    await page.click("#btn-close-all")
    await page.wait_text("#action-result", "403 refused: close-all needs the operator credential", 10)
    # a wrong token does not make an operator
    await page.type("#token", "not-the-token-" + "x" * 30)
    await page.click("#login")
    await page.wait_text("#action-result", "403 wrong operator token", 10)
    assert "observer" in await page.text("#role")
    # nothing changed at the router, and the page still says ACTIVE
    assert await running.router_trading() == "global ACTIVE"
    assert await page.text("#trading-state") == "ACTIVE"
    assert running.violations() == []


async def test_actions_are_refused_by_the_server_not_only_by_the_page(running: Running) -> None:
    """Without a session cookie (curl, another page) an action is 403 with the reason; an operator session also
    needs its CSRF token; with both it acts."""
    status, body = await asyncio.to_thread(_post, f"{running.url}/api/action", {"action": "halt"})
    assert status == 403 and "needs the operator credential" in body["error"]
    status, body = await asyncio.to_thread(_post, f"{running.url}/api/login", {"token": "wrong" * 8})
    assert status == 403 and body["error"].startswith("wrong operator token")

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())

    def post(path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(
            running.url + path, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **(headers or {})},
        )  # fmt: skip
        try:
            with opener.open(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    status, login = await asyncio.to_thread(post, "/api/login", {"token": running.token})
    assert status == 200 and login["role"] == "operator"
    status, body = await asyncio.to_thread(post, "/api/action", {"action": "reduce", "account": "paper-1"})
    assert status == 403 and "CSRF" in body["error"]
    status, body = await asyncio.to_thread(post, "/api/action", {"action": "halt", "account": "nosuch"},
                                           {"X-CSRF-Token": login["csrf"]})  # fmt: skip
    assert status == 400 and body["error"] == "unknown account 'nosuch'"
    csrf = {"X-CSRF-Token": login["csrf"]}
    status, body = await asyncio.to_thread(post, "/api/action", {"action": "reduce", "account": "paper-1"}, csrf)
    assert status == 200 and "account paper-1 is now REDUCING" in body["detail"], body
    assert "account paper-1 REDUCING" in await running.router_trading()
    status, body = await asyncio.to_thread(post, "/api/action", {"action": "resume", "account": "paper-1"}, csrf)
    assert status == 200
    assert await running.router_trading() == "global ACTIVE"
    # the kill switch: reduce, cancel all, flatten, halt — then resumed for the rest of the test
    status, body = await asyncio.to_thread(post, "/api/action", {"action": "kill", "account": "paper-1"}, csrf)
    assert status == 202 and body["detail"].startswith("kill switch for account paper-1 started"), body

    async def halted() -> bool:
        return "account paper-1 HALTED" in await running.router_trading()

    await eventually(halted, timeout=30, what="the kill switch halting the account")
    status, body = await asyncio.to_thread(post, "/api/action", {"action": "resume", "account": "paper-1"}, csrf)
    assert status == 200
    assert await running.router_trading() == "global ACTIVE"
    # a rotated token ends the session at its next action
    ensure_token(Path(running.settings.auth.dir) / "console-operator.token", rotate=True)
    status, body = await asyncio.to_thread(post, "/api/action", {"action": "halt"}, csrf)
    assert status == 403 and "needs the operator credential" in body["error"]
    assert await running.router_trading() == "global ACTIVE"
    assert running.violations() == []


# ------------------------------------------------------------------------------------- pure parts


def test_the_operator_token_is_created_private_and_rotation_ends_sessions(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "console-operator.token"
    token, created = ensure_token(path)
    assert created and len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ensure_token(path) == (token, False)  # kept
    access = Access(path)
    assert access.login("wrong") is None
    made = access.login(token)
    assert made is not None
    cookie, session = made
    assert access.session(cookie) is session and access.session("forged") is None
    new, rotated = ensure_token(path, rotate=True)
    assert rotated and new != token
    assert access.session(cookie) is None  # logged in with the old token
    assert access.login(token) is None and access.login(new) is not None


def test_trading_states_are_read_from_the_routers_answer() -> None:
    t = TradingStates.parse("global ACTIVE; account paper-1 HALTED; strategy paper-1/demo-trend REDUCING")
    assert t.global_state == "ACTIVE" and t.accounts == {"paper-1": "HALTED"}
    assert t.strategies == {("paper-1", "demo-trend"): "REDUCING"}
    assert t.of_account("paper-1") == ("HALTED", "account") and t.of_account("other") == ("ACTIVE", "")
    g = TradingStates.parse("global HALTED; account paper-1 REDUCING")
    assert g.of_account("paper-1") == ("HALTED", "global")


def _fill(n: int, side: Side, qty: str, px: str, coid: str = "", **kw: Any) -> OrderFilled:
    fields: dict[str, Any] = dict(
        event_id=f"e{n}", client_order_id=coid or f"om-{n}", intent_id=f"i{n}", strategy_id="s", account="a",
        broker_id="paper", symbol="EURUSD", broker_order_id=f"b{n}", fill_id=f"f{n}", side=side,
        last_qty=D(qty), last_px=D(px), cum_qty=D(qty), leaves_qty=D(0), order_qty=D(qty),
    )  # fmt: skip
    fields.update(kw)
    return OrderFilled(**fields)


def test_win_rate_counts_orders_that_reduce_a_position_by_what_they_realized() -> None:
    w = WinRates()
    w.apply(_fill(1, Side.BUY, "1", "1.1000"))  # opens
    w.apply(_fill(2, Side.BUY, "1", "1.1010"))  # adds: average 1.1005
    w.apply(_fill(3, Side.SELL, "1", "1.1020"))  # closes 1 above the average: a win
    w.apply(_fill(4, Side.SELL, "0.5", "1.1000", coid="om-x"))  # closes part below: a loss so far...
    w.apply(_fill(5, Side.SELL, "0.5", "1.1030", coid="om-x"))  # ...the same order's second fill makes it a win
    w.apply(_fill(5, Side.SELL, "0.5", "1.1030", coid="om-x"))  # the same fill again changes nothing
    stats = w.stats[("a", "s")]
    assert (stats.fills, stats.closes, stats.wins) == (5, 2, 2)
    w.apply(_fill(6, Side.SELL, "2", "1.1000"))  # opens a short
    w.apply(_fill(7, Side.BUY, "3", "1.1010"))  # closes it at a loss and flips long 1 @ 1.1010
    assert (stats.closes, stats.wins) == (3, 2)
    assert stats.win_rate == pytest.approx(2 / 3)
    assert w.open[("a", "s", "EURUSD")].qty == D(1) and w.open[("a", "s", "EURUSD")].avg == D("1.1010")
    # hedging: a fill naming an open ticket reduces that ticket, another opens its own
    h = WinRates(hedging={"a"})
    h.apply(_fill(1, Side.BUY, "1", "1.1000", position_id="T1"))
    h.apply(_fill(2, Side.BUY, "1", "1.2000"))  # ticket f2
    h.apply(_fill(3, Side.SELL, "1", "1.1500", position_id="T1"))  # closes T1 with a gain
    h.apply(_fill(4, Side.SELL, "1", "1.1500", position_id="f2"))  # closes f2 with a loss
    assert (h.stats[("a", "s")].closes, h.stats[("a", "s")].wins) == (2, 1)


def test_hop_latency_comes_from_the_messages_own_times() -> None:
    now = 1_000_000_000_000
    lat = Latencies(clock=lambda: now)
    from ordermesh.contract.wire import Fixed, Intent, OrderAccepted

    intent = Intent(intent_id="i1", strategy_id="s", account="a", symbol="EURUSD", side=Side.BUY,
                    sizing=Fixed(qty=D("0.1")), ts_ns=now - 30_000_000)  # fmt: skip
    audit = PositionSizingResult(method="fixed", status="ok", account_balance=D(1), risk_amount=D(0), lot_size=D("0.1"))
    lat.on_order(OrderRequest(intent=intent, quantity=D("0.1"), sizing_audit=audit, ts_ns=now - 28_000_000))
    lat.on_accepted(
        OrderAccepted(
            event_id="e",
            client_order_id="c",
            intent_id="i1",
            strategy_id="s",
            account="a",
            broker_id="paper",
            symbol="EURUSD",
            broker_order_id="b",
            ts_ns=now - 20_000_000,
        )
    )
    lat.on_fill(_fill(1, Side.BUY, "0.1", "1.1", intent_ts_ns=now - 30_000_000, ts_ns=now - 19_000_000))
    lat.on_fill(_fill(2, Side.BUY, "0.1", "1.1", intent_ts_ns=now - 900_000_000_000, ts_ns=now - 899_000_000_000))
    rows = {r["hop"]: r for r in lat.summary()}
    assert (rows["intent_to_order"]["count"], rows["intent_to_order"]["p50"]) == (1, "2.0")
    assert rows["order_to_accepted"]["p50"] == "8.0"
    assert (rows["intent_to_fill"]["count"], rows["intent_to_fill"]["max"]) == (1, "11.0")  # the old one is out


def test_the_snapshot_is_json_with_numbers_at_their_precision() -> None:
    state = ConsoleState(OrderMeshConfig())
    state.on_report(_fill(1, Side.BUY, "0.1", "1.085031014492753623188405797", account="paper-1"), seq=1)
    doc = json.loads(json.dumps(state.snapshot()))
    assert doc["fills"][0]["px"] == "1.08503" and doc["fills"][0]["qty"] == "0.10"
    assert doc["accounts"][0] == {"account": "paper-1", "trading": "UNKNOWN", "trading_scope": "", "known": False}
    assert [(r["hop"], r["count"], r["p50"]) for r in doc["latency"]] == [
        ("intent_to_order", 0, "-"),
        ("order_to_accepted", 0, "-"),
        ("intent_to_fill", 0, "-"),
    ]  # every hop listed, even before any sample
