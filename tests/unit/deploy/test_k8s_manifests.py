"""The Kubernetes manifests in deploy/k8s hang together: every object validates, strictly
(no unknown field), against the Kubernetes API's own JSON schemas (`kubernetes-validate`,
offline), and the structure the topology needs is there. Not a deployment: no cluster
has run them."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from transact import deploy

K8S = Path(__file__).resolve().parents[3] / "deploy" / "k8s"
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def named(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def pod_specs() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, pod labels, pod spec) of every Deployment, StatefulSet and Job."""
    for doc in documents():
        if doc["kind"] in WORKLOADS:
            template = doc["spec"]["template"]
            yield doc["metadata"]["name"], template["metadata"]["labels"], template["spec"]


def service_workload(service: str) -> dict[str, Any]:
    for kind in ("Deployment", "StatefulSet"):
        found = named(kind).get(f"transact-{service}")
        if found is not None:
            return found
    raise AssertionError(f"no workload for {service}")


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def env_names(c: dict[str, Any]) -> set[str]:
    return {e["name"] for e in c.get("env", [])}


def test_every_document_is_a_kubernetes_object() -> None:
    for doc in documents():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])


KUBERNETES_VERSION = "1.33.0"  # an API version clusters run today; the manifests use no newer


@pytest.mark.parametrize(
    "doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}".lower()
)
def test_every_object_validates_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_refuses_what_a_cluster_would_refuse() -> None:
    (workload, *_) = named("Deployment").values()
    misspelled = copy.deepcopy(workload)
    probe = container(misspelled)
    probe["readinesProbe"] = probe.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelled, KUBERNETES_VERSION, strict=True)
    wrong_type = copy.deepcopy(workload)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secrets_example() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk - {"secrets.example.yaml"}


@pytest.mark.parametrize("service", deploy.deployed_services())
def test_every_service_runs_with_probes_resources_and_its_secrets(service: str) -> None:
    workload = service_workload(service)
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    c = container(workload)
    assert c["args"] == ["serve", service]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    assert {"TRANSACT_MASTER_KEY", "TRANSACT_DATABASE_URL"} <= env_names(c)
    assert workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 15


def test_voice_is_never_two_pods_even_during_a_rollout() -> None:
    """A call's audio must reach one recognizer: the old pod stops before the new one
    starts; every other Deployment rolls with a surge and none unavailable."""
    for service in deploy.deployed_services():
        workload = service_workload(service)
        if workload["kind"] != "Deployment":
            continue
        strategy = workload["spec"]["strategy"]
        if service == "voice":
            assert (workload["spec"]["replicas"], strategy) == (1, {"type": "Recreate"})
        else:
            assert strategy["rollingUpdate"]["maxUnavailable"] == 0, service


def test_every_secret_and_config_map_that_is_used_is_defined() -> None:
    secrets, maps = named("Secret"), named("ConfigMap")
    for name, _, spec in pod_specs():
        for c in spec["containers"]:
            for entry in c.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert ref["key"] in secrets[ref["name"]]["stringData"], (name, ref)
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in maps, name
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, name
            if "configMap" in volume:
                assert volume["configMap"]["name"] in maps, name


def test_every_service_object_selects_pods_that_exist() -> None:
    pods = [labels for _, labels, _ in pod_specs()]
    for name, service in named("Service").items():
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pods), name


def test_only_capture_and_psp_may_reach_the_vault() -> None:
    label = deploy.VAULT_ACCESS_LABEL
    labelled = {n for n, labels, _ in pod_specs() if labels.get(label) == "true"}
    assert labelled == {f"transact-{s}" for s in deploy.VAULT_SERVICES}
    given_url = {
        n
        for n, _, spec in pod_specs()
        if any("TRANSACT_VAULT_URL" in env_names(c) for c in spec["containers"])
    }
    assert given_url == labelled

    policy = named("NetworkPolicy")["transact-vault"]["spec"]
    vault = named("Deployment")["transact-redis-vault"]["spec"]["template"]["metadata"]
    assert policy["podSelector"]["matchLabels"].items() <= vault["labels"].items()
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {label: "true"}}}]


def test_nginx_runs_the_rendered_config_with_the_tls_secret() -> None:
    nginx = named("Deployment")["transact-nginx"]
    spec = nginx["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container(nginx)["volumeMounts"]}
    assert volumes["config"]["configMap"]["name"] == "transact-nginx"
    conf = named("ConfigMap")["transact-nginx"]["data"]["nginx.conf"]
    assert f"-c {mounts['config']}/nginx.conf" in " ".join(container(nginx)["args"])
    assert f"ssl_certificate {mounts['tls']}/tls.crt;" in conf
    assert container(nginx)["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_every_upstream_in_the_nginx_config_is_a_service_name() -> None:
    conf = named("ConfigMap")["transact-nginx"]["data"]["nginx.conf"]
    services = named("Service")
    for host in re.findall(r"server ([a-z0-9.-]+):\d+;", conf):
        parts = host.split(".")
        if len(parts) == 2:
            # A pod of a StatefulSet under its headless Service: name-N.service.
            pod, service = parts
            assert services[service]["spec"]["clusterIP"] == "None", host
            workload = named("StatefulSet")[service]
            index = int(pod.rsplit("-", 1)[1])
            assert index < workload["spec"]["replicas"], host
        else:
            assert host in services, host


def test_telephony_pods_are_addressed_one_by_one() -> None:
    telephony = named("StatefulSet")["transact-telephony"]
    headless = named("Service")["transact-telephony"]["spec"]
    assert telephony["spec"]["serviceName"] == "transact-telephony"
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
