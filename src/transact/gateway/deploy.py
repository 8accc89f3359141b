"""The checked-in deployment files that are rendered from code, not written by hand.

`deploy/nginx/nginx.conf` is an example of the front door for a cluster whose services
are reachable by name (`transact-capture:8000`, as the Kubernetes Services in
`deploy/k8s/` are called); `deploy/k8s/nginx-config.yaml` carries the same text in a
ConfigMap. A test renders both again and compares, so neither drifts from the rules.
"""

from __future__ import annotations

from pathlib import Path

from transact.gateway.domain import ROUTES
from transact.gateway.nginx import Site, render

SERVICE_PORT = 8000
TLS_DIR = "/etc/nginx/tls"  # where the Ingress' TLS Secret is mounted
MAX_BODY_BYTES = 64 * 1024  # TRANSACT_MAX_BODY_BYTES's default
NGINX_CONF = Path("nginx") / "nginx.conf"
NGINX_CONFIGMAP = Path("k8s") / "nginx-config.yaml"


def kubernetes_site() -> Site:
    services = sorted({route.service for route in ROUTES})
    return Site(
        upstreams={s: [f"transact-{s}:{SERVICE_PORT}"] for s in services},
        certificate=f"{TLS_DIR}/tls.crt",
        certificate_key=f"{TLS_DIR}/tls.key",
        max_body_bytes=MAX_BODY_BYTES,
        https_port=8443,
        http_port=8080,
        public_https_port=443,
    )


def configmap(conf: str) -> str:
    """The configuration as a ConfigMap, in a YAML literal block."""
    body = "".join(f"    {line}\n" if line else "\n" for line in conf.splitlines())
    return (
        "# Rendered by `transact deploy render` from transact.gateway.domain; do not edit.\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: transact-nginx\n"
        "  labels:\n"
        "    app.kubernetes.io/part-of: transact\n"
        "data:\n"
        "  nginx.conf: |\n" + body
    )


def rendered() -> dict[Path, str]:
    """Each rendered file, by its path under deploy/."""
    conf = render(kubernetes_site())
    return {NGINX_CONF: conf, NGINX_CONFIGMAP: configmap(conf)}


def write_rendered(deploy_dir: Path) -> list[Path]:
    written = []
    for relative, text in rendered().items():
        path = deploy_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
