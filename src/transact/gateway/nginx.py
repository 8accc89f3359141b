"""The front door of a distributed deployment: an nginx configuration rendered from `domain`.

In one process the gateway middleware applies `domain`'s rules; with every service in
its own process nginx is the gateway, and this module writes the same rules in nginx's
words, so the two cannot drift apart:

* which service answers which path: one regex location per row of `ROUTES`, most
  specific first (nginx takes the first regex that matches, `owner()` the most specific);
* security headers: `FIXED_HEADERS` on every answer, `PATH_HEADERS` through a map on
  the path, upstream copies hidden (the gateway replaces what the app set);
* the body limit (`client_max_body_size`), the rate classes (`limit_req_zone` per
  class and per key kind, keys computed by maps so that a request outside a class
  spends nothing there), request ids, and the JSON error envelope for the answers
  nginx gives itself (404, 413, 429, 503).

Two things nginx does that the middleware does not need to: WebSocket upgrades with
long timeouts on the streaming paths, and keeping both media legs of one call on one
telephony instance (they are bridged in that process's memory): `hash $arg_call`,
which needs the platform to put the call id in the stream URL's query.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

from jinja2 import Environment, StrictUndefined

from transact.gateway import domain
from transact.gateway.domain import (
    DEFAULT,
    FIXED_HEADERS,
    LOGIN_PATHS,
    PATH_HEADERS,
    PAYMENT_PREFIXES,
    PLACEHOLDER,
    REQUEST_ID_PATTERN,
    ROUTES,
    SAFE_METHODS,
    SESSION_COOKIE,
    Limit,
    RateClass,
    Route,
)

# Paths whose WebSocket upgrades hold a connection for a whole call or shift: no rate
# limit on the upgrade (the middleware never sees WebSockets) and hour-long timeouts.
# A test checks that every WebSocket route of every service lies under one of these.
STREAMING_PREFIXES = ("/media", "/ws/agent")
STREAM_TIMEOUT_SECONDS = 3600

# Services whose instances hold state a request must find again. Telephony bridges the
# two legs of a call in one process's memory, so both legs hash on the call id, which
# the telephony platform must put in the stream URL (`/media/customer?call=CA...`,
# `/media/agent?call=CA...`). Without it every leg hashes alike: all calls go to one
# instance, which is correct, just not spread.
STICKY_KEYS: Mapping[str, str] = {"telephony": "$arg_call"}

# The answers nginx gives itself, in the app's error envelope.
NOT_FOUND_MESSAGE = "Not Found"
UNAVAILABLE_MESSAGE = "a backend is unavailable; try again shortly"


@dataclass(frozen=True)
class Site:
    """Where the processes are and the limits to apply: everything a rendering varies by."""

    upstreams: Mapping[str, Sequence[str]]  # service -> ["host:port", ...]
    certificate: str
    certificate_key: str
    max_body_bytes: int
    rate_limit_scale: float = 1.0
    https_port: int = 8443
    http_port: int | None = 8080
    public_https_port: int = 443  # where the plain-HTTP redirect sends people
    # A local run keeps pid, logs and temporary files under one directory.
    prefix: str | None = None
    worker_processes: str = "auto"
    listen_address: str = ""  # "" for every interface, "127.0.0.1" for a local run


@dataclass(frozen=True)
class Location:
    regex: str
    service: str
    upstream: str | None  # None: answered by nginx itself (no service claims the path)
    streaming: bool


@dataclass(frozen=True)
class Zone:
    name: str
    key: str  # the nginx variable holding the key; empty means "not counted here"
    per_minute: int
    burst: int  # nginx lets burst + 1 through at once, a token bucket `burst`


@dataclass
class _Maps:
    """nginx `map` blocks in the order they are written; each is (source, variable, rows)."""

    blocks: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)

    def add(self, source: str, variable: str, rows: Iterable[tuple[str, str]]) -> None:
        self.blocks.append((source, variable, [(_match(key), value) for key, value in rows]))


def _match(key: str) -> str:
    """A map row's left side: regexes quoted (they hold braces and `;`), words as they are."""
    return f'"{key}"' if key.startswith("~") else key


# --- paths -------------------------------------------------------------------------


def path_regex(pattern: str) -> str:
    """A PCRE for `domain.matches(pattern, path)`: the pattern or anything under it."""
    segments = [s for s in pattern.split("/") if s]
    if not segments:
        return "^/"
    parts = ["[^/]+" if s == PLACEHOLDER else re.escape(s) for s in segments]
    return "^/" + "/".join(parts) + "(?:/|$)"


