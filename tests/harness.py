"""Run ordermesh services as real OS processes against a test nats-server."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ordermesh.contract.codec import HEARTBEAT_CODEC, BadMessage
from ordermesh.platform.bus import Bus
from ordermesh.platform.config import NatsSettings

ROOT = Path(__file__).resolve().parent.parent

SERVICES = {
    "keeper": ["keeper"],
    "router": ["router"],
    "gateway": ["gateway", "paper"],
    "sizer": ["sizer"],
}


class System:
    """The ordermesh processes of one test. Each writes its log to ``log_dir/<name>.log``."""

    def __init__(
        self,
        nats_url: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        config: Path | None = None,
        settings: NatsSettings | None = None,
    ) -> None:
        self.nats_url = nats_url
        self.config = config
        self.log_dir = log_dir
        self.env = {
            **os.environ,
            "ORDERMESH__LOG__FORMAT": "json",
            "ORDERMESH__LOG__LEVEL": "info",
            **(env or {}),
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.metrics_urls: dict[str, str] = {}
        # ``settings``: e.g. a server with authorization (the harness watches heartbeats as an observer)
        self._bus = Bus(settings or NatsSettings(url=nats_url), "test-harness", identity="observer")
        self._beats: dict[str, asyncio.Event] = {}
        #: the latest heartbeat of each (service, instance): who is active, which partitions a router holds
        self.heartbeats: dict[tuple[str, str], Any] = {}

    async def __aenter__(self) -> System:
        await self._bus.connect()
        await self._bus.subscribe(f"{self._bus.subjects.prefix}.health.>", self._on_health)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop_all()
        await self._bus.close()

    async def _on_health(self, msg: Any) -> None:
        try:
            hb = HEARTBEAT_CODEC.decode(msg.data)
        except BadMessage:
            return
        self.heartbeats[(hb.service, hb.instance)] = hb
        if hb.metrics_url:
            self.metrics_urls[hb.service] = hb.metrics_url
        self._beats.setdefault(hb.service, asyncio.Event()).set()

    def start(self, name: str, *extra: str, service: str | None = None) -> None:
        """Start a process; ``name`` is its key here, ``service`` its kind when they differ."""
        argv = [sys.executable, "-m", "services.cli", "--nats", self.nats_url]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        argv += SERVICES[service or name]
        argv += ["--http-port", "0", *extra]
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        try:
            self.procs[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, start_new_session=True
            )
        finally:
            log.close()
        self._beats[service or name] = asyncio.Event()

    async def start_all(self, timeout: float = 30.0) -> None:
        for name in SERVICES:
            self.start(name)
        await self.wait_ready(*SERVICES, timeout=timeout)

    async def wait_ready(self, *services: str, timeout: float = 30.0) -> None:
        """Wait for a heartbeat from each service (they beat once their consumers are registered)."""
        try:
            async with asyncio.timeout(timeout):
                for svc in services:
                    await self._beats.setdefault(svc, asyncio.Event()).wait()
        except TimeoutError:
            raise AssertionError(f"services not ready within {timeout}s:\n{self.logs_tail()}") from None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        return proc.wait(15)

    def alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def metric(self, of: str, name: str, **labels: str) -> float:
        """Current value of one sample on a service's /metrics (0 when absent)."""
        url = self.metrics_urls[of] + "/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def logs_tail(self, lines: int = 15) -> str:
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition") -> None:
    """Re-check ``check`` until true (each check is a round trip, not a sleep on a guess)."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what} did not hold within {timeout}s") from None
