"""What the deployment tests share: the files, the compose file's reading (services, mounts, secrets, commands), the
real CLI parser, the credentials as `ordermesh auth generate` writes them, and the tools installed with the dev
extra (hadolint, kubectl)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from ordermesh.platform.auth import OBSERVER, OPERATOR, gateway_identity
from ordermesh.platform.runtime import Service

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKER = DEPLOY / "docker"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
SCHEMAS = ROOT / "tools" / "schemas"

#: Where compose.yaml takes the generated credentials from (relative to deploy/, as its sources are).
COMPOSE_AUTH = PurePosixPath("docker/auth")
#: Where compose mounts a short-syntax secret: /run/secrets/<name>.
SECRETS_DIR = PurePosixPath("/run/secrets")


# ------------------------------------------------------------------------------------------------ tools


def tool(name: str) -> str:
    """An executable installed by the dev extra (beside this interpreter), else on PATH; a missing one fails the
    test (``make test`` installs them: pyproject.toml's dev extra)."""
    for directory in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        path = directory / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `make test` installs it (pyproject.toml's dev extra)")
    return found


def ordermesh_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The ``ordermesh`` command, run as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )
    assert done.returncode == 0, f"ordermesh {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def generate_auth(config: Path, directory: Path) -> set[str]:
    """``ordermesh --config CONFIG auth generate --dir DIRECTORY`` (the README's step); the file names written."""
    ordermesh_cli("--config", str(config), "auth", "generate", "--dir", str(directory))
    return {p.name for p in directory.iterdir()}


# --------------------------------------------------------------------------------------------- the CLI


def parse_cli(argv: list[str]) -> argparse.Namespace:
    """``argv`` through the ordermesh command's own parser; a command it refuses fails the test with its message."""
    from services.cli import COMMANDS, build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`ordermesh {' '.join(argv)}` is refused by the CLI: {err.getvalue().strip()}")
    assert args.command in COMMANDS, argv
    return args


def identities_of(args: argparse.Namespace) -> set[str]:
    """The NATS identities the process these arguments start connects as (so the seeds it needs)."""
    if args.command == "gateway":
        return {gateway_identity(args.broker_id)}
    if args.command == "console":
        return {OBSERVER, OPERATOR}  # reads as the observer, acts as the operator (services/console)
    from services.keeper.service import KeeperService
    from services.router.service import RouterService
    from services.sizer.service import SizerService

    kinds: dict[str, type[Service]] = {"sizer": SizerService, "router": RouterService, "keeper": KeeperService}
    assert args.command in kinds, f"{args.command} is no long-running ordermesh process"
    cls = kinds[args.command]
    # Service.identity is the service's name unless the class says otherwise
    assert cls.identity is Service.identity, f"{cls.__name__} connects as another identity: teach this test which"
    return {cls.name}


def serves_metrics(args: argparse.Namespace) -> bool:
    """Whether the process serves /metrics (the console serves its page and /healthz only)."""
    return args.command != "console"


# --------------------------------------------------------------------------------------- the compose file


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def is_ordermesh(service: dict[str, Any]) -> bool:
    """A service built from deploy/docker/Dockerfile (the one ordermesh image)."""
    build = service.get("build")
    return isinstance(build, dict) and build.get("dockerfile") == "deploy/docker/Dockerfile"


def ordermesh_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if is_ordermesh(svc)}


def nats_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if str(svc.get("image", "")).startswith("nats:")}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


@dataclass(frozen=True)
class Mount:
    """A file or directory a container sees: ``source`` relative to deploy/ (None for a named volume)."""

    source: PurePosixPath | None
    target: PurePosixPath
    read_only: bool
    volume: str | None = None
    secret: str | None = None


def mounts(compose: dict[str, Any], service: dict[str, Any]) -> list[Mount]:
    """The service's bind mounts, named volumes and secrets (a secret is a read-only file at its target)."""
    out = []
    for item in service.get("volumes", []):
        if isinstance(item, str):
            parts = item.split(":")
            source, target, mode = parts[0], parts[1], (parts[2] if len(parts) > 2 else "rw")
            read_only = "ro" in mode.split(",")
        else:
            source, target, read_only = item["source"], item["target"], bool(item.get("read_only"))
        if source.startswith((".", "/")):
            out.append(Mount(PurePosixPath(os.path.normpath(source)), PurePosixPath(target), read_only))
        else:
            out.append(Mount(None, PurePosixPath(target), read_only, volume=source))
    for item in service.get("secrets", []):
        name = item if isinstance(item, str) else item["source"]
        target = name if isinstance(item, str) else item.get("target", name)
        path = PurePosixPath(target) if target.startswith("/") else SECRETS_DIR / target
        source = compose["secrets"][name]["file"]
        out.append(Mount(PurePosixPath(os.path.normpath(source)), path, True, secret=name))
    return out


def materialize(
    compose: dict[str, Any], service: dict[str, Any], root: Path, auth_dir: Path | None = None
) -> dict[PurePosixPath, Path]:
    """Copy what the service's container sees of this repository into ``root`` (``root/<target>``): the
    container's file system as far as its mounts go. Sources under docker/auth come from ``auth_dir`` (the
    generated credentials). Returns each mount target's local path."""
    placed = {}
    for m in mounts(compose, service):
        if m.source is None:
            continue
        if m.source.parts[: len(COMPOSE_AUTH.parts)] == COMPOSE_AUTH.parts:
            assert auth_dir is not None, f"{m.source} is a generated credential"
            src = auth_dir / m.source.relative_to(COMPOSE_AUTH)
        else:
            src = DEPLOY / m.source
        dst = root / m.target.relative_to("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
        placed[m.target] = dst
    return placed


def flag(argv: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` in a command line."""
    return argv[argv.index(name) + 1] if name in argv else None


# ----------------------------------------------------------------------------------------- the Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/docker/Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        word, _, rest = pending.partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def image_health_port() -> int:
    """The port the image's HEALTHCHECK asks (ENV ORDERMESH_HEALTH_PORT of the runtime stage)."""
    env = [args for word, args in dockerfile_instructions() if word == "ENV"]
    found = [int(m.group(1)) for args in env for m in [re.search(r"ORDERMESH_HEALTH_PORT=(\d+)", args)] if m]
    assert len(found) == 1, "the Dockerfile sets ORDERMESH_HEALTH_PORT once"
    return found[0]
