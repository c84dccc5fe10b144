"""deploy/compose.yaml: valid against the Compose Specification's schema, and a whole that holds together: commands
the CLI accepts, each service with exactly its own credential, the configuration it mounts, health checks on the
port each process serves, Prometheus scraping every process with the alert rules, Grafana with every dashboard,
the NATS nodes forming one cluster with the generated authorization. (No Docker engine runs here; the processes
themselves run in tests/deploy/test_topology.py.)"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from ordermesh.platform.auth import SERVER_FILE, identities, seed_path
from ordermesh.platform.config import OrderMeshConfig, load_config
from ordermesh.platform.natsserver import find_binary
from tests.deploy.common import (
    COMPOSE_AUTH,
    DEPLOY,
    DOCKER,
    ROOT,
    SCHEMAS,
    environment,
    flag,
    identities_of,
    image_health_port,
    load_compose,
    materialize,
    mounts,
    nats_services,
    ordermesh_services,
    parse_cli,
    serves_metrics,
)

COMPOSE = load_compose()
SERVICES = COMPOSE["services"]
ORDERMESH = ordermesh_services(COMPOSE)
NATS = nats_services(COMPOSE)
CONFIG = DOCKER / "ordermesh.yaml"


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification() -> None:
    assert schema_errors(COMPOSE) == []


def test_the_schema_check_catches_mistakes() -> None:
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["sizer-1"]["comand"] = ["sizer"]  # a typo
    broken["services"]["router-1"]["restart"] = 3  # a wrong type
    broken["services"]["keeper-1"]["depends_on"] = {"nats-1": {"condition": "whenever"}}  # no such condition
    errors = schema_errors(broken)
    assert len(errors) == 3, errors


def config_of(service: dict[str, Any]) -> OrderMeshConfig:
    """The configuration the service's processes load: the mounted file with the service's environment."""
    env = environment(service)
    (mounted,) = [m for m in mounts(COMPOSE, service) if m.source == PurePosixPath("docker/ordermesh.yaml")]
    assert env["ORDERMESH_CONFIG"] == str(mounted.target) and mounted.read_only
    return load_config(CONFIG, env=env)


def test_every_ordermesh_service_runs_a_command_the_cli_accepts() -> None:
    kinds: dict[str, list[str]] = {}
    instances = []
    for name, svc in ORDERMESH.items():
        args = parse_cli(svc["command"])
        kind = f"{args.command} {args.broker_id}" if args.command == "gateway" else args.command
        kinds.setdefault(kind, []).append(name)
        instances.append(args.instance)
    assert {k: len(v) for k, v in kinds.items()} == {
        "sizer": 2, "router": 2, "gateway paper": 2, "keeper": 2, "console": 1,
    }, kinds  # fmt: skip
    assert None not in instances and len(set(instances)) == len(instances), "each process its own --instance"


def test_each_process_mounts_exactly_the_seeds_of_its_identity(compose_auth: Path) -> None:
    generated = {p.name for p in compose_auth.iterdir()}
    for name, svc in ORDERMESH.items():
        config = config_of(svc)
        assert config.nats.auth.enabled
        wanted = {PurePosixPath(seed_path(config.nats.auth.dir, i)) for i in identities_of(parse_cli(svc["command"]))}
        seeds = [m for m in mounts(COMPOSE, svc) if m.target.suffix == ".nk"]
        assert {m.target for m in seeds} == wanted, f"{name} must get its own seed(s) and no other"
        for m in seeds:
            assert m.read_only and m.source is not None and m.secret is not None
            assert m.source.parent == COMPOSE_AUTH and m.source.name in generated, m.source
    # every seed the file names is one `ordermesh auth generate` writes, for this configuration and the default one
    named = {PurePosixPath(s["file"]) for s in COMPOSE["secrets"].values()}
    assert {p.name for p in named} <= generated
    assert {os.path.normpath(p.parent) for p in named} == {str(COMPOSE_AUTH)}
    ours = {i.name for i in identities(load_config(CONFIG, env={}))}
    assert ours == {i.name for i in identities(OrderMeshConfig())}
    assert {p.name for p in named} <= {seed_path("", i).name for i in ours}


def test_configuration_replicates_on_the_three_nodes_and_serves_http_to_the_network() -> None:
    client_port = int(re.search(r"^listen:\s*\S+:(\d+)", (DOCKER / "nats.conf").read_text(), re.M).group(1))
    for svc in ORDERMESH.values():
        config = config_of(svc)
        assert config.nats.replicas == 3
        assert not config.nats.embedded
        assert config.http.host == "0.0.0.0"
        urls = config.nats.url.split(",")
        assert sorted(urls) == sorted(f"nats://{n}:{client_port}" for n in NATS)
        assert config.log.format == "json"


def test_health_checks_ask_the_port_each_process_serves() -> None:
    port = image_health_port()
    for name, svc in ORDERMESH.items():
        assert flag(svc["command"], "--http-port") == str(port), name
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD" and test[-1] == "/usr/local/lib/ordermesh/healthcheck.py", name
        assert "ORDERMESH_HEALTH_PORT" not in environment(svc)  # the image's default: the port above
    console = [s for s in ORDERMESH.values() if parse_cli(s["command"]).command == "console"]
    assert [p.rsplit(":", 1)[1] for s in console for p in s["ports"]] == [str(port)]


def test_restart_policies_health_checks_and_start_order() -> None:
    for name, svc in SERVICES.items():
        assert svc.get("restart") in ("always", "unless-stopped"), name
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name, svc in ORDERMESH.items():
        assert svc["depends_on"] == {n: {"condition": "service_healthy"} for n in NATS}, name


def test_one_image_tagged_with_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    images = {svc["image"] for svc in ORDERMESH.values()}
    assert images == {f"${{ORDERMESH_IMAGE:-ordermesh:{version}}}"}, images
    for svc in SERVICES.values():
        if not svc.get("build"):
            assert re.search(r":v?\d+\.\d+\.\d+", svc["image"]), f"{svc['image']}: pin third-party images"


# ------------------------------------------------------------------------------------------------- NATS


def test_nats_nodes_form_one_cluster_with_the_generated_authorization(compose_auth: Path, tmp_path: Path) -> None:
    conf = (DOCKER / "nats.conf").read_text()
    routes = re.findall(r"nats-route://([\w-]+):(\d+)", conf)
    cluster_port = re.search(r"cluster\s*\{[^}]*listen:\s*\S+:(\d+)", conf, re.S).group(1)
    assert sorted(routes) == sorted((n, cluster_port) for n in NATS), "routes name every node"
    assert len(NATS) == 3 and len({s["image"] for s in NATS.values()}) == 1
    volumes = []
    for name, svc in NATS.items():
        cmd = svc["command"]
        assert flag(cmd, "--server_name") == name
        (config_mount,) = [m for m in mounts(COMPOSE, svc) if m.source == PurePosixPath("docker/nats.conf")]
        assert flag(cmd, "--config") == str(config_mount.target) and config_mount.read_only
        store = PurePosixPath(flag(cmd, "--store_dir"))
        (data,) = [m for m in mounts(COMPOSE, svc) if m.target == store]
        assert data.volume in COMPOSE["volumes"]
        volumes.append(data.volume)
        # the include resolves, beside the config, to the generated block mounted read-only
        (include,) = re.findall(r"^include\s+(\S+)", conf, re.M)
        included = PurePosixPath(os.path.normpath(config_mount.target.parent / include))
        auth = [m for m in mounts(COMPOSE, svc) if m.target == included]
        assert len(auth) == 1 and auth[0].source == COMPOSE_AUTH / SERVER_FILE and auth[0].read_only
    assert len(set(volumes)) == 3, "each node its own store"
    # the real server accepts the node's configuration as its container sees it
    root = tmp_path / "nats-1"
    placed = materialize(COMPOSE, NATS["nats-1"], root, compose_auth)
    config_file = placed[PurePosixPath(flag(NATS["nats-1"]["command"], "--config"))]
    done = subprocess.run([find_binary(), "-c", str(config_file), "-t"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------------------- observability


def test_prometheus_scrapes_every_process_and_loads_every_rule_file() -> None:
    prom = SERVICES["prometheus"]
    config_target = PurePosixPath(next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file=")))
    by_target = {m.target: m for m in mounts(COMPOSE, prom)}
    config = yaml.safe_load((DEPLOY / by_target[config_target].source).read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    port = image_health_port()
    want = {f"{n}:{port}" for n, s in ORDERMESH.items() if serves_metrics(parse_cli(s["command"]))}
    assert want <= targets and not {t for t in targets - want if not t.startswith("localhost:")}
    # every rule file of deploy/prometheus is mounted where rule_files finds it
    rule_files = {PurePosixPath(os.path.normpath(config_target.parent / r)) for r in config["rule_files"]}
    rules = [p for p in (DEPLOY / "prometheus").glob("*.yml") if "groups" in (yaml.safe_load(p.read_text()) or {})]
    assert rules, "deploy/prometheus has rule files"
    for path in rules:
        source = PurePosixPath(path.relative_to(DEPLOY).as_posix())
        mounted = [m.target for m in by_target.values() if m.source == source]
        assert mounted and set(mounted) <= rule_files, f"{source} is not loaded"
    (am,) = [t for a in config["alerting"]["alertmanagers"] for sc in a["static_configs"] for t in sc["targets"]]
    assert am.split(":")[0] in SERVICES and am.endswith(":9093")


def test_prometheus_configuration_as_the_container_sees_it(tmp_path: Path) -> None:
    """``promtool check config`` (which also checks the rule files it names) on the mounted files."""
    exe = shutil.which("promtool")
    if exe is None:
        if os.environ.get("ORDERMESH_REQUIRE_PROMETHEUS"):
            pytest.fail("promtool is not installed and ORDERMESH_REQUIRE_PROMETHEUS is set")
        pytest.skip("promtool is not installed (make test installs the Debian prometheus package)")
    prom = SERVICES["prometheus"]
    placed = materialize(COMPOSE, prom, tmp_path)
    config_target = PurePosixPath(next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file=")))
    done = subprocess.run(
        [exe, "check", "config", str(placed[config_target])], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "rules found" in done.stdout, done.stdout


def test_grafana_provisions_every_dashboard_from_prometheus(tmp_path: Path) -> None:
    grafana = SERVICES["grafana"]
    placed = materialize(COMPOSE, grafana, tmp_path)
    providers = yaml.safe_load((tmp_path / "etc/grafana/provisioning/dashboards/ordermesh.yaml").read_text())
    (path,) = [PurePosixPath(p["options"]["path"]) for p in providers["providers"]]
    assert path in placed, "the provider reads a mounted folder"
    shipped = sorted(p.name for p in (DEPLOY / "grafana").glob("*.json"))
    assert shipped and sorted(p.name for p in placed[path].glob("*.json")) == shipped
    sources = yaml.safe_load((tmp_path / "etc/grafana/provisioning/datasources/ordermesh.yaml").read_text())
    (ds,) = sources["datasources"]
    assert ds["type"] == "prometheus" and ds["isDefault"] and ds["url"] == "http://prometheus:9090"
    for dashboard in placed[path].glob("*.json"):
        variables = json.loads(dashboard.read_text())["templating"]["list"]
        assert {"type": "datasource", "query": "prometheus"}.items() <= next(
            v for v in variables if v["type"] == "datasource"
        ).items(), dashboard.name  # they take the default Prometheus data source provisioned above
    # the Grafana the dashboards are generated for (pyproject pins grafana-foundation-sdk <epoch>!<Grafana version>)
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    (sdk,) = [d for d in dev if d.startswith("grafana-foundation-sdk")]
    target = re.search(r"!(\d+\.\d+)\.", sdk).group(1)
    assert grafana["image"].startswith(f"grafana/grafana:{target}."), (grafana["image"], sdk)


def test_alertmanager_routes_as_the_example_does_to_a_webhook_on_the_host() -> None:
    am = SERVICES["alertmanager"]
    config_target = PurePosixPath(next(a.split("=", 1)[1] for a in am["command"] if a.startswith("--config.file=")))
    (mounted,) = [m for m in mounts(COMPOSE, am) if m.target == config_target]
    ours = yaml.safe_load((DEPLOY / mounted.source).read_text())
    example = yaml.safe_load((DEPLOY / "prometheus" / "alertmanager.yml").read_text())
    (hook,) = [w for r in ours["receivers"] for w in r["webhook_configs"]]
    (example_hook,) = [w for r in example["receivers"] for w in r["webhook_configs"]]
    assert hook["url"] == example_hook["url"].replace("127.0.0.1", "host.docker.internal")
    example_hook["url"] = hook["url"]
    assert ours == example
    assert "host.docker.internal:host-gateway" in am["extra_hosts"]