def exact_path_regex(path: str) -> str:
    """A PCRE for "this path, perhaps with a trailing slash" (nginx merges doubled ones)."""
    segments = [re.escape(s) for s in path.split("/") if s]
    return "^/" + "/".join(segments) + "/?$"


def upstream_name(service: str) -> str:
    return "transact_" + service.replace("-", "_")


def locations(
    routes: Sequence[Route] = ROUTES, served: Iterable[str] | None = None
) -> list[Location]:
    """One location per route, most specific first, as `domain.owner` decides.

    `served`: the services that have upstreams; a route to any other is answered 404,
    as the one-process app answers a path whose router is not mounted.
    """
    available = set(served) if served is not None else {r.service for r in routes}
    # sorted() is stable: at equal specificity the table's order decides, as in owner().
    ordered = sorted(routes, key=lambda r: domain._specificity(r.prefix), reverse=True)
    return [
        Location(
            regex=path_regex(route.prefix),
            service=route.service,
            upstream=upstream_name(route.service) if route.service in available else None,
            streaming=any(domain.matches(p, route.prefix) for p in STREAMING_PREFIXES),
        )
        for route in ordered
    ]


# --- rate limits -------------------------------------------------------------------


def _class_rows(rate_class: RateClass) -> list[tuple[str, str]]:
    """Map rows on "$request_method:$uri" that put a request in `rate_class` (value 1)."""
    if rate_class.name == "login":
        alternatives = "|".join(exact_path_regex(p)[1:] for p in LOGIN_PATHS)
        return [(f"~^POST:(?:{alternatives})", "1")]
    if rate_class.name == "payment":
        safe = "|".join(sorted(SAFE_METHODS))
        prefixes = "|".join(path_regex(p)[1:] for p in PAYMENT_PREFIXES)
        return [(f"~^(?!(?:{safe}):)[A-Z]+:(?:{prefixes})", "1")]
    raise ValueError(f"no nginx spelling for rate class {rate_class.name!r}")


def rate_classes() -> list[RateClass]:
    """The stricter classes first, then DEFAULT, which every request spends from."""
    return [domain.LOGIN, domain.PAYMENT, DEFAULT]


def _scaled(limit: Limit, scale: float) -> tuple[int, int]:
    per_minute = max(1, round(limit.per_minute * scale))
    burst = max(1.0, limit.burst * scale)
    return per_minute, max(0, math.ceil(burst) - 1)


def _rate_maps(maps: _Maps, scale: float) -> list[Zone]:
    """The maps that compute each zone's key, and the zones; none when scale is 0."""
    if scale <= 0:
        return []
    streaming = [(f"~{path_regex(p)}", "1") for p in STREAMING_PREFIXES]
    maps.add("$uri", "$transact_streaming", [*streaming, ("default", "0")])
    # A WebSocket upgrade on a streaming path is not limited (the middleware never sees it).
    maps.add(
        "$transact_streaming|$http_upgrade",
        "$transact_rl_exempt",
        [("~^1\\|.", "1"), ("default", "0")],
    )
    maps.add(
        "$http_authorization",
        "$transact_bearer",
        [("~*^\\s*bearer\\s+(?<transact_token>\\S.*?)\\s*$", "$transact_token")],
    )
    maps.add(
        "$transact_bearer",
        "$transact_principal",
        [('""', f"$cookie_{SESSION_COOKIE}"), ("default", "$transact_bearer")],
    )
    zones = []
    for rate_class in rate_classes():
        member = "1"
        if rate_class is not DEFAULT:
            member = f"$transact_in_{rate_class.name}"
            maps.add("$request_method:$uri", member, [*_class_rows(rate_class), ("default", "0")])
        for limit in rate_class.limits:
            name = f"transact_{rate_class.name}_{limit.per}"
            key = f"${name}"
            source = f"$transact_rl_exempt|{member}|$transact_principal"
            if limit.per == "ip":
                rows = [("~^0\\|1\\|", "$binary_remote_addr")]
            else:
                capture = f"{name}_p"
                rows = [(f"~^0\\|1\\|(?<{capture}>.+)$", f"p:${capture}")]
                if rate_class is not DEFAULT:
                    # No credential: a stricter class falls back to the address.
                    rows.append(('"0|1|"', "i:$binary_remote_addr"))
            maps.add(source, key, rows)
            per_minute, burst = _scaled(limit, scale)
            zones.append(Zone(name, key, per_minute, burst))
    retry = [
        (row, str(_retry_after(rate_class, scale)))
        for rate_class in rate_classes()
        if rate_class is not DEFAULT
        for row, _ in _class_rows(rate_class)
    ]
    maps.add(
        "$request_method:$uri",
        "$transact_retry_after",
        [*retry, ("default", str(_retry_after(DEFAULT, scale)))],
    )
    return zones


