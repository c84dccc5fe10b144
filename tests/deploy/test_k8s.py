"""deploy/k8s: the kustomization rendered by `kubectl kustomize` (with the credentials `ordermesh auth generate`
writes) and every object validated, strictly, against the Kubernetes schemas that `kubernetes-validate` bundles; the
PodMonitor against the Prometheus operator's CRD schema (vendored: tools/schemas); the NATS chart's values against
the chart's own defaults and the Kubernetes definitions of what they patch in. Then the whole must hold together:
commands the CLI accepts, each workload with exactly its own seed, probes on /healthz at the port the process
serves, resources, disruption budgets, a restricted security context. (No cluster and no helm here: the chart
itself is not rendered.)"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from functools import cache
from importlib.resources import files
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import msgspec
import pytest
import yaml
from kubernetes_validate.utils import latest_version
from referencing import Registry, Resource

from ordermesh.platform.auth import SERVER_FILE, seed_path
from ordermesh.platform.config import load_config
from tests.deploy.common import (
    DOCKER,
    K8S,
    SCHEMAS,
    dockerfile_instructions,
    flag,
    identities_of,
    image_health_port,
    load_compose,
    nats_services,
    parse_cli,
    serves_metrics,
    tool,
)

#: The oldest Kubernetes the manifests are checked against, and the newest kubernetes-validate knows.
VERSIONS = ("1.30", latest_version())
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
NAMESPACE = KUSTOMIZATION["namespace"]
#: The NATS chart's release name in the README's `helm install` (its Service and Secrets' names follow it).
NATS_RELEASE = "nats"


@pytest.fixture(scope="module")
def rendered(k8s_auth: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/k8s`` with deploy/k8s/auth as `ordermesh auth generate` writes it."""
    work = tmp_path_factory.mktemp("kustomize") / "k8s"
    shutil.copytree(K8S, work, ignore=shutil.ignore_patterns("auth"))
    shutil.copytree(k8s_auth, work / "auth")
    done = subprocess.run([tool("kubectl"), "kustomize", str(work)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert docs
    return docs


def validation_error(doc: dict[str, Any], version: str) -> str | None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{'.'.join(map(str, exc.path))}: {exc.message}"
    except kubernetes_validate.SchemaNotFoundError as exc:
        return exc.message
    return None


def test_every_rendered_object_is_valid_kubernetes(rendered: list[dict[str, Any]]) -> None:
    problems = [
        f"{d['kind']}/{d['metadata']['name']} ({v}): {err}"
        for d in rendered
        for v in VERSIONS
        if (err := validation_error(d, v)) is not None
    ]
    assert problems == []
    kinds = sorted({d["kind"] for d in rendered})
    assert kinds == [
        "ConfigMap", "Deployment", "Namespace", "PodDisruptionBudget", "Secret", "Service", "StatefulSet",
    ]  # fmt: skip
    assert {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"} == {NAMESPACE}


def test_the_strict_validation_catches_mistakes(rendered: list[dict[str, Any]]) -> None:
    deployment = copy.deepcopy(next(d for d in rendered if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}  # a misspelt field
    assert validation_error(deployment, VERSIONS[-1]) is not None
    deployment = copy.deepcopy(next(d for d in rendered if d["kind"] == "Deployment"))
    deployment["spec"]["replicas"] = "two"
    assert validation_error(deployment, VERSIONS[-1]) is not None


def test_every_manifest_file_is_used() -> None:
    """Nothing in deploy/k8s is forgotten by the kustomization, except what deploy/README.md applies otherwise."""
    listed = set(KUSTOMIZATION["resources"])
    listed |= {f for g in KUSTOMIZATION["configMapGenerator"] for f in g["files"]}
    listed |= {"kustomization.yaml", "nats-values.yaml", "podmonitor.yaml"}
    assert {p.name for p in K8S.glob("*.yaml")} == listed


# --------------------------------------------------------------------------------------------- workloads


def workloads(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in rendered if d["kind"] in ("Deployment", "StatefulSet")]


def generated_secret(rendered: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [d for d in rendered if d["kind"] == "Secret" and d["metadata"]["name"] == name]
    return found


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def expand(args: list[str], env: dict[str, Any]) -> list[str]:
    """Kubernetes' $(VAR) expansion of container arguments, with a pod's name for the downward API's."""
    values = {k: ("ordermesh-x-0" if isinstance(v, dict) else v) for k, v in env.items()}
    return [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], a) for a in args]


def test_each_workload_runs_a_command_the_cli_accepts(rendered: list[dict[str, Any]]) -> None:
    kinds = {}
    for w in workloads(rendered):
        (c,) = w["spec"]["template"]["spec"]["containers"]
        env = env_of(c)
        assert env["POD_NAME"]["fieldRef"]["fieldPath"] == "metadata.name"  # the downward API: the pod's name
        args = parse_cli(expand(c["args"], env))
        assert args.instance == "ordermesh-x-0", "each replica's instance is its pod's name"
        kind = f"{args.command} {args.broker_id}" if args.command == "gateway" else args.command
        kinds[kind] = (w["kind"], w["spec"]["replicas"])
    assert kinds == {
        "sizer": ("Deployment", 2),
        "router": ("Deployment", 2),
        "gateway paper": ("Deployment", 2),
        "keeper": ("StatefulSet", 2),  # stable pod names: each replica resumes from its own snapshot
        "console": ("Deployment", 1),
    }


def test_each_workload_mounts_the_configuration_and_exactly_its_own_seeds(rendered: list[dict[str, Any]]) -> None:
    (configmap,) = [d for d in rendered if d["kind"] == "ConfigMap"]
    config = load_config(K8S / "ordermesh.yaml", env={})
    for w in workloads(rendered):
        pod = w["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        env = env_of(c)
        args = parse_cli(expand(c["args"], env))
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounted = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}
        assert all(m.get("readOnly") for m in c["volumeMounts"] if m["mountPath"].startswith("/etc/"))
        # the configuration file the process loads
        config_dir = str(PurePosixPath(env["ORDERMESH_CONFIG"]).parent)
        assert mounted[config_dir]["configMap"]["name"] == configmap["metadata"]["name"]
        assert PurePosixPath(env["ORDERMESH_CONFIG"]).name in configmap["data"]
        # its seeds, and only those, where the configuration says the seeds are
        seeds = mounted[config.nats.auth.dir]
        secret_names = (
            [seeds["secret"]["secretName"]]
            if "secret" in seeds
            else [s["secret"]["name"] for s in seeds["projected"]["sources"]]
        )
        keys = {k for name in secret_names for k in generated_secret(rendered, name)["data"]}
        wanted = {seed_path("", i).name for i in identities_of(args)}
        assert keys == wanted, f"{w['metadata']['name']} must get its own seed(s) and no other"
        mode = seeds.get("secret", seeds.get("projected", {})).get("defaultMode")
        assert mode == 0o440, "readable by the pod's group (fsGroup) only"


def test_probes_and_metrics_port_are_the_port_the_process_serves(rendered: list[dict[str, Any]]) -> None:
    port = image_health_port()
    for w in workloads(rendered):
        (c,) = w["spec"]["template"]["spec"]["containers"]
        args = expand(c["args"], env_of(c))
        assert flag(args, "--http-port") == str(port)
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": port}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, (w["metadata"]["name"], probe)
        # the startup probe allows the connect deadline (connect_timeout_s x 6 = 30 s by default)
        assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 30
        assert set(c["resources"]["requests"]) == {"cpu", "memory"} and "memory" in c["resources"]["limits"]


def test_pods_run_restricted(rendered: list[dict[str, Any]]) -> None:
    """Non-root as the image's user, no privilege escalation, no capabilities, read-only root, default seccomp."""
    (user,) = [a for w, a in dockerfile_instructions() if w == "USER"]
    uid = int(user.split(":")[0])
    for w in workloads(rendered):
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == uid
        assert pod["securityContext"]["fsGroup"] == uid
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        (c,) = pod["containers"]
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
        config = load_config(K8S / "ordermesh.yaml", env={})
        assert "/tmp" in writable  # MPLCONFIGDIR and any temporary file
        if parse_cli(expand(c["args"], env_of(c))).command == "console":
            assert str(PurePosixPath(config.console.token_file).parent) in writable


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_disruption_budgets_keep_one_of_each_replicated_process(rendered: list[dict[str, Any]]) -> None:
    pdbs = [d for d in rendered if d["kind"] == "PodDisruptionBudget"]
    for w in workloads(rendered):
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert matches(w["spec"]["selector"], labels)
        covering = [p for p in pdbs if matches(p["spec"]["selector"], labels)]
        if w["spec"]["replicas"] >= 2:
            assert len(covering) == 1 and covering[0]["spec"]["minAvailable"] == 1, w["metadata"]["name"]
            spread = w["spec"]["template"]["spec"]["topologySpreadConstraints"]
            assert spread[0]["topologyKey"] == "kubernetes.io/hostname"
        else:
            assert covering == [], "a budget on one replica blocks every drain"
    assert len(pdbs) == sum(1 for w in workloads(rendered) if w["spec"]["replicas"] >= 2)
    gateway = next(w for w in workloads(rendered) if w["metadata"]["name"].startswith("ordermesh-gateway"))
    # the new pod comes up as the standby before an old one stops
    assert gateway["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_processes_reach_the_nats_charts_service() -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    chart = yaml.safe_load((SCHEMAS / "nats-chart-values.yaml").read_text())
    port = values.get("config", {}).get("nats", {}).get("port", chart["config"]["nats"]["port"])
    for path in ("sizer.yaml", "router.yaml", "gateway-paper.yaml", "keeper.yaml", "console.yaml"):
        for doc in yaml.safe_load_all((K8S / path).read_text()):
            if doc["kind"] in ("Deployment", "StatefulSet"):
                (c,) = doc["spec"]["template"]["spec"]["containers"]
                assert env_of(c)["ORDERMESH__NATS__URL"] == f"nats://{NATS_RELEASE}:{port}"


def test_configuration_is_the_compose_one_but_for_where_the_seeds_are() -> None:
    k8s = load_config(K8S / "ordermesh.yaml", env={})
    compose = load_config(DOCKER / "ordermesh.yaml", env={})
    assert k8s.nats.auth.dir != compose.nats.auth.dir
    same_dir = msgspec.structs.replace(k8s.nats.auth, dir=compose.nats.auth.dir)
    assert msgspec.structs.replace(k8s, nats=msgspec.structs.replace(k8s.nats, auth=same_dir)) == compose


# -------------------------------------------------------------------------------------------- PodMonitor


@cache
def crd_schema() -> dict[str, Any]:
    """The PodMonitor CRD's openAPIV3Schema, strict: an object that lists its properties takes no others (as
    kubernetes-validate's strict schemas do), so a misspelt field is an error rather than pruned."""
    crd = yaml.safe_load((SCHEMAS / "monitoring.coreos.com_podmonitors.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])

    def strict(node: Any) -> None:
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(schema)
    return schema


def podmonitor_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(crd_schema())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_podmonitor_follows_the_operators_crd_and_scrapes_every_process(rendered: list[dict[str, Any]]) -> None:
    monitor = yaml.safe_load((K8S / "podmonitor.yaml").read_text())
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["kind"] == "PodMonitor"
    assert podmonitor_errors(monitor) == []
    broken = copy.deepcopy(monitor)
    broken["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    assert podmonitor_errors(broken), "the strict CRD schema catches a misspelt field"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    for w in workloads(rendered):
        (c,) = w["spec"]["template"]["spec"]["containers"]
        scraped = matches(monitor["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        assert scraped == serves_metrics(parse_cli(expand(c["args"], env_of(c)))), w["metadata"]["name"]
        if scraped:
            assert endpoint["port"] in {p["name"] for p in c["ports"]}


# ------------------------------------------------------------------------------------- NATS chart values


@cache
def definition_validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator for one Kubernetes definition (e.g. ``volumemount-v1``) of the newest bundled version."""
    base = files("kubernetes_validate") / "kubernetes-json-schema" / f"v{latest_version()}-local-strict"
    schema = json.loads((base / f"{name}.json").read_text())
    definitions = json.loads((base / "_definitions.json").read_text())
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def assert_valid(name: str, value: Any) -> None:
    validator = definition_validator(name)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(value)]
    assert errors == [], (name, value)


def unknown_keys(ours: Any, chart: Any, path: str = "") -> list[str]:
    """Keys of ``ours`` the chart's defaults do not have, below free-form maps (``merge``, ``env``, ``{}``)."""
    if not isinstance(ours, dict) or not isinstance(chart, dict) or not chart:
        return []
    out = []
    for key, value in ours.items():
        if key not in chart:
            out.append(f"{path}{key}")
        else:
            out += unknown_keys(value, chart[key], f"{path}{key}.")
    return out


def test_nats_values_are_the_charts_keys() -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    chart = yaml.safe_load((SCHEMAS / "nats-chart-values.yaml").read_text())
    assert unknown_keys(values, chart) == []
    assert unknown_keys({"config": {"cluster": {"replica": 3}}}, chart) == ["config.cluster.replica"]


def test_nats_values_make_a_three_node_jetstream_cluster_on_volumes_spread_over_hosts() -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    cluster, jetstream = values["config"]["cluster"], values["config"]["jetstream"]
    assert cluster["enabled"] and cluster["replicas"] == 3
    assert jetstream["enabled"] and jetstream["fileStore"]["enabled"] and jetstream["fileStore"]["pvc"]["enabled"]
    assert values["config"]["monitor"]["enabled"], "the chart's probes ask /healthz on the monitor port"
    spread = values["podTemplate"]["topologySpreadConstraints"]
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    for key, constraint in spread.items():
        # the chart adds the topology key and a selector of its pods
        assert_valid(
            "topologyspreadconstraint-v1",
            {**constraint, "topologyKey": key, "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "nats"}}},
        )
    container = values["container"]
    assert_valid("resourcerequirements-v1", container["resources"])
    limit = container["resources"]["limits"]["memory"]
    assert mebibytes(container["env"]["GOMEMLIMIT"]) < mebibytes(limit), "GOMEMLIMIT below the memory limit"
    # the same server as compose.yaml's
    compose_image = {s["image"] for s in nats_services(load_compose()).values()}
    assert compose_image == {f"nats:{container['image']['tag']}"}


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(MiB|GiB|Mi|Gi)", quantity).groups()
    return float(number) * (1024 if unit.startswith("G") else 1)


def test_nats_values_include_the_generated_authorization_from_its_secret(rendered: list[dict[str, Any]]) -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    (mount_op,) = [p for p in values["container"]["patch"] if p["path"] == "/volumeMounts/-"]
    (volume_op,) = [p for p in values["podTemplate"]["patch"] if p["path"] == "/spec/volumes/-"]
    assert mount_op["op"] == volume_op["op"] == "add"
    mount, volume = mount_op["value"], volume_op["value"]
    assert_valid("volumemount-v1", mount)
    assert_valid("volume-v1", volume)
    assert mount["name"] == volume["name"] and mount["readOnly"]
    # the chart writes its config to /etc/nats-config/nats.conf; includes are relative to it
    include = values["config"]["merge"]["$include"]
    assert os.path.normpath(f"/etc/nats-config/{include}") == f"{mount['mountPath']}/{SERVER_FILE}"
    # the Secret is the kustomization's, under the name the values use (no hash suffix), holding the block
    secret = generated_secret(rendered, volume["secret"]["secretName"])
    assert list(secret["data"]) == [SERVER_FILE]
    # nats-box's admin seed likewise
    nkey = values["natsBox"]["contexts"]["default"]["nkey"]
    assert list(generated_secret(rendered, nkey["secretName"])["data"]) == [nkey["key"]]
    assert nkey["key"] == seed_path("", "admin").name
