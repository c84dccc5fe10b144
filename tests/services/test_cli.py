"""The ordermesh command, run as a user runs it (a separate process)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from ordermesh.brokers.registry import ADAPTER_TYPES
from ordermesh.platform.natsserver import NatsServer, free_port, url_answers
from tests.harness import ROOT, System, eventually

KNOWN = ", ".join(sorted(ADAPTER_TYPES))


def ordermesh(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


async def aordermesh(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(ordermesh, *args, timeout=timeout)


def test_config_error_is_one_line_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nats:\n  replicas: many\n")
    out = ordermesh("--config", str(bad), "sizer")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ordermesh: config error:") and "$.nats.replicas" in lines[0]


def test_unset_variable_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "vars.yaml"
    cfg.write_text("nats:\n  url: ${OM_TEST_SURELY_UNSET}\n")
    env = {k: v for k, v in os.environ.items() if k != "OM_TEST_SURELY_UNSET"}
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "--config", str(cfg), "router"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "ordermesh: config error: environment variable OM_TEST_SURELY_UNSET is not set (used at $.nats.url)"
    )


def test_unknown_gateway_is_refused_with_the_known_ones() -> None:
    out = ordermesh("--nats", "nats://127.0.0.1:1", "gateway", "nowhere")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "ordermesh: config error: brokers.nowhere: no such broker in the configuration (known: paper)"
    )


async def test_submit_positions_and_tail(nats_server: NatsServer, tmp_path: Path) -> None:
    url = nats_server.url
    async with System(url, tmp_path) as system:
        await system.start_all()
        tail = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "--nats", url, "tail", "exec.>", "--count", "2",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        assert tail.stderr is not None
        assert b"tailing om.exec.>" in await asyncio.wait_for(tail.stderr.readline(), 30)

        out = await aordermesh("--nats", url, "submit", "buy", "EURUSD", "0.25", "--intent-id", "cli-1")
        assert out.returncode == 0, out.stderr
        assert re.search(r"OrderFilled: BUY 0\.25 EURUSD @ 1\.\d{5} at paper", out.stdout), out.stdout

        # the same intent again is deduplicated and says what became of the first one
        again = await aordermesh("--nats", url, "submit", "buy", "EURUSD", "0.25", "--intent-id", "cli-1")
        assert again.returncode == 0, again.stderr
        assert "was already submitted" in again.stdout and "is FILLED, filled 0.25 of 0.25" in again.stdout

        # a limit order that rests is a success, with its state (it used to be "no outcome", exit 1)
        resting = await aordermesh(
            "--nats", url, "submit", "buy", "EURUSD", "0.10", "--limit", "1.06000", "--intent-id", "cli-rest"
        )
        assert resting.returncode == 0, resting.stdout + resting.stderr
        assert resting.stdout.splitlines()[-1] == (
            "resting: ACCEPTED, filled 0 of 0.10; cancel with `ordermesh cancel cli-rest`"
        )
        assert (await aordermesh("--nats", url, "cancel", "cli-rest")).returncode == 0

        refused = await aordermesh("--nats", url, "submit", "sell", "NOPE", "1")
        assert refused.returncode == 1
        assert "OrderDenied: INSTRUMENT: NOPE is not a known tradable instrument at paper" in refused.stdout

        stdout, _ = await asyncio.wait_for(tail.communicate(), 30)
        lines = stdout.decode().splitlines()
        # one readable line per message: clock time, type, fields; prices at the instrument's precision
        assert re.match(r"om\.exec\.paper\.cli \d\d:\d\d:\d\d\.\d{3} OrderAccepted ", lines[0]), lines[0]
        assert re.search(r"OrderFilled .*last_qty=0\.25 last_px=1\.\d{5}( |$)", lines[1]), lines[1]
        assert "ts_ns" not in stdout.decode() and "{" not in lines[0]

        pos = await aordermesh("--nats", url, "positions")
        assert pos.returncode == 0, pos.stderr
        # the average price at the instrument's precision, not a 28-digit quotient
        assert re.search(r"paper-1\s+\*\s+EURUSD\s+0\.25\s+1\.\d{5}\s", pos.stdout), pos.stdout

        # a reader that stops early: no BrokenPipeError, and `tail` ends instead of running for ever
        cli = f"{sys.executable} -m services.cli --nats {url}"
        listing = await asyncio.to_thread(
            subprocess.run, f"{cli} orders --all | head -1", shell=True, capture_output=True, text=True, timeout=60,
            cwd=ROOT,
        )  # fmt: skip
        assert "Traceback" not in listing.stderr and "BrokenPipe" not in listing.stderr, listing.stderr
        assert listing.stdout.splitlines() == [listing.stdout.splitlines()[0]]
        assert listing.stdout.startswith("client order id")
        piped = await asyncio.create_subprocess_shell(
            f"{cli} tail 'exec.>' | head -1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )  # fmt: skip
        assert piped.stderr is not None
        assert b"tailing om.exec.>" in await asyncio.wait_for(piped.stderr.readline(), 30)
        await aordermesh("--nats", url, "submit", "sell", "EURUSD", "0.25")
        out_b, err_b = await asyncio.wait_for(piped.communicate(), 30)  # both ends of the pipe finished
        assert len(out_b.decode().splitlines()) == 1 and b"Traceback" not in err_b, err_b


def test_positions_without_a_keeper_says_so(nats_server: NatsServer) -> None:
    out = ordermesh("--nats", nats_server.url, "positions")
    assert out.returncode == 1
    assert "no position-keeper answered" in out.stderr


def test_up_starts_embedded_nats_and_trades_then_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    env = {
        "ORDERMESH__NATS__URL": url,
        "ORDERMESH__NATS__STORE_DIR": str(tmp_path / "nats"),
        "ORDERMESH__DEMO__INTERVAL_S": "0.2",
        **{f"ORDERMESH__HTTP__{svc}": "0" for svc in ("SIZER", "ROUTER", "KEEPER", "DEMO", "GATEWAY_BASE", "CONSOLE")},
    }
    out = ordermesh("up", "--duration", "8", "--no-view", env=env, cwd=tmp_path, timeout=90)
    assert out.returncode == 0, out.stderr
    summary = [line for line in out.stdout.splitlines() if line.startswith("ordermesh: ran")]
    assert summary, out.stdout
    fills = int(re.search(r"fills=(\d+)", summary[0]).group(1))  # type: ignore[union-attr]
    intents = int(re.search(r"intents=(\d+)", summary[0]).group(1))  # type: ignore[union-attr]
    orders = int(re.search(r"orders=(\d+)", summary[0]).group(1))  # type: ignore[union-attr]
    # an order may fill in several parts (the venue walks its book), so fills may outnumber orders
    assert fills > 0 and 0 < orders <= intents
    assert "6 processes started" in out.stderr and "ordermesh: stopped" in out.stderr
    # the embedded server and every child are gone
    assert not url_answers(url)
    for log in (tmp_path / ".ordermesh" / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(), log.name


def test_money_display_never_shows_negative_zero() -> None:
    from decimal import Decimal

    from services.cli.display import money

    assert str(money(Decimal("-0.0001"))) == "0.00"
    assert str(money(Decimal("12.344"))) == "12.34"
    assert str(money(Decimal("-3.5"))) == "-3.50"


def test_brokers_validate_prints_one_clear_line_per_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "brokers.yaml"
    cfg.write_text(
        "brokers:\n"
        "  paper:\n    type: paper\n"
        "  mt5-live:\n    type: paper\n    seed: ${OM_TEST_MT5_SEED}\n"
        "  fix-gw:\n    type: fix\n"
        "  old-paper:\n    type: paper\n    enabled: false\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OM_TEST_MT5_SEED"}
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "--config", str(cfg), "brokers", "validate"],
        capture_output=True, text=True, timeout=30, cwd=ROOT, env=env,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stdout.splitlines() == [
        f"error: brokers.fix-gw: unknown type 'fix' (known types: {KNOWN})",
        "error: brokers.mt5-live: environment variable OM_TEST_MT5_SEED is not set (used at $.brokers.mt5-live.seed)",
        "warning: brokers.old-paper: disabled (no gateway will run for it)",
        "4 broker(s), 1 usable: paper",
    ]
    listing = ordermesh("--config", str(cfg), "brokers")
    assert listing.returncode == 0
    heads = [line for line in listing.stdout.splitlines() if line and not line.startswith(" ")]
    assert heads == ["fix-gw  (fix, invalid)", "mt5-live  (paper, invalid)", "old-paper  (paper, disabled)",
                     "paper  (paper, ok)"]  # fmt: skip
    # one setting per line, as written in a config file: no Python reprs
    assert "  seed                 7" in listing.stdout.splitlines()
    assert "Decimal(" not in listing.stdout and "DepthProfile(" not in listing.stdout


def test_a_networked_command_gives_up_when_nats_is_unreachable(tmp_path: Path) -> None:
    # it used to hang for ever, printing two warnings a second
    cfg = tmp_path / "om.yaml"
    cfg.write_text(f"nats:\n  url: nats://127.0.0.1:{free_port()}\n  connect_timeout_s: 0.3\n")
    out = ordermesh("--config", str(cfg), "positions", timeout=60)
    assert out.returncode == 3, out.stderr
    # one line, saying why, and nothing else (no warnings while it waits)
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("ordermesh: cannot connect to NATS at nats://127.0.0.1:")
    assert "Connection refused" in lines[0] and "gave up after" in lines[0]


async def test_up_refuses_to_start_beside_a_running_system(nats_server: NatsServer, tmp_path: Path) -> None:
    """It used to join the other system silently, its own processes crash-looping on the taken ports."""
    async with System(nats_server.url, tmp_path) as system:
        system.start("sizer")
        await system.wait_ready("sizer")
        env = {"ORDERMESH__NATS__URL": nats_server.url}
        out = await asyncio.to_thread(
            ordermesh, "up", "--no-view", "--duration", "5", "--no-demo", env=env, cwd=tmp_path, timeout=60
        )
    assert out.returncode == 1
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert lines == [
        f"ordermesh: another ordermesh system is running at {nats_server.url} (sizer seen): "
        "`ordermesh up --join` adds these processes to it; another nats.url starts a separate one"
    ]
    assert not (tmp_path / ".ordermesh" / "logs").exists()  # nothing was started


def test_up_refuses_ports_that_are_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "ORDERMESH__NATS__URL": f"nats://127.0.0.1:{free_port()}",
            "ORDERMESH__NATS__STORE_DIR": str(tmp_path / "nats"),
            "ORDERMESH__HTTP__ROUTER": str(port),
            **{f"ORDERMESH__HTTP__{svc}": "0" for svc in ("SIZER", "KEEPER", "DEMO", "GATEWAY_BASE", "CONSOLE")},
        }
        out = ordermesh("up", "--no-view", "--duration", "5", env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"ordermesh: ports in use: router 127.0.0.1:{port} (set http.* to free ports, or 0 for any)"
    )


async def test_the_demo_serves_its_own_metrics(nats_server: NatsServer, tmp_path: Path) -> None:
    """The README says every process serves /metrics; the demo served none."""
    import urllib.request

    port = free_port()
    async with System(nats_server.url, tmp_path, env={"ORDERMESH__HTTP__DEMO": str(port)}) as system:
        await system.start_all()
        demo = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "--nats", nats_server.url, "demo",
            env={**system.env, "ORDERMESH__DEMO__INTERVAL_S": "0.2"}, cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:

            def page() -> str:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                        return str(resp.read().decode())
                except OSError:
                    return ""

            async def filled() -> bool:
                text = await asyncio.to_thread(page)
                return bool(
                    re.search(r'ordermesh_demo_intents_total\{outcome="filled",strategy="demo-trend"\} [1-9]', text)
                )

            await eventually(filled, timeout=30, what="the demo's fills on its /metrics")
            text = await asyncio.to_thread(page)
            # its own families and the connection's, not the services' (fills, the sizer's intents)
            assert "ordermesh_fills_total" not in text and "ordermesh_intents_total" not in text
        finally:
            demo.terminate()
            await demo.wait()


def test_the_live_view_shows_accounts_trading_state_and_processes_by_name() -> None:
    from decimal import Decimal

    from ordermesh.contract.wire import AccountState
    from ordermesh.platform.config import OrderMeshConfig
    from services.up import Flow, _screen

    flow = Flow()
    flow.accounts["paper-1"] = AccountState(
        account="paper-1", balance=Decimal("100012.345"), equity=Decimal("100020.5"), currency="USD",
        unrealized_pnl=Decimal("8.155"), margin_used=Decimal("3616.6666"), free_margin=Decimal("96403.8334"),
    )  # fmt: skip
    flow.trading = {"global_state": "ACTIVE", "accounts": {"paper-1": "HALTED"}, "strategies": {}}
    flow.heartbeats["gateway paper"] = (0.0, True, "http://127.0.0.1:9310", "active")
    flow.heartbeats["router (router-2)"] = (0.0, True, "http://127.0.0.1:9302", "partitions 1,3 of 4")
    text = _screen(OrderMeshConfig(), [], flow, 12.0, True)
    # who holds what (scale-out): the active gateway, each router's partitions
    assert re.search(r"gateway paper .* active", text) and re.search(
        r"router \(router-2\) .* partitions 1,3 of 4", text
    )
    assert "ACCOUNTS   trading: global ACTIVE, paper-1 HALTED" in text
    assert re.search(r"paper-1\s+HALTED\s+100012\.34\s+100020\.50\s+8\.16\s+3616\.67\s+96403\.83  USD", text), text
    assert "  gateway paper " in text and "vm-" not in text
