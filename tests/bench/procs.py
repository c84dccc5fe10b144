"""The benchmark's child processes: start, watch, stop (SIGTERM, then SIGKILL), readiness by heartbeat."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg

from tests.bench.scenarios import BenchError

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

#: ordermesh's processes in a benchmark (``make bench`` and ``make soak``): name -> ``services.cli`` command
SERVICES: dict[str, tuple[str, ...]] = {
    "keeper": ("keeper",),
    "router": ("router",),
    "gateway": ("gateway", "paper"),
    "sizer": ("sizer",),
}


def child_env() -> dict[str, str]:
    """The caller's environment without its ordermesh settings (defaults only), logging warnings as JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERMESH")}
    env.update(ORDERMESH__LOG__FORMAT="json", ORDERMESH__LOG__LEVEL="warning")
    return env


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Procs:
    """Child processes by name; each one's stdout and stderr go to ``log_dir/<name>.log``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.watched: dict[str, int] = {}  # other processes of the system under test (the nats-server)

    def start(self, name: str, *module_args: str) -> None:
        """Start ``python -m <module_args...>`` from the project root."""
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", *module_args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(),
                cwd=ROOT,
                start_new_session=True,  # a Ctrl-C reaches only us; we stop the children ourselves
            )

    def start_ordermesh(self, url: str) -> None:
        """Start every process of :data:`SERVICES` against the NATS server at ``url``."""
        for name, command in SERVICES.items():
            self.start(name, "services.cli", "--nats", url, *command, "--http-port", "0")

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items() if p.poll() is None}

    def cpu(self) -> float:
        """CPU seconds used so far by the children and the watched processes together."""
        return sum(cpu_seconds(pid) for pid in [*self.pids().values(), *self.watched.values()])

    def dead(self) -> list[str]:
        return [f"{name} (exit code {p.returncode})" for name, p in self.procs.items() if p.poll() is not None]

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every child, wait up to ``timeout`` for all of them, then SIGKILL the rest."""
        procs = list(self.procs.values())
        self.procs.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def tail(self, lines: int = 15) -> str:
        """The last lines of every child's log (of the nats-server's: only its warnings and errors)."""
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()
            if path.name.startswith("nats-server"):
                text = [line for line in text if "[WRN]" in line or "[ERR]" in line or "[FTL]" in line]
            text = text[-lines:]
            if text:
                out.append(f"--- {path.name} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(out)

    async def guard(self, aw: Awaitable[T], what: str, timeout: float | None = None) -> T:
        """Await ``aw``, failing fast if a child process dies meanwhile (checked every second)."""
        task = asyncio.ensure_future(aw)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                done, _ = await asyncio.wait([task], timeout=max(0.0, left))
                if done:
                    return task.result()
                if dead := self.dead():
                    raise BenchError(f"{what}: process exited: {', '.join(dead)}")
                if deadline is not None and time.monotonic() >= deadline:
                    raise BenchError(f"{what}: not done within {timeout}s")
        finally:
            task.cancel()


async def heartbeats(nc: Client, subject: str, names: Iterable[str]) -> None:
    """Return once a message has arrived on ``subject`` (``<prefix>.health.>``) from each of ``names``
    (the third subject token: ``om.health.<service>.<instance>``)."""
    waiting = set(names)
    all_seen = asyncio.Event()

    async def on(msg: Msg) -> None:
        waiting.discard(msg.subject.split(".")[2])
        if not waiting:
            all_seen.set()

    sub = await nc.subscribe(subject, cb=on)
    try:
        await all_seen.wait()
    finally:
        await sub.unsubscribe()
