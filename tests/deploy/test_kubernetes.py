"""deployments/: schema validation (offline, strict) and cross-checks between the manifests.

Schema validation uses kubernetes-validate's bundled OpenAPI-derived JSON schemas in strict
mode (unknown fields are errors), so a typo such as `readinesProbe` fails here rather than being
silently dropped by the API server.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import secrets
from collections.abc import Container, Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]  # it ships no type hints
import pytest
import yaml
from bank_simulator.config import Settings as BankSettings
from cryptography.fernet import Fernet
from payment_gateway.config import Settings as GatewaySettings
from payment_gateway.domain.bank import BankFault
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"
MONITORING = DEPLOYMENTS / "monitoring"
# Validated against the oldest Kubernetes minor we support and the newest the pinned
# kubernetes-validate ships. Bump both together with the dev dependency.
K8S_VERSIONS = ("1.33.0", "1.37.0")
# Not applied by kustomize: documentation only.
EXAMPLE_FILES = frozenset({"secret.example.yaml", "ingress-nginx-controller-config.example.yaml"})

MANIFEST_FILES = sorted(
    p.name for p in DEPLOYMENTS.glob("*.yaml") if p.name != "kustomization.yaml"
)

GATEWAY = "payment-gateway"
BANK = "bank-simulator"
REDIS = "redis"
MIGRATION_JOB = "payment-gateway-migrate"


def _documents(name: str) -> list[dict[str, Any]]:
    with (DEPLOYMENTS / name).open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    (doc,) = _documents("kustomization.yaml")
    return doc


@pytest.fixture(scope="module")
def resources(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object kustomize would render (the files listed in kustomization.yaml)."""
    return [doc for name in kustomization["resources"] for doc in _documents(name)]


