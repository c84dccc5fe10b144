"""Fixtures of the deployment tests: the credentials `ordermesh auth generate` writes for each deployment's
configuration (generated once per test session, as an operator would before `docker compose up`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.common import DOCKER, K8S, generate_auth


@pytest.fixture(scope="session")
def compose_auth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/docker/auth as the README's step writes it."""
    directory = tmp_path_factory.mktemp("compose") / "auth"
    generate_auth(DOCKER / "ordermesh.yaml", directory)
    return directory


@pytest.fixture(scope="session")
def k8s_auth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/k8s/auth as the README's step writes it."""
    directory = tmp_path_factory.mktemp("k8s") / "auth"
    generate_auth(K8S / "ordermesh.yaml", directory)
    return directory
