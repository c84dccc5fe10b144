"""Prometheus beside ordermesh: the scrape configuration of a system's processes, and a Prometheus server process
(the ``prometheus`` binary, e.g. Debian's package) for ``ordermesh up --prometheus`` and the tests.

The rules live in ``deploy/prometheus/alerts.yml``; ``deploy/prometheus/prometheus.yml`` is this module's
configuration for the default ports (written by ``python -m tools.dashboards``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ordermesh.brokers.registry import BrokerRegistry
from ordermesh.platform.config import OrderMeshConfig

#: The scrape job the rules and the docs assume.
JOB = "ordermesh"
DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
RULES = DEPLOY / "alerts.yml"


class PrometheusError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # e.g. sizer, gateway-paper
    address: str  # host:port of /metrics


def targets(config: OrderMeshConfig) -> list[Target]:
    """The /metrics addresses of the processes ``ordermesh up`` starts with ``config`` (its ``http`` ports)."""
    http = config.http
    found = [Target(name, f"{http.host}:{port}") for name, port in (
        ("sizer", http.sizer), ("router", http.router), ("keeper", http.keeper),
    )]  # fmt: skip
    ordered = sorted(config.brokers)
    for bid in BrokerRegistry(config.brokers).usable():
        found.append(Target(f"gateway-{bid}", f"{http.host}:{http.gateway_base + ordered.index(bid)}"))
    return found


def config_for(
    found: Sequence[Target],
    *,
    rule_files: Sequence[str] = (),
    alertmanagers: Sequence[str] = (),
    interval: str = "15s",
    evaluation: str | None = None,
) -> dict[str, Any]:
    """A Prometheus configuration scraping ``found`` in job ``ordermesh``."""
    cfg: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": evaluation or interval},
        "rule_files": list(rule_files),
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [t.address for t in found]}]},
        ],
    }
    if alertmanagers:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    return cfg


def dump(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)


def binary() -> str | None:
    return shutil.which("prometheus")


class PrometheusServer:
    """A ``prometheus`` process on ``127.0.0.1:port`` with its own config and TSDB directory."""

    def __init__(self, directory: Path, cfg: dict[str, Any], *, port: int, log: Path | None = None) -> None:
        self.directory = Path(directory)
        self.cfg = cfg
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log or self.directory / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        return self.directory / "prometheus.yml"

    def argv(self) -> list[str]:
        exe = binary()
        if exe is None:
            raise PrometheusError("prometheus is not installed (Debian: apt-get install prometheus)")
        return [
            exe,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
        ]

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(dump(self.cfg))

    def start(self, timeout: float = 30.0) -> None:
        self.write_config()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.proc.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                self.stop()
                raise PrometheusError(f"prometheus not ready within {timeout} s; see {self.log}")
            time.sleep(0.1)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``; the ``data`` of a successful answer, else PrometheusError with its error."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] in ("vector", "matrix") else [data]
        return result
