"""deploy/docker/Dockerfile: lint clean with hadolint, one pinned slim Python base in every stage, a non-root user,
a HEALTHCHECK that works, `ordermesh` as the entrypoint, and a build context (.dockerignore) that carries what the
Dockerfile copies and never a credential. (No Docker engine runs here: the image itself is not built.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import PurePosixPath

import pytest

from tests.deploy.common import DOCKER, DOCKERFILE, ROOT, dockerfile_instructions, image_health_port, tool

BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run([tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_hadolint_is_really_linting() -> None:
    """The same hadolint on a Dockerfile with known faults says so (the check above cannot pass by accident)."""
    bad = "FROM python\nRUN apt-get install curl\nCMD python app.py\n"
    done = subprocess.run([tool("hadolint"), "--no-color", "-"], input=bad, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert {"DL3006", "DL3008", "DL3025"} <= set(re.findall(r"DL\d{4}", done.stdout)), done.stdout


def test_multi_stage_on_one_pinned_slim_python_base() -> None:
    bases = [args.split()[0] for word, args in dockerfile_instructions() if word == "FROM"]
    assert len(bases) >= 2, "a build stage and a runtime stage"
    assert all(BASE.match(b) for b in bases), bases
    assert len(set(bases)) == 1, f"one interpreter everywhere (the venv is copied between stages): {bases}"


def runtime_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_runtime_stage_runs_as_a_non_root_user_with_ordermesh_as_entrypoint() -> None:
    stage = runtime_stage()
    users = [args for word, args in stage if word == "USER"]
    assert users, "the runtime stage sets a user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"a numeric non-root uid (Kubernetes' runAsNonRoot checks it): {uid}"
    (entrypoint,) = [args for word, args in stage if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["ordermesh"]
    assert any(word == "COPY" and args.startswith("--from=build") for word, args in stage), "the venv from the build"


def test_healthcheck_runs_the_shipped_script_on_the_exposed_port() -> None:
    stage = runtime_stage()
    (health,) = [args for word, args in stage if word == "HEALTHCHECK"]
    cmd = json.loads(health.split("CMD", 1)[1])
    script = PurePosixPath(cmd[-1])
    copies = [args.split() for word, args in stage if word == "COPY"]
    assert ["deploy/docker/healthcheck.py", str(script)] in copies, "the health check script is in the image"
    exposed = {int(p) for word, args in stage if word == "EXPOSE" for p in args.split()}
    assert exposed == {image_health_port()}


def test_build_context_carries_what_is_copied_and_no_credentials() -> None:
    """.dockerignore is an allow-list: every COPY source is let in, the credentials' folders never are."""
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*", "everything is excluded first"
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]

    def let_in(path: str) -> bool:
        return any(path == a or path.startswith(a + "/") for a in allowed)

    for word, args in dockerfile_instructions():
        if word != "COPY" or args.startswith("--from"):
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert let_in(source.rstrip("/")), f"COPY {source} is excluded by .dockerignore"
            assert (ROOT / source).exists(), source
    for secret in (".ordermesh", "deploy/docker/auth", "deploy/k8s/auth", ".venv", ".git"):
        assert not let_in(secret), f"{secret} must stay out of the build context"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def healthcheck(port: int) -> int:
    env = {"ORDERMESH_HEALTH_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py")], env=env, capture_output=True, timeout=30
    ).returncode


def test_healthcheck_script_follows_healthz(health_server: HTTPServer) -> None:
    port = health_server.server_address[1]
    _Health.status = 200
    assert healthcheck(port) == 0
    _Health.status = 503  # the process is not connected to NATS
    assert healthcheck(port) == 1
    health_server.shutdown()
    health_server.server_close()
    assert healthcheck(port) == 1  # nothing listens
