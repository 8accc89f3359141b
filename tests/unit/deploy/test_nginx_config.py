"""The nginx configuration says what the in-process gateway does: checked rule by rule
by reading the rendered maps and locations back and applying them the way nginx does
(first regex location that matches; a map's first matching row), and against the
services' own routes. The live comparison of the two gateways is in
tests/integration/distributed/test_nginx_gateway.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute

from transact import deploy, runtime
from transact.gateway import domain
from transact.gateway.nginx import STICKY_KEYS, STREAMING_PREFIXES, Site, locations, render
from transact.kernel import Kernel
from transact.kernel.http import SERVER_KEEP_ALIVE_SECONDS
from transact.kernel.settings import load_settings

REPO = Path(__file__).resolve().parents[3]
KERNEL_PATHS = ("/healthz", "/readyz", "/metrics", "/api/openapi.json", "/api/docs")


def site(**overrides: object) -> Site:
    values: dict[str, object] = {
        "upstreams": {s: ["127.0.0.1:9"] for s in {r.service for r in domain.ROUTES}},
        "certificate": "/tmp/cert.pem",
        "certificate_key": "/tmp/key.pem",
        "max_body_bytes": 65536,
        **overrides,
    }
    return Site(**values)  # type: ignore[arg-type]


def maps(conf: str) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """variable -> (source, rows) of every `map` block in the text."""
    found = {}
    blocks = re.findall(r'map "([^"]*)" (\$\w+) \{\n(.*?)\n    \}', conf, re.S)
    for source, variable, body in blocks:
        rows = []
        for line in body.splitlines():
            key, _, value = line.strip().rstrip(";").partition(" ")
            rows.append((key.strip('"'), value.strip('"')))
        found[variable] = (source, rows)
    return found


def lookup(rows: list[tuple[str, str]], subject: str) -> str:
    """nginx's map: regex rows in order, exact rows, then the default."""
    default = ""
    for key, value in rows:
        if key == "default":
            default = value
        elif key.startswith("~"):
            pattern = key.lstrip("~*").replace("(?<", "(?P<")
            if re.search(pattern, subject, re.I if key.startswith("~*") else 0):
                return value
        elif key == subject:
            return value
    return default


def sample_paths() -> list[str]:
    paths = {"/", "/pay", "/pay/x", "/payx", "/api", "/apix", "/api/v1/payments/p1/refund/"}
    for route in domain.ROUTES:
        base = route.prefix.replace(domain.PLACEHOLDER, "x")
        paths.update({base, base + "/", base + "/y", base + "y", base + "/y/z"})
    return sorted(paths)


# --- routes ------------------------------------------------------------------------


def first_location(path: str) -> str | None:
    for location in locations():
        if re.search(location.regex, path):
            return location.service
    return None


@pytest.mark.parametrize("path", sample_paths())
def test_nginx_sends_each_path_to_the_service_that_owns_it(path: str) -> None:
    assert first_location(path) == domain.owner(path)


def served_routes() -> Iterator[tuple[str, str, bool]]:
    """(service, path with ids filled in, is a WebSocket) of every route of every service."""
    kernel = Kernel.from_settings(load_settings(demo=True, data_dir=Path("/nonexistent")))
    for name, factory in runtime.service_factories().items():
        for router in factory(kernel).routers:
            for route in router.routes:
                if isinstance(route, APIRoute | APIWebSocketRoute):
                    path = re.sub(r"\{[^}]+\}", "x", route.path)
                    yield name, path, isinstance(route, APIWebSocketRoute)


def test_every_route_of_every_service_is_routed_to_that_service() -> None:
    wrong = [
        (service, path, domain.owner(path))
        for service, path, _ in served_routes()
        if domain.owner(path) != service
    ]
    assert wrong == []


def test_every_websocket_route_gets_long_timeouts_and_no_rate_limit() -> None:
    sockets = [path for _, path, socket in served_routes() if socket]
    assert sockets
    for path in sockets:
        assert any(domain.matches(p, path) for p in STREAMING_PREFIXES), path


def test_media_legs_of_one_call_hash_to_one_telephony_instance() -> None:
    conf = render(site(upstreams={"telephony": ["10.0.0.1:8000", "10.0.0.2:8000"]}))
    block = conf.split("upstream transact_telephony {", 1)[1].split("}", 1)[0]
    assert f"hash {STICKY_KEYS['telephony']} consistent;" in block
    assert domain.owner("/media/customer") == domain.owner("/media/agent") == "telephony"