def _retry_after(rate_class: RateClass, scale: float) -> int:
    """Seconds until the class's slowest bucket holds a token again (the middleware
    computes it per request; nginx does not say which zone refused)."""
    slowest = min(max(1, round(limit.per_minute * scale)) for limit in rate_class.limits)
    return domain.retry_after(60.0 / slowest)


# --- headers -----------------------------------------------------------------------


def _header_variable(name: str) -> str:
    return "$transact_h_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _header_maps(maps: _Maps) -> list[tuple[str, str]]:
    """(header, value or variable) for every security header, path rules through maps."""
    headers = [(name, _quote(value)) for name, value in FIXED_HEADERS]
    for header in PATH_HEADERS:
        variable = _header_variable(header.name)
        upstream = "$upstream_http_" + re.sub(r"[^a-z0-9]+", "_", header.name.lower())
        rows = []
        for index, prefix in enumerate(header.app_may_set):
            # The app's own value where it may set one, ours when it sent none.
            own = f"{variable}_app{index}"
            ours = header.value(prefix)
            maps.add(upstream, own, [('""', _quote(ours or "")), ("default", upstream)])
            rows.append((f"~{path_regex(prefix)}", own))
        rows += [
            (f"~{path_regex(prefix)}", _quote(value))
            for prefix, value in header.rules
            if prefix not in header.app_may_set
        ]
        # No default: the app's own header passes (nginx hides it to replace it elsewhere).
        rows.append(("default", upstream if header.default is None else _quote(header.default)))
        maps.add("$uri", variable, rows)
        headers.append((header.name, variable))
    return headers


def _quote(value: str) -> str:
    if any(c in value for c in '"\\$\n'):
        raise ValueError(f"cannot write {value!r} in nginx's double quotes")
    return f'"{value}"'


def _envelope(code: str, message: str) -> str:
    """The app's error body, compact, inside nginx single quotes."""
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":"))
    if "'" in body or "\\" in body:
        raise ValueError(f"cannot write {body!r} in nginx's single quotes")
    return f"'{body}'"


# --- the whole file ----------------------------------------------------------------


def render(site: Site, routes: Sequence[Route] = ROUTES) -> str:
    """The nginx.conf for `site`."""
    missing = sorted({r.service for r in routes} - set(site.upstreams))
    maps = _Maps()
    maps.add(
        "$http_x_request_id",
        "$transact_request_id",
        [(f"~^{REQUEST_ID_PATTERN}$", "$http_x_request_id"), ("default", "$request_id")],
    )
    maps.add("$http_upgrade", "$transact_connection", [('""', '""'), ("default", "upgrade")])
    headers = _header_maps(maps)
    zones = _rate_maps(maps, site.rate_limit_scale)
    template = _environment().from_string(
        resources.files("transact.gateway").joinpath("nginx.conf.j2").read_text()
    )
    listen = f"{site.listen_address}:" if site.listen_address else ""
    text = template.render(
        site=site,
        listen=listen,
        maps=maps.blocks,
        zones=zones,
        headers=headers,
        hidden=sorted({name for name, _ in headers} | {"X-Request-ID"}),
        upstreams=[
            (upstream_name(service), servers, STICKY_KEYS.get(service))
            for service, servers in sorted(site.upstreams.items())
        ],
        locations=locations(routes, served=site.upstreams),
        not_served=missing,
        stream_timeout=STREAM_TIMEOUT_SECONDS,
        redirect_port="" if site.public_https_port == 443 else f":{site.public_https_port}",
        not_found=_envelope("not_found", NOT_FOUND_MESSAGE),
        too_large=_envelope(
            "payload_too_large", f"the request body is larger than {site.max_body_bytes} bytes"
        ),
        unavailable=_envelope("unavailable", UNAVAILABLE_MESSAGE),
        too_many_prefix='{"error":{"code":"too_many_requests","message":"too many requests; '
        "try again in ",
    )
    return text if text.endswith("\n") else text + "\n"


def _environment() -> Environment:
    # An undefined name is an error, not a blank.
    return Environment(
        undefined=StrictUndefined,
        autoescape=False,  # noqa: S701  (an nginx configuration, not HTML)
        keep_trailing_newline=True,
        trim_blocks=True,
    )
