"""The deployment files under deploy/ that are rendered from code, not written by hand.

* `deploy/nginx/nginx.conf`: the front door for a cluster whose services are reached
  by name (`transact-capture:8000`, the Kubernetes Services below);
* `deploy/k8s/nginx-config.yaml`: the same text in a ConfigMap;
* `deploy/k8s/services.yaml`: a Deployment and a Service for every service of the
  registry (telephony: a StatefulSet, see below), with probes, resources, secrets and
  the label that lets a pod reach the vault's Redis.

`transact deploy render` writes them; a test renders them again and compares, so none
drifts from the gateway's rules or from the list of services.

Telephony bridges the two legs of a call in one process, so nginx must pick the
instance by the call id (`hash $arg_call`), which needs addresses nginx can tell apart:
a StatefulSet behind a headless Service gives each pod a stable name, and the
upstream lists them. A ClusterIP Service in between would spread the legs again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transact.gateway.domain import ROUTES
from transact.gateway.nginx import Site, render

SERVICE_PORT = 8000
TLS_DIR = "/etc/nginx/tls"  # where the TLS Secret is mounted in the nginx pod
MAX_BODY_BYTES = 64 * 1024  # TRANSACT_MAX_BODY_BYTES's default
IMAGE = "transact:0.1.0"  # built from deploy/Dockerfile; push it where the cluster pulls
GATEWAY = "gateway"  # nginx is the gateway in this topology: no process serves it
STATEFUL = frozenset({"telephony"})  # pods nginx must address one by one (see above)
# The only services that keep card data in the vault (sealed, minutes at most). The
# others seal and unseal with the master key but never touch the vault's store.
VAULT_SERVICES = frozenset({"capture", "psp"})
VAULT_ACCESS_LABEL = "transact.io/vault-access"
VAULT_URL = "redis://transact-redis-vault:6379/0"

NGINX_CONF = Path("nginx") / "nginx.conf"
NGINX_CONFIGMAP = Path("k8s") / "nginx-config.yaml"
SERVICES_YAML = Path("k8s") / "services.yaml"
HEADER = "# Rendered by `transact deploy render` from the code; do not edit by hand.\n"


@dataclass(frozen=True)
class Profile:
    """How many pods a service runs and what each asks for."""

    replicas: int
    cpu: str
    memory: str
    cpu_limit: str = "1"
    memory_limit: str = "512Mi"
    # SIGTERM to exit: uvicorn drains requests, the bus drains handlers (10 s at most).
    grace_seconds: int = 30
    # Never two at once, not even during a rollout: the old pod stops before the new one
    # starts (a second one would take half of each call's messages).
    single_instance: bool = False


# Stateless REST and competing consumers run two for availability; telephony does the
# signal processing (DTMF detection and masking on every frame) and needs the CPU.
PROFILES: Mapping[str, Profile] = {
    "auth": Profile(2, "100m", "192Mi"),
    "correlation": Profile(2, "100m", "192Mi"),
    "capture": Profile(2, "250m", "256Mi"),
    "psp": Profile(2, "250m", "256Mi"),
    "psp-webhooks": Profile(1, "100m", "192Mi"),
    "telephony": Profile(2, "1", "512Mi", cpu_limit="2", memory_limit="1Gi", grace_seconds=60),
    "notifications": Profile(2, "100m", "192Mi"),
    "communications": Profile(1, "100m", "192Mi"),
    "remote": Profile(2, "100m", "192Mi"),
    # One instance: a call's recognizer session lives in one process (see docs/voice.md);
    # the offline model decodes on the CPU.
    "voice": Profile(1, "1", "768Mi", cpu_limit="2", memory_limit="1536Mi", single_instance=True),
}
DEFAULT_PROFILE = Profile(1, "100m", "256Mi")


def deployed_services() -> list[str]:
    """Every service of the registry that runs as pods (all but the gateway)."""
    from transact import runtime

    return [name for name in runtime.service_factories() if name != GATEWAY]


def profile(service: str) -> Profile:
    return PROFILES.get(service, DEFAULT_PROFILE)


# --- nginx -------------------------------------------------------------------------


def upstream_servers(service: str) -> list[str]:
    if service in STATEFUL:
        # Each pod by its stable name under the headless Service.
        return [
            f"transact-{service}-{i}.transact-{service}:{SERVICE_PORT}"
            for i in range(profile(service).replicas)
        ]
    return [f"transact-{service}:{SERVICE_PORT}"]


def kubernetes_site() -> Site:
    services = sorted({route.service for route in ROUTES})
    return Site(
        upstreams={s: upstream_servers(s) for s in services},
        certificate=f"{TLS_DIR}/tls.crt",
        certificate_key=f"{TLS_DIR}/tls.key",
        max_body_bytes=MAX_BODY_BYTES,
        https_port=8443,
        http_port=8080,
        public_https_port=443,
    )


def configmap(conf: str) -> str:
    """The nginx configuration as a ConfigMap, in a YAML literal block."""
    body = "".join(f"    {line}\n" if line else "\n" for line in conf.splitlines())
    return (
        HEADER + "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: transact-nginx\n"
        "  labels:\n"
        "    app.kubernetes.io/part-of: transact\n"
        "data:\n"
        "  nginx.conf: |\n" + body
    )


# --- Kubernetes workloads ----------------------------------------------------------


def _labels(service: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": f"transact-{service}",
        "app.kubernetes.io/component": service,
        "app.kubernetes.io/part-of": "transact",
    }


def _env(service: str) -> list[dict[str, Any]]:
    def secret(name: str, secret_name: str, key: str, optional: bool = False) -> dict[str, Any]:
        ref: dict[str, Any] = {"name": secret_name, "key": key}
        if optional:
            ref["optional"] = True
        return {"name": name, "valueFrom": {"secretKeyRef": ref}}

    env: list[dict[str, Any]] = [
        {"name": "TRANSACT_HOST", "value": "0.0.0.0"},  # noqa: S104  (inside the pod)
        {"name": "TRANSACT_PORT", "value": str(SERVICE_PORT)},
        secret("TRANSACT_MASTER_KEY", "transact-master-key", "master-key"),
        secret(
            "TRANSACT_PREVIOUS_MASTER_KEYS",
            "transact-master-key",
            "previous-master-keys",
            optional=True,
        ),
        secret("TRANSACT_DATABASE_URL", "transact-database", "url"),
    ]
    if service in VAULT_SERVICES:
        env.append({"name": "TRANSACT_VAULT_URL", "value": VAULT_URL})
    return env


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def _container(service: str) -> dict[str, Any]:
    shape = profile(service)
    return {
        "name": service,
        "image": IMAGE,
        "args": ["serve", service],
        "ports": [{"name": "http", "containerPort": SERVICE_PORT}],
        "envFrom": [{"configMapRef": {"name": "transact-settings"}}],
        "env": _env(service),
        # Ready only with database, cache and bus reachable; alive while it answers.
        "readinessProbe": _probe("/readyz", 5, 2),
        "livenessProbe": _probe("/healthz", 10, 3),
        "startupProbe": _probe("/healthz", 2, 30),
        # Endpoints are removed asynchronously: keep serving a moment before SIGTERM.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "resources": {
            "requests": {"cpu": shape.cpu, "memory": shape.memory},
            "limits": {"cpu": shape.cpu_limit, "memory": shape.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
    }


def workload(service: str) -> dict[str, Any]:
    """The Deployment (StatefulSet for telephony) of one service."""
    labels = _labels(service)
    pod_labels = {**labels}
    if service in VAULT_SERVICES:
        pod_labels[VAULT_ACCESS_LABEL] = "true"
    spec: dict[str, Any] = {
        "replicas": profile(service).replicas,
        "selector": {"matchLabels": {"app.kubernetes.io/name": labels["app.kubernetes.io/name"]}},
        "template": {
            "metadata": {"labels": pod_labels},
            "spec": {
                "terminationGracePeriodSeconds": profile(service).grace_seconds,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                "containers": [_container(service)],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        },
    }
    if service in STATEFUL:
        spec["serviceName"] = f"transact-{service}"
        spec["podManagementPolicy"] = "Parallel"
        kind = "StatefulSet"
    elif profile(service).single_instance:
        spec["strategy"] = {"type": "Recreate"}
        kind = "Deployment"
    else:
        # Never fewer ready pods than asked for during a rollout.
        spec["strategy"] = {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        kind = "Deployment"
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": f"transact-{service}", "labels": labels},
        "spec": spec,
    }


def service_object(service: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"app.kubernetes.io/name": f"transact-{service}"},
        "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}],
    }
    if service in STATEFUL:
        # Headless: a DNS name per pod; resolvable before the pod is ready, so nginx
        # starts while a telephony pod is still starting.
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = True
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"transact-{service}", "labels": _labels(service)},
        "spec": spec,
    }


def services_yaml() -> str:
    documents = [doc for s in deployed_services() for doc in (workload(s), service_object(s))]
    return HEADER + "".join("---\n" + to_yaml(doc) for doc in documents)


# --- a small YAML writer (PyYAML is not a runtime dependency) ----------------------

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./:@=-]*")
_RESERVED = frozenset({"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"})


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, list) and not value:
        return "[]"
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _is_leaf(value: Any) -> bool:
    return not isinstance(value, dict | list) or not value


def _lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if _is_leaf(item):
                lines.append(f"{pad}{_scalar(key)}: {_scalar(item)}")
            else:
                lines.append(f"{pad}{_scalar(key)}:")
                lines.extend(_lines(item, indent + 1))
        return lines
    for item in value:
        if _is_leaf(item):
            lines.append(f"{pad}- {_scalar(item)}")
            continue
        nested = _lines(item, indent + 1)
        # "- " takes the place of the first nested line's indentation.
        lines.append(f"{pad}- {nested[0][len(pad) + 2 :]}")
        lines.extend(nested[1:])
    return lines


def to_yaml(document: Mapping[str, Any]) -> str:
    return "\n".join(_lines(dict(document), 0)) + "\n"


# --- all of it ---------------------------------------------------------------------


def rendered() -> dict[Path, str]:
    """Each rendered file, by its path under deploy/."""
    conf = render(kubernetes_site())
    return {NGINX_CONF: conf, NGINX_CONFIGMAP: configmap(conf), SERVICES_YAML: services_yaml()}


def write_rendered(deploy_dir: Path) -> list[Path]:
    written = []
    for relative, text in rendered().items():
        path = deploy_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