def _find(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod_specs(resources: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for r in resources:
        if r["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield f"{r['kind']}/{r['metadata']['name']}", r["spec"]["template"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels + matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _container(pod_template: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_template["spec"]["containers"]
    if name is None:
        assert len(containers) == 1
        return containers[0]
    (container,) = [c for c in containers if c["name"] == name]
    return container


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("filename", MANIFEST_FILES)
def test_manifest_is_valid_against_the_kubernetes_schema(filename: str, version: str) -> None:
    documents = _documents(filename)
    assert documents, f"{filename} is empty"
    for doc in documents:
        # Raises ValidationError (with the failing path) or SchemaNotFoundError.
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_rejects_unknown_fields() -> None:
    """Guards the test above: the validator must really be strict, offline, for our version."""
    (deployment,) = _documents("gateway-deployment.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


# --------------------------------------------------------------------------- kustomization


def test_kustomization_lists_every_manifest_and_nothing_else(kustomization: dict[str, Any]) -> None:
    listed = kustomization["resources"]
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert len(listed) == len(set(listed)), "duplicate resources"
    for name in listed:
        assert (DEPLOYMENTS / name).is_file(), f"{name} is listed but does not exist"
    assert set(listed) == set(MANIFEST_FILES) - EXAMPLE_FILES


def test_no_secret_values_and_no_namespace_in_the_applied_manifests(
    resources: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    assert all(r["kind"] != "Secret" for r in resources), "Secrets are created out of band"
    assert "secretGenerator" not in kustomization
    # Namespace-agnostic: the overlay or `kubectl -n` chooses it.
    assert "namespace" not in kustomization
    for r in resources:
        assert "namespace" not in r["metadata"], f"{r['kind']}/{r['metadata']['name']}"


def test_every_image_is_pinned_by_the_kustomization(
    resources: list[dict[str, Any]], kustomization: dict[str, Any]
) -> None:
    pins = {image["name"]: image for image in kustomization.get("images", [])}
    for where, template in _pod_specs(resources):
        for container in template["spec"]["containers"]:
            image = container["image"]
            pin = pins.get(image)
            if pin is not None:
                assert pin.get("newTag") or pin.get("digest"), f"{image}: no tag or digest"
                assert pin.get("newTag") != "latest"
            else:
                assert re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", image), where
                assert not image.endswith(":latest"), where


# --------------------------------------------------------------------------- selectors


def test_workload_selectors_match_their_pod_labels(resources: list[dict[str, Any]]) -> None:
    for r in resources:
        if r["kind"] == "Deployment":
            labels = r["spec"]["template"]["metadata"]["labels"]
            assert _selects(r["spec"]["selector"], labels), r["metadata"]["name"]


def test_each_service_selects_exactly_one_deployment_and_its_port(
    resources: list[dict[str, Any]],
) -> None:
    deployments = [r for r in resources if r["kind"] == "Deployment"]
    services = [r for r in resources if r["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {GATEWAY, BANK, REDIS}
    for service in services:
        selector = {"matchLabels": service["spec"]["selector"]}
        targets = [
            d
            for d in deployments
            if _selects(selector, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert [d["metadata"]["name"] for d in targets] == [service["metadata"]["name"]]
        # ... and never the migration Job's pods.
        job = _find(resources, "Job", MIGRATION_JOB)
        assert not _selects(selector, job["spec"]["template"]["metadata"]["labels"])
        ports = {
            p.get("name"): p["containerPort"]
            for c in targets[0]["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), f"{service['metadata']['name']}"


def test_hpa_scales_the_gateway_on_cpu(resources: list[dict[str, Any]]) -> None:
    (hpa,) = [r for r in resources if r["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        GATEWAY,
    )
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    assert any(
        m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"]
    )
    gateway = _find(resources, "Deployment", GATEWAY)
    # The HPA owns the replica count; a fixed one would be reset on every apply.
    assert "replicas" not in gateway["spec"]
    # CPU utilisation is relative to the request, which must therefore be set.
    assert _container(gateway["spec"]["template"])["resources"]["requests"]["cpu"]


def test_pdb_protects_the_gateway(resources: list[dict[str, Any]]) -> None:
    (pdb,) = [r for r in resources if r["kind"] == "PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    gateway = _find(resources, "Deployment", GATEWAY)
    assert _selects(pdb["spec"]["selector"], gateway["spec"]["template"]["metadata"]["labels"])
    job = _find(resources, "Job", MIGRATION_JOB)
    assert not _selects(pdb["spec"]["selector"], job["spec"]["template"]["metadata"]["labels"])
    (hpa,) = [r for r in resources if r["kind"] == "HorizontalPodAutoscaler"]
    # Otherwise no node could ever be drained.
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


# --------------------------------------------------------------------------- probes


def _probe_paths(container: dict[str, Any]) -> dict[str, str]:
    return {
        kind: container[kind]["httpGet"]["path"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        if kind in container
    }


def check_probe_paths(paths: dict[str, str], routes: Container[str]) -> None:
    """Every probe path must be a route the application serves."""
    missing = {kind: path for kind, path in paths.items() if path not in routes}
    assert not missing, f"probe paths not served by the app: {missing}"


def test_gateway_probes(resources: list[dict[str, Any]], facts: Any) -> None:
    container = _container(_find(resources, "Deployment", GATEWAY)["spec"]["template"])
    paths = _probe_paths(container)
    # Readiness follows the database; liveness only the process (a database outage must take the
    # pod out of the Service, not restart it).
    assert paths["readinessProbe"] == "/readyz"
    assert paths["livenessProbe"] == "/healthz"
    check_probe_paths(paths, facts.gateway_health_routes)
    for kind in paths:
        assert container[kind]["httpGet"]["port"] in {"http", facts.gateway_port}


def test_bank_probes(resources: list[dict[str, Any]], facts: Any) -> None:
    container = _container(_find(resources, "Deployment", BANK)["spec"]["template"])
    paths = _probe_paths(container)
    assert {"readinessProbe", "livenessProbe"} <= paths.keys()
    check_probe_paths(paths, facts.bank_health_routes)


def test_gateway_probe_paths_are_routes_of_the_gateway_app(
    resources: list[dict[str, Any]], served_paths: Any
) -> None:
    container = _container(_find(resources, "Deployment", GATEWAY)["spec"]["template"])
    paths = _probe_paths(container)
    check_probe_paths(paths, served_paths("payment_gateway.main", paths.values()))


def test_bank_probe_paths_are_routes_of_the_bank_app(
    resources: list[dict[str, Any]], served_paths: Any
) -> None:
    container = _container(_find(resources, "Deployment", BANK)["spec"]["template"])
    paths = _probe_paths(container)
    check_probe_paths(paths, served_paths("bank_simulator.main", paths.values()))


# --------------------------------------------------------------------------- configuration


def _env_names(container: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container.get("env", [])}


def _secret_refs(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """env var name -> (Secret name, key) for every secretKeyRef."""
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_gateway_secrets_come_from_the_secret(resources: list[dict[str, Any]], facts: Any) -> None:
    container = _container(_find(resources, "Deployment", GATEWAY)["spec"]["template"])
    refs = _secret_refs(container)
    assert set(refs) == facts.gateway_secret_settings
    for env_name, (secret, key) in refs.items():
        assert secret == facts.secret_name
        assert key == env_name
    # No literal value for a secret anywhere in the container spec.
    for entry in container.get("env", []):
        assert "value" not in entry or entry["name"] not in facts.gateway_secret_settings


def test_migration_job_uses_the_same_secret_keys(
    resources: list[dict[str, Any]], facts: Any
) -> None:
    container = _container(_find(resources, "Job", MIGRATION_JOB)["spec"]["template"])
    refs = _secret_refs(container)
    # `migrate` builds the same production Settings as the gateway: it needs every secret.
    assert set(refs) == facts.gateway_secret_settings
    assert {secret for secret, _ in refs.values()} == {facts.secret_name}
    assert all(key == env_name for env_name, (_, key) in refs.items())


def test_secret_example_has_exactly_the_referenced_keys(facts: Any) -> None:
    (secret,) = _documents("secret.example.yaml")
    assert secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == facts.secret_name
    assert set(secret["stringData"]) == facts.gateway_secret_settings
    # Placeholders only: nothing that could be mistaken for a working credential.
    assert all("CHANGE-ME" in value for value in secret["stringData"].values())


def test_gateway_configmap_holds_production_settings_and_no_secrets(
    resources: list[dict[str, Any]], facts: Any
) -> None:
    config = _find(resources, "ConfigMap", "payment-gateway-config")["data"]
    assert not set(config) & facts.gateway_secret_settings
    assert set(config) <= facts.gateway_plain_settings | facts.uvicorn_settings
    assert config["AUTO_MIGRATE"] == "false"
    assert config["APP_ENV"] == "production"
    assert config["DEMO_MERCHANTS"] == "false"
    assert config["BANK_URL"] == f"http://{BANK}:{facts.bank_port}"
    for template_owner in (
        _find(resources, "Deployment", GATEWAY),
        _find(resources, "Job", MIGRATION_JOB),
    ):
        container = _container(template_owner["spec"]["template"])
        assert container["envFrom"] == [{"configMapRef": {"name": "payment-gateway-config"}}]
        assert _env_names(container) <= facts.gateway_secret_settings


def test_bank_env_is_bank_settings(resources: list[dict[str, Any]], facts: Any) -> None:
    container = _container(_find(resources, "Deployment", BANK)["spec"]["template"])
    assert _env_names(container) <= facts.bank_settings
    refs = _secret_refs(container)
    assert set(refs) == facts.bank_secret_settings
    assert all(ref == (facts.secret_name, name) for name, ref in refs.items())


def _gateway_setting_names() -> set[str]:
    """The environment names the gateway's pydantic-settings classes read."""
    config = pytest.importorskip(
        "payment_gateway.config", reason="payment_gateway.config is not importable yet"
    )
    from pydantic_settings import BaseSettings

    names: set[str] = set()
    for obj in vars(config).values():
        if isinstance(obj, type) and issubclass(obj, BaseSettings) and obj is not BaseSettings:
            prefix = str(obj.model_config.get("env_prefix", "")).upper()
            for field_name, info in obj.model_fields.items():
                alias = info.validation_alias if isinstance(info.validation_alias, str) else None
                names.add((alias or prefix + field_name).upper())
    if not names:
        pytest.skip("no pydantic-settings class in payment_gateway.config yet")
    return names


def test_settings_names_are_the_gateway_settings(facts: Any) -> None:
    """The names used in these files are fields of the gateway's settings class."""
    expected = facts.gateway_settings
    names = _gateway_setting_names()
    assert expected <= names, sorted(expected - names)


# --------------------------------------------------------------------------- start-up
#
# The gateway refuses to start in production with a missing, example or short secret, a SQLite
# database or a plain-http bank (payment_gateway.config). These tests assemble each pod's
# environment as the kubelet would and run that check on it.

PLACEHOLDER = re.compile(r"CHANGE-ME[\w-]*")


def _generated_secret_data(placeholders: dict[str, str]) -> dict[str, str]:
    """secret.example.yaml's data with each CHANGE-ME placeholder replaced as an operator would:
    a Fernet key for the card keys, 32 random bytes (URL-safe) for everything else."""
    data = {}
    for key, value in placeholders.items():
        if key == "CARD_ENCRYPTION_KEYS":
            data[key] = Fernet.generate_key().decode()
        else:
            data[key] = PLACEHOLDER.sub(lambda _: secrets.token_urlsafe(32), value)
        assert data[key] != value, f"{key}: no CHANGE-ME placeholder to replace"
    return data


@pytest.fixture(scope="module")
def example_secret() -> dict[str, Any]:
    (secret,) = _documents("secret.example.yaml")
    return secret


@pytest.fixture(scope="module")
def cluster_secrets(example_secret: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Secret name -> data, as the operator creates it from secret.example.yaml."""
    return {
        example_secret["metadata"]["name"]: _generated_secret_data(example_secret["stringData"])
    }


def _pod_environment(
    container: dict[str, Any],
    resources: list[dict[str, Any]],
    cluster_secrets: dict[str, dict[str, str]],
) -> dict[str, str]:
    """The environment the kubelet gives `container`: `envFrom` first, then `env` over it.

    A reference to a missing ConfigMap, Secret or key fails, as it keeps the real pod from
    starting (CreateContainerConfigError).
    """
    config_maps = {r["metadata"]["name"]: r["data"] for r in resources if r["kind"] == "ConfigMap"}
    stores = {"configMapRef": config_maps, "secretRef": cluster_secrets}
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ((kind, ref),) = ((k, v) for k, v in source.items() if k in stores)
        assert "prefix" not in source, "envFrom prefixes are not modelled"
        assert ref["name"] in stores[kind], f"{kind} {ref['name']} does not exist"
        environment.update(stores[kind][ref["name"]])
    key_stores = {"configMapKeyRef": config_maps, "secretKeyRef": cluster_secrets}
    for entry in container.get("env", []):
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
            continue
        ((kind, ref),) = entry["valueFrom"].items()
        assert kind in key_stores, f"{entry['name']}: {kind} is not modelled"
        data = key_stores[kind].get(ref["name"], {})
        assert ref["key"] in data, f"{entry['name']}: no key {ref['key']} in {ref['name']}"
        environment[entry["name"]] = data[ref["key"]]
    return environment


def _owner_container(resources: list[dict[str, Any]], owner: str) -> dict[str, Any]:
    kind, name = owner.split("/")
    return _container(_find(resources, kind, name)["spec"]["template"])


GATEWAY_PODS = (f"Deployment/{GATEWAY}", f"Job/{MIGRATION_JOB}")


@pytest.mark.parametrize("owner", GATEWAY_PODS)
def test_gateway_pods_pass_the_production_settings_check(
    resources: list[dict[str, Any]],
    cluster_secrets: dict[str, dict[str, str]],
    settings_from_environment: Any,
    owner: str,
) -> None:
    """Both build the gateway's Settings at start-up (`migrate` too): both must validate."""
    environment = _pod_environment(_owner_container(resources, owner), resources, cluster_secrets)
    settings = settings_from_environment(GatewaySettings, environment)
    assert settings.is_production
    assert settings.bank_url.startswith("http://"), "the in-cluster simulator; see the configmap"


@pytest.mark.parametrize(
    ("breakage", "refusal"),
    [
        ("drop BANK_ALLOW_INSECURE", "BANK_URL must be https"),
        ("drop BANK_API_KEY", "BANK_API_KEY is required"),
        ("keep the placeholders", "CARD_ENCRYPTION_KEYS"),
    ],
)
@pytest.mark.parametrize("owner", GATEWAY_PODS)
def test_the_settings_check_refuses_a_broken_pod_environment(
    resources: list[dict[str, Any]],
    cluster_secrets: dict[str, dict[str, str]],
    example_secret: dict[str, Any],
    settings_from_environment: Any,
    owner: str,
    breakage: str,
    refusal: str,
) -> None:
    """Guards the test above: the same environment, minus what the manifests add, fails."""
    if breakage == "keep the placeholders":
        cluster_secrets = {example_secret["metadata"]["name"]: example_secret["stringData"]}
    environment = _pod_environment(_owner_container(resources, owner), resources, cluster_secrets)
    if breakage.startswith("drop "):
        environment.pop(breakage.removeprefix("drop "), None)
    with pytest.raises(ValidationError, match=refusal):
        settings_from_environment(GatewaySettings, environment)


async def test_the_bank_simulator_accepts_the_gateways_key(
    resources: list[dict[str, Any]],
    cluster_secrets: dict[str, dict[str, str]],
    settings_from_environment: Any,
    gateway_inquiry_at_the_bank: Any,
    facts: Any,
) -> None:
    gateway_container = _owner_container(resources, f"Deployment/{GATEWAY}")
    bank_container = _owner_container(resources, f"Deployment/{BANK}")
    shared = (facts.secret_name, "BANK_API_KEY")
    assert _secret_refs(gateway_container)["BANK_API_KEY"] == shared
    assert _secret_refs(bank_container)["BANK_API_KEY"] == shared

    gateway = settings_from_environment(
        GatewaySettings, _pod_environment(gateway_container, resources, cluster_secrets)
    )
    bank = settings_from_environment(
        BankSettings, _pod_environment(bank_container, resources, cluster_secrets)
    )
    # 404 for the unknown deposit (None): past the bank's key check.
    assert await gateway_inquiry_at_the_bank(gateway, bank) is None
    # Guard: a bank holding another key turns the gateway away (401 -> uncertain).
    other_key = bank.model_copy(update={"bank_api_key": SecretStr(secrets.token_urlsafe(32))})
    assert await gateway_inquiry_at_the_bank(gateway, other_key) is BankFault.UNCERTAIN


# --------------------------------------------------------------------------- hardening


@pytest.mark.parametrize(
    "owner",
    [
        f"Deployment/{GATEWAY}",
        f"Deployment/{BANK}",
        f"Deployment/{REDIS}",
        f"Job/{MIGRATION_JOB}",
    ],
)
def test_pods_are_hardened(resources: list[dict[str, Any]], facts: Any, owner: str) -> None:
    kind, name = owner.split("/")
    template = _find(resources, kind, name)["spec"]["template"]
    pod = template["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == facts.app_uid
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod
    assert "hostPID" not in pod

    tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for container in pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["runAsNonRoot"] is True
        assert ctx["runAsUser"] == facts.app_uid
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx.get("privileged", False) is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert not ctx["capabilities"].get("add")
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        # A read-only root filesystem needs a writable /tmp.
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get("/tmp") in tmp_volumes  # noqa: S108 - a mount path, not a temp file
        resources_ = container["resources"]
        for section in ("requests", "limits"):
            assert {"cpu", "memory"} <= resources_[section].keys(), f"{name}: {section}"


def test_gateway_drains_before_it_stops(
    resources: list[dict[str, Any]], gateway_graceful_shutdown_seconds: int
) -> None:
    deployment = _find(resources, "Deployment", GATEWAY)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment["spec"]["template"])
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    assert pre_stop >= 5, "endpoint removal needs a few seconds to propagate"
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= 40
    # The grace period covers the preStop sleep AND uvicorn's drain of in-flight payments.
    assert grace > pre_stop + gateway_graceful_shutdown_seconds
    # Rollouts never reduce capacity.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_bank_simulator_is_a_single_process(resources: list[dict[str, Any]]) -> None:
    """Its transactions live in memory: two pods would disagree about them."""
    deployment = _find(resources, "Deployment", BANK)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert not [
        r
        for r in resources
        if r["kind"] == "HorizontalPodAutoscaler" and r["spec"]["scaleTargetRef"]["name"] == BANK
    ]


def test_migration_job(resources: list[dict[str, Any]]) -> None:
    job = _find(resources, "Job", MIGRATION_JOB)
    spec = job["spec"]
    assert spec["backoffLimit"] >= 1
    assert spec["ttlSecondsAfterFinished"] > 0
    assert spec["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}
    container = _container(spec["template"])
    assert container["command"] == ["python", "-m", "payment_gateway", "migrate"]
    gateway = _container(_find(resources, "Deployment", GATEWAY)["spec"]["template"])
    assert container["image"] == gateway["image"], "migrations must come from the gateway image"


# --------------------------------------------------------------------------- network policies
#
# A small model of NetworkPolicy semantics: a peer is a pod (labels) in a namespace (labels);
# `namespace=None` means this application's own namespace. Policies are additive: traffic is
# allowed if any policy selecting the pod admits it, and every pod is selected by the default
# deny, so a pod no other policy selects can neither send nor receive.

OWN_NAMESPACE = {"kubernetes.io/metadata.name": "payment-gateway"}
INGRESS_NAMESPACE = {"kubernetes.io/metadata.name": "ingress-nginx"}
INGRESS_POD = {"app.kubernetes.io/name": "ingress-nginx"}
MONITORING_NAMESPACE = {"kubernetes.io/metadata.name": "monitoring"}
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}
DATABASE_NAMESPACE = {"kubernetes.io/metadata.name": "database"}
MYSQL_POD = {"app.kubernetes.io/name": "mysql"}
DNS_NAMESPACE = {"kubernetes.io/metadata.name": "kube-system"}
DNS_POD = {"k8s-app": "kube-dns"}
ANY_POD = {"app": "anything-else"}


@pytest.fixture(scope="module")
def pod_labels(resources: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    def labels(kind: str, name: str) -> dict[str, str]:
        result: dict[str, str] = _find(resources, kind, name)["spec"]["template"]["metadata"][
            "labels"
        ]
        return result

    return {
        "gateway": labels("Deployment", GATEWAY),
        "bank": labels("Deployment", BANK),
        "redis": labels("Deployment", REDIS),
        "migration": labels("Job", MIGRATION_JOB),
    }


def _policies(
    resources: list[dict[str, Any]], labels: dict[str, str], policy_type: str
) -> list[dict[str, Any]]:
    return [
        r
        for r in resources
        if r["kind"] == "NetworkPolicy"
        and policy_type in r["spec"]["policyTypes"]
        and _selects(r["spec"]["podSelector"], labels)
    ]


def _ports(rule: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports", [])}


def _peer_admits(
    peer: dict[str, Any], labels: dict[str, str], namespace: dict[str, str] | None
) -> bool:
    """Does this `from`/`to` peer match a pod with `labels` in `namespace`?"""
    if "ipBlock" in peer:
        return True  # pod IPs may fall inside it: treat as admitting
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], namespace or OWN_NAMESPACE):
            return False
    elif namespace is not None:
        return False  # a podSelector alone means this namespace only
    return _selects(peer.get("podSelector", {}), labels)


def _allowed(
    resources: list[dict[str, Any]],
    direction: str,
    selected: dict[str, str],
    peer: dict[str, str],
    port: int,
    peer_namespace: dict[str, str] | None = None,
    protocol: str = "TCP",
) -> bool:
    """Is `selected` allowed to receive from (Ingress) / send to (Egress) `peer` on `port`?"""
    policies = _policies(resources, selected, direction)
    assert policies, f"every pod must be covered by an {direction} policy (default deny)"
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in policies:
        for rule in policy["spec"].get(rules_key, []):
            ports = _ports(rule)
            if ports and (protocol, port) not in ports:
                continue
            peers = rule.get(peers_key)
            if not peers or any(_peer_admits(p, peer, peer_namespace) for p in peers):
                return True
    return False


def test_default_deny_for_the_namespace(resources: list[dict[str, Any]]) -> None:
    """Both directions: a pod added later reaches nothing and is reached by nothing."""
    assert any(
        r["kind"] == "NetworkPolicy"
        and r["spec"]["podSelector"] == {}
        and set(r["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not r["spec"].get("ingress")
        and not r["spec"].get("egress")
        for r in resources
    )


def test_the_model_denies_what_no_policy_admits(
    resources: list[dict[str, Any]], pod_labels: dict[str, dict[str, str]]
) -> None:
    """Guards the model: a pod selected only by the default deny gets nothing either way."""
    stray = {"app": "stray"}
    assert not _allowed(resources, "Ingress", stray, pod_labels["gateway"], 8080)
    assert not _allowed(resources, "Egress", stray, DNS_POD, 53, DNS_NAMESPACE, "UDP")


def test_only_the_gateway_and_monitoring_reach_the_bank_simulator(
    resources: list[dict[str, Any]], pod_labels: dict[str, dict[str, str]], facts: Any
) -> None:
    bank, port = pod_labels["bank"], facts.bank_port
    assert _allowed(resources, "Ingress", bank, pod_labels["gateway"], port)
    # Its /metrics shares the API port.
    assert _allowed(resources, "Ingress", bank, PROMETHEUS_POD, port, MONITORING_NAMESPACE)
    assert not _allowed(resources, "Ingress", bank, pod_labels["migration"], port)
    assert not _allowed(resources, "Ingress", bank, ANY_POD, port)
    assert not _allowed(resources, "Ingress", bank, INGRESS_POD, port, INGRESS_NAMESPACE)


def test_gateway_api_is_reachable_from_the_ingress_controller_only(
    resources: list[dict[str, Any]], pod_labels: dict[str, dict[str, str]], facts: Any
) -> None:
    gateway, port = pod_labels["gateway"], facts.gateway_port
    assert _allowed(resources, "Ingress", gateway, INGRESS_POD, port, INGRESS_NAMESPACE)
    assert not _allowed(resources, "Ingress", gateway, PROMETHEUS_POD, port, MONITORING_NAMESPACE)
    assert not _allowed(resources, "Ingress", gateway, ANY_POD, port)
    assert not _allowed(resources, "Ingress", gateway, ANY_POD, port, INGRESS_NAMESPACE)
    assert not _allowed(resources, "Ingress", gateway, INGRESS_POD, port, {"other": "ns"})


def test_gateway_metrics_are_reachable_from_the_monitoring_namespace_only(
    resources: list[dict[str, Any]], pod_labels: dict[str, dict[str, str]], facts: Any
) -> None:
    gateway, port = pod_labels["gateway"], facts.gateway_metrics_port
    assert _allowed(resources, "Ingress", gateway, PROMETHEUS_POD, port, MONITORING_NAMESPACE)
    assert not _allowed(resources, "Ingress", gateway, INGRESS_POD, port, INGRESS_NAMESPACE)
    assert not _allowed(resources, "Ingress", gateway, ANY_POD, port)
    for policy in _policies(resources, gateway, "Ingress"):
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from"), "an ingress rule without `from` admits everyone"
            assert _ports(rule) <= {("TCP", facts.gateway_port), ("TCP", port)}


def test_only_the_gateway_reaches_redis(
    resources: list[dict[str, Any]], pod_labels: dict[str, dict[str, str]], facts: Any
) -> None:
    redis, port = pod_labels["redis"], facts.redis_port
    assert _allowed(resources, "Ingress", redis, pod_labels["gateway"], port)
    assert not _allowed(resources, "Ingress", redis, pod_labels["migration"], port)
    assert not _allowed(resources, "Ingress", redis, pod_labels["bank"], port)
    assert not _allowed(resources, "Ingress", redis, PROMETHEUS_POD, port, MONITORING_NAMESPACE)


def _egress_rules(resources: list[dict[str, Any]], labels: dict[str, str]) -> list[dict[str, Any]]:
    policies = _policies(resources, labels, "Egress")
    assert policies, "egress must be restricted"
    return [rule for p in policies for rule in p["spec"].get("egress", [])]


def test_every_egress_rule_names_its_ports_and_destinations(
    resources: list[dict[str, Any]],
) -> None:
    for policy in resources:
        if policy["kind"] != "NetworkPolicy":
            continue
        for rule in policy["spec"].get("egress", []):
            name = policy["metadata"]["name"]
            assert _ports(rule), f"{name}: an egress rule without ports opens every port"
            assert rule.get("to"), f"{name}: an egress rule without `to` reaches every address"
            for peer in rule["to"]:
                block = peer.get("ipBlock", {})
                if block.get("cidr") in {"0.0.0.0/0", "::/0"}:
                    # Only the webhooks' https, and never to a private network (SSRF).
                    assert _ports(rule) == {("TCP", 443)}, name
                    assert _private_ranges_excepted(block), name
                assert peer.get("namespaceSelector", {"x": 1}) != {}, f"{name}: every namespace"


PRIVATE_RANGES = {
    "0.0.0.0/0": {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16"},
    "::/0": {"::1/128", "fc00::/7", "fe80::/10"},
}


def _private_ranges_excepted(block: dict[str, Any]) -> bool:
    return PRIVATE_RANGES[block["cidr"]] <= set(block.get("except", []))


def test_gateway_egress_is_bank_redis_mysql_dns_and_public_https_only(
    resources: list[dict[str, Any]], pod_labels: dict[str, dict[str, str]], facts: Any
) -> None:
    gateway = pod_labels["gateway"]
    opened = {port for rule in _egress_rules(resources, gateway) for port in _ports(rule)}
    assert opened == {
        ("TCP", facts.bank_port),
        ("TCP", facts.redis_port),
        ("TCP", 3306),
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 443),  # webhooks, to public addresses only
    }
    assert _allowed(resources, "Egress", gateway, pod_labels["bank"], facts.bank_port)
    assert _allowed(resources, "Egress", gateway, pod_labels["redis"], facts.redis_port)
    assert _allowed(resources, "Egress", gateway, MYSQL_POD, 3306, DATABASE_NAMESPACE)
    assert _allowed(resources, "Egress", gateway, DNS_POD, 53, DNS_NAMESPACE, "UDP")
    # Each port leads to its own destination only: 3306 is not open to any address.
    assert not _allowed(resources, "Egress", gateway, ANY_POD, 3306, {"other": "ns"})
    assert not _allowed(resources, "Egress", gateway, ANY_POD, 3306)
    assert not _allowed(resources, "Egress", gateway, MYSQL_POD, 3306)  # wrong namespace
    assert not _allowed(resources, "Egress", gateway, pod_labels["redis"], facts.bank_port)
    assert not _allowed(resources, "Egress", gateway, ANY_POD, 53, {"other": "ns"}, "UDP")


def test_migration_egress_is_mysql_and_dns_only(
    resources: list[dict[str, Any]], pod_labels: dict[str, dict[str, str]], facts: Any
) -> None:
    migration = pod_labels["migration"]
    opened = {port for rule in _egress_rules(resources, migration) for port in _ports(rule)}
    assert opened == {("TCP", 3306), ("UDP", 53), ("TCP", 53)}
    assert _allowed(resources, "Egress", migration, MYSQL_POD, 3306, DATABASE_NAMESPACE)
    assert not _allowed(resources, "Egress", migration, ANY_POD, 3306, {"other": "ns"})
    assert not _allowed(resources, "Egress", migration, pod_labels["bank"], facts.bank_port)


@pytest.mark.parametrize("pod", ["bank", "redis"])
def test_backends_start_no_connection(
    resources: list[dict[str, Any]], pod_labels: dict[str, dict[str, str]], pod: str
) -> None:
    assert _egress_rules(resources, pod_labels[pod]) == []


# --------------------------------------------------------------------------- proxy trust


async def _client_seen_by_the_app(forwarded_allow_ips: str, peer: str) -> str:
    """The client address uvicorn hands the app for a request from `peer` claiming 203.0.113.9.

    Runs uvicorn's own ProxyHeadersMiddleware with the configured value, so this checks what
    uvicorn does with it, not what the value looks like.
    """

    async def whoami(request: Request) -> PlainTextResponse:
        assert request.client is not None
        return PlainTextResponse(request.client.host)

    # uvicorn types an ASGI app with its own TypedDicts, Starlette and httpx with plain mappings.
    app = ProxyHeadersMiddleware(
        Starlette(routes=[Route("/", whoami)]),  # type: ignore[arg-type]
        trusted_hosts=forwarded_allow_ips,
    )
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.get("/", headers={"X-Forwarded-For": "203.0.113.9"})
        return response.text


async def test_forwarded_headers_are_trusted_from_the_cluster_network_only(
    resources: list[dict[str, Any]],
) -> None:
    value = _find(resources, "ConfigMap", "payment-gateway-config")["data"]["FORWARDED_ALLOW_IPS"]
    assert "*" not in value
    networks = [ipaddress.ip_network(item.strip()) for item in value.split(",")]
    for network in networks:
        assert network.prefixlen >= 8, f"{network} trusts too much"
        assert network.is_private, f"{network}: pods and ingress controllers have private IPs"
    inside = str(next(networks[0].hosts()))
    assert await _client_seen_by_the_app(value, inside) == "203.0.113.9"
    # Anyone else (here, a public address) cannot choose the address the gateway sees.
    assert await _client_seen_by_the_app(value, "198.51.100.7") == "198.51.100.7"
    assert await _client_seen_by_the_app("*", "198.51.100.7") == "203.0.113.9"  # what "*" did


# --------------------------------------------------------------------------- metrics port


def test_gateway_serves_metrics_on_their_own_named_port(
    resources: list[dict[str, Any]], facts: Any
) -> None:
    config = _find(resources, "ConfigMap", "payment-gateway-config")["data"]
    assert config["METRICS_PORT"] == str(facts.gateway_metrics_port)
    container = _container(_find(resources, "Deployment", GATEWAY)["spec"]["template"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": facts.gateway_port, "metrics": facts.gateway_metrics_port}
    service = _find(resources, "Service", GATEWAY)
    service_ports = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert service_ports == {"http": "http", "metrics": "metrics"}


def test_redis_url_names_the_redis_service(resources: list[dict[str, Any]], facts: Any) -> None:
    url = _find(resources, "ConfigMap", "payment-gateway-config")["data"]["REDIS_URL"]
    service = _find(resources, "Service", REDIS)
    (port,) = service["spec"]["ports"]
    assert url == f"redis://{REDIS}:{port['port']}/0"
    assert port["port"] == facts.redis_port
    container = _container(_find(resources, "Deployment", REDIS)["spec"]["template"])
    assert re.fullmatch(r"redis:7(\.\d+)*@sha256:[0-9a-f]{64}", container["image"])
    assert container["args"][container["args"].index("--save") + 1] == "", "nothing persisted"


# --------------------------------------------------------------------------- ingress


def test_ingress_is_tls_only_and_routes_the_api_alone(
    resources: list[dict[str, Any]], served_paths: Any
) -> None:
    ingress = _find(resources, "Ingress", GATEWAY)
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
    assert not [a for a in annotations if a.endswith("snippet")], "snippets are an injection risk"
    spec = ingress["spec"]
    tls_hosts = {host for tls in spec["tls"] for host in tls["hosts"]}
    assert all(tls["secretName"] for tls in spec["tls"])
    paths = []
    for rule in spec["rules"]:
        assert rule["host"] in tls_hosts, f"{rule['host']} would be served without TLS"
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert (backend["name"], backend["port"]) == (GATEWAY, {"name": "http"})
            assert path["pathType"] == "Prefix"
            paths.append(path["path"])
    assert paths == ["/api/"]
    for internal in ("/metrics", "/healthz", "/readyz", "/docs"):
        assert not any(internal.startswith(p.rstrip("/")) for p in paths), internal
    # The prefix does lead to the API.
    payment = "/api/v1/payments/pay_0123"
    assert served_paths("payment_gateway.main", [payment]) == {payment}


def test_controller_config_example_sends_hsts() -> None:
    (config,) = _documents("ingress-nginx-controller-config.example.yaml")
    data = config["data"]
    assert data["hsts"] == "true"
    assert int(data["hsts-max-age"]) >= 31536000, "browsers' preload lists ask for a year"
    assert data["hsts-include-subdomains"] == "true"
    assert data["ssl-redirect"] == "true"


# --------------------------------------------------------------------------- monitoring


def _monitoring_documents(name: str) -> list[dict[str, Any]]:
    with (MONITORING / name).open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def test_service_monitors_select_the_services_metrics_ports(
    resources: list[dict[str, Any]],
) -> None:
    (kustomization,) = _monitoring_documents("kustomization.yaml")
    monitors = [d for name in kustomization["resources"] for d in _monitoring_documents(name)]
    assert {m["metadata"]["name"] for m in monitors} == {GATEWAY, BANK}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["kind"] == "ServiceMonitor"
        assert "namespace" not in monitor["metadata"]
        # A CRD: kubernetes-validate has no schema for it, so the fields are checked below.
        with contextlib.suppress(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(monitor, K8S_VERSIONS[-1], strict=True)
        services = [
            r
            for r in resources
            if r["kind"] == "Service"
            and _selects(monitor["spec"]["selector"], r["metadata"]["labels"])
        ]
        assert [s["metadata"]["name"] for s in services] == [monitor["metadata"]["name"]]
        service_ports = {p["name"] for p in services[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in service_ports
            assert endpoint["path"] == "/metrics"
    (gateway,) = [m for m in monitors if m["metadata"]["name"] == GATEWAY]
    assert [e["port"] for e in gateway["spec"]["endpoints"]] == ["metrics"], "never the API port"


def test_plain_scrape_config_keeps_the_same_endpoints() -> None:
    (config,) = _monitoring_documents("scrape-config-kubernetes.yaml")
    keeps = {}
    for job in config["scrape_configs"]:
        assert job["metrics_path"] == "/metrics"
        assert [sd["role"] for sd in job["kubernetes_sd_configs"]] == ["endpoints"]
        (keep,) = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
        assert keep["source_labels"] == [
            "__meta_kubernetes_service_name",
            "__meta_kubernetes_endpoint_port_name",
        ]
        keeps[job["job_name"]] = keep["regex"]
    assert keeps == {GATEWAY: f"{GATEWAY};metrics", BANK: f"{BANK};http"}
