"""deploy/compose.yaml, deploy/k8s/ and deploy/alerts.yaml: they parse, and they fit together."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.edge.config import load_settings
from proxy.edge.rules_loader import read_rules
from tests.deploy.dockerfile import parse

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
CACHE = "/var/cache/hostfit"
RULES = "/etc/hostfit/rules"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def image_uid() -> int:
    user = parse((ROOT / "Dockerfile").read_text())[-1].user()
    assert user is not None
    return int(user.split(":")[0])


# --- compose -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load(DEPLOY / "compose.yaml")
    assert isinstance(data, dict)
    return data


def hostfit_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return {name: s for name, s in services.items() if name.startswith("hostfit")}


def test_compose_runs_three_replicas_redis_and_nginx(compose: dict[str, Any]) -> None:
    replicas = hostfit_services(compose)
    count = sum(int(s.get("deploy", {}).get("replicas", 1)) for s in replicas.values())
    assert count == 3
    assert {"redis", "nginx"} <= set(compose["services"])


def test_compose_replicas_share_redis_and_one_cache_volume(compose: dict[str, Any]) -> None:
    volumes = compose["volumes"]
    for name, service in hostfit_services(compose).items():
        env = service["environment"]
        assert env["HOSTFIT_REDIS"].startswith("redis://redis:"), name
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"] if ":" in v}
        assert mounts[CACHE] in volumes, name  # a named volume, the same for all
        assert (DEPLOY / mounts[RULES]).is_dir(), name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["read_only"] is True
        assert "/tmp" in service["volumes"]  # writable, on disk
    caches = {tuple(s["volumes"]) for s in hostfit_services(compose).values()}
    assert len(caches) == 1


def test_compose_builds_the_image_from_the_dockerfile(compose: dict[str, Any]) -> None:
    for service in hostfit_services(compose).values():
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"


def test_compose_healthchecks(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert "healthcheck" in service, name
    for service in hostfit_services(compose).values():
        test = " ".join(service["healthcheck"]["test"])
        assert "/healthz" in test and "HOSTFIT_PORT" in test and "/readyz" not in test


def test_compose_nginx_balances_the_replicas(compose: dict[str, Any]) -> None:
    nginx = compose["services"]["nginx"]
    source, target = nginx["volumes"][0].split(":")[:2]
    assert (DEPLOY / source).resolve() == DEPLOY / "nginx.conf"
    assert target == "/etc/nginx/nginx.conf"
    assert set(nginx["depends_on"]) == set(hostfit_services(compose))
    conf = (DEPLOY / "nginx.conf").read_text()
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", conf, flags=re.MULTILINE)
    ports = {s["environment"]["HOSTFIT_PORT"] for s in hostfit_services(compose).values()}
    assert {host for host, _ in servers} == set(hostfit_services(compose))
    assert {port for _, port in servers} == ports


# --- kubernetes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                assert {"apiVersion", "kind", "metadata"} <= set(document), path.name
                documents.append(document)
    return documents


def find(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_k8s_has_the_expected_objects(k8s: list[dict[str, Any]]) -> None:
    kinds = {(d["apiVersion"], d["kind"]) for d in k8s}
    assert {
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("v1", "PersistentVolumeClaim"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    } <= kinds


def hostfit_container(k8s: list[dict[str, Any]]) -> dict[str, Any]:
    pod = find(k8s, "Deployment", "hostfit")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "hostfit"]
    assert isinstance(container, dict)
    return container


def test_k8s_probes(k8s: list[dict[str, Any]]) -> None:
    container = hostfit_container(k8s)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports, probe
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HOSTFIT_PORT"] == str(ports["http"])
    assert env["HOSTFIT_HOST"] == "0.0.0.0"


def test_k8s_replicas_run_non_root_on_a_read_only_root(k8s: list[dict[str, Any]]) -> None:
    deployment = find(k8s, "Deployment", "hostfit")
    assert deployment["spec"]["replicas"] >= 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_uid()
    security = hostfit_container(k8s)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    resources = hostfit_container(k8s)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])  # the HPA measures against cpu


def test_k8s_volumes(k8s: list[dict[str, Any]]) -> None:
    pod = find(k8s, "Deployment", "hostfit")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    container = hostfit_container(k8s)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HOSTFIT_CACHE_DIR"] == CACHE and env["HOSTFIT_RULES"] == RULES
    cache = volumes[mounts[CACHE]["name"]]["persistentVolumeClaim"]["claimName"]
    claim = find(k8s, "PersistentVolumeClaim", cache)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # one cache for every replica
    rules = volumes[mounts[RULES]["name"]]["configMap"]["name"]
    assert mounts[RULES]["readOnly"] is True
    find(k8s, "ConfigMap", rules)
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]  # the root filesystem is read-only


def test_k8s_replicas_share_the_redis_service(k8s: list[dict[str, Any]]) -> None:
    env = {e["name"]: e.get("value") for e in hostfit_container(k8s)["env"]}
    match = re.fullmatch(r"redis://([\w-]+):(\d+)/\d+", env["HOSTFIT_REDIS"])
    assert match, env["HOSTFIT_REDIS"]
    service = find(k8s, "Service", match[1])
    assert int(match[2]) in {p["port"] for p in service["spec"]["ports"]}


def test_k8s_service_selects_the_pods(k8s: list[dict[str, Any]]) -> None:
    labels = find(k8s, "Deployment", "hostfit")["spec"]["template"]["metadata"]["labels"]
    service = find(k8s, "Service", "hostfit")
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"] for p in hostfit_container(k8s)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    selector = find(k8s, "Deployment", "hostfit")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    redis_labels = find(k8s, "Deployment", "hostfit-redis")["spec"]["template"]["metadata"]
    assert not service["spec"]["selector"].items() <= redis_labels["labels"].items()


def test_k8s_autoscaler_scales_the_deployment_on_cpu(k8s: list[dict[str, Any]]) -> None:
    hpa = find(k8s, "HorizontalPodAutoscaler", "hostfit")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "hostfit",
    }
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"


def test_k8s_rules_are_the_example_and_valid(k8s: list[dict[str, Any]], tmp_path: Path) -> None:
    data = find(k8s, "ConfigMap", "hostfit-rules")["data"]
    assert data["fleet.toml"] == (DEPLOY / "rules" / "fleet.toml").read_text()
    for name, text in data.items():
        assert name.endswith(".toml"), name  # hostfit reads *.toml of the directory
        (tmp_path / name).write_text(text)
    read_rules(tmp_path)  # raises, naming file and key, on a bad rule


def test_example_config_file_loads() -> None:
    settings = load_settings({"config": str(DEPLOY / "hostfit.toml")}, {})
    assert settings.cache_dir == Path(CACHE)


# --- alerts ----------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    data = load(DEPLOY / "alerts.yaml")
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    assert rules
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["expr"].strip() and rule["labels"]["severity"], rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
    exprs = " ".join(r["expr"] for r in rules)
    assert 'job="hostfit-readyz"' in exprs and 'up{job="hostfit"}' in exprs


def alert_metric_names() -> set[str]:
    """The hostfit_* series the alert rules read (tests/deploy/test_dockerfile.py checks
    that a running hostfit serves them)."""
    return {m for r in alert_rules() for m in re.findall(r"\bhostfit_[a-z0-9_]+", r["expr"])}


def test_alert_rules_read_hostfit_metrics() -> None:
    assert alert_metric_names()