def test_nginx_drops_idle_upstream_connections_before_the_services_do() -> None:
    # Otherwise nginx may reuse a connection a service is closing: a POST on it is a 502.
    conf = render(site())
    upstreams = re.findall(r"upstream \w+ \{(.*?)\}", conf, re.S)
    assert upstreams
    for block in upstreams:
        (seconds,) = re.findall(r"keepalive_timeout (\d+)s;", block)
        assert int(seconds) < SERVER_KEEP_ALIVE_SECONDS


def test_a_service_without_upstream_answers_404_at_the_edge() -> None:
    conf = render(site(upstreams={"auth": ["127.0.0.1:9"]}))
    capture = conf.split('location ~ "^/api/v1/payments(?:/|$)" {', 1)[1].split("}", 1)[0]
    assert "return 404;" in capture
    assert "proxy_pass" not in capture


# --- headers -----------------------------------------------------------------------


@pytest.mark.parametrize("path", sample_paths())
def test_header_maps_give_each_path_the_gateways_headers(path: str) -> None:
    conf = render(site())
    found = maps(conf)
    expected = dict(domain.security_headers(path))
    for name, value in domain.FIXED_HEADERS:
        assert f'add_header {name} "{value}" always;' in conf
    for header in domain.PATH_HEADERS:
        variable = next(v for v in found if v.endswith(header.name.lower().replace("-", "_")))
        source, rows = found[variable]
        assert source == "$uri"
        value = lookup(rows, path)
        if header.name in expected:
            assert value == expected[header.name], (path, header.name)
        else:
            # The app's own header passes where the gateway sets none.
            assert value.startswith("$upstream_http_"), (path, header.name)


# --- limits ------------------------------------------------------------------------

REQUESTS = [
    (method, path)
    for method in ("GET", "POST", "PUT", "DELETE", "HEAD")
    for path in [
        *domain.LOGIN_PATHS,
        "/api/v1/auth/login/",
        "/api/v1/auth/loginx",
        "/api/v1/auth/me",
        "/api/v1/payments/p1/submit",
        "/api/v1/payment-links",
        "/api/v1/calls/c1/payments",
        "/api/v1/calls/c1",
        "/pay/card",
    ]
]


@pytest.mark.parametrize(("method", "path"), REQUESTS)
def test_rate_class_maps_put_requests_in_the_gateways_class(method: str, path: str) -> None:
    found = maps(render(site()))
    subject = f"{method}:{path}"
    classes = {
        "login": lookup(found["$transact_in_login"][1], subject) == "1",
        "payment": lookup(found["$transact_in_payment"][1], subject) == "1",
    }
    expected = domain.classify(method, path).name
    assert classes == {"login": expected == "login", "payment": expected == "payment"}


def test_zones_carry_the_gateways_rates_and_bursts() -> None:
    conf = render(site(rate_limit_scale=2.0))
    # 10 a minute, burst 10, doubled: nginx's burst counts the excess over the first one.
    assert "zone=transact_login_ip:10m rate=20r/m;" in conf
    assert "limit_req zone=transact_login_ip burst=19 nodelay;" in conf
    assert "zone=transact_default_ip:10m rate=1200r/m;" in conf


def test_rate_limits_off_means_no_zones() -> None:
    conf = render(site(rate_limit_scale=0))
    assert "limit_req_zone" not in conf
    assert "limit_req zone=" not in conf


def test_the_body_limit_is_the_gateways() -> None:
    conf = render(site(max_body_bytes=12345))
    assert "client_max_body_size 12345;" in conf
    assert "larger than 12345 bytes" in conf


# --- files -------------------------------------------------------------------------


def test_the_checked_in_files_are_what_the_code_renders() -> None:
    for relative, text in deploy.rendered().items():
        path = REPO / "deploy" / relative
        assert path.read_text() == text, f"{path} is stale: run `transact deploy render`"


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    conf = tmp_path / "nginx.conf"
    from transact.cluster import write_self_signed_certificate

    cert, key = write_self_signed_certificate(tmp_path / "tls")
    conf.write_text(
        render(
            site(
                certificate=str(cert), certificate_key=str(key), prefix=str(tmp_path), https_port=1
            )
        )
    )
    checked = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "err.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
