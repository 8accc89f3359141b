"""The front door's rules: routes, security headers, request ids and rate-limit classes.

Pure functions over plain values. The in-process middleware (`api.py`) applies them
to every request; the nginx configuration of a distributed deployment states the
same rules, so change both together.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

# The arithmetic lives with the cache port, whose backends run it atomically (the
# kernel cannot import a service); the gateway's rules name it here.
from transact.kernel.cache.base import BucketStep as BucketStep
from transact.kernel.cache.base import token_bucket as token_bucket

# --- paths -----------------------------------------------------------------------

PLACEHOLDER = "{}"  # in a pattern: any one path segment (an id)


def _segments(path: str) -> list[str]:
    # Empty segments are dropped, so `/a//b/` is classified as `/a/b`: a doubled or
    # trailing slash must not slip past a stricter rule.
    return [s for s in path.split("/") if s]


def matches(pattern: str, path: str) -> bool:
    """True when `path` is `pattern` or lies under it, segment by segment.

    `/api/v1/auth` covers `/api/v1/auth/login` but not `/api/v1/authority`.
    """
    want = _segments(pattern)
    have = _segments(path)
    if len(have) < len(want):
        return False
    return all(w in (PLACEHOLDER, h) for w, h in zip(want, have, strict=False))


# --- routes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    prefix: str  # a pattern for `matches`
    service: str


# Which service owns which paths. In one process every router is mounted on the one
# app, so this table is what a distributed deployment's proxy is built from; add a
# row when a service gains a path of its own. The most specific prefix wins.
ROUTES: tuple[Route, ...] = (
    Route("/api/v1/auth", "auth"),
    Route("/api/v1/admin", "auth"),
    Route("/api/v1/audit", "auth"),
    Route("/.well-known/jwks.json", "auth"),
    Route("/api/v1/calls", "correlation"),
    Route("/api/v1/calls/{}/payments", "capture"),
    Route("/api/v1/payments", "capture"),
    Route("/api/v1/capture", "capture"),
    # Money movement after authorization is the PSP adapter's, under the same payment.
    Route("/api/v1/payments/{}/attempts", "psp"),
    Route("/api/v1/payments/{}/capture", "psp"),
    Route("/api/v1/payments/{}/refund", "psp"),
    Route("/api/v1/payments/{}/void", "psp"),
    Route("/api/v1/cards", "psp"),
    Route("/api/v1/psp", "psp"),
    Route("/api/v1/psp/webhook", "psp-webhooks"),
    Route("/media", "telephony"),
    Route("/ws/agent", "notifications"),
    Route("/api/v1/payment-links", "remote"),
    Route("/pay", "remote"),
    Route("/api/v1/communications", "communications"),
    Route("/api/v1/ivr", "ivr"),
    Route("/api/v1/calls/{}/ivr", "ivr"),  # an agent hands the call to a flow
    Route("/api/v1/voice", "voice"),
    Route("/api/v1/calls/{}/transcript", "voice"),  # a call's redacted transcript
    Route("/api/v1/reports", "reporting"),
    Route("/dev/outbox", "communications"),
    # The Agent UI answers what nothing more specific claims: `/` (which sends the browser
    # on to its page at `/ui/`), its files, and a 404 envelope for anything unknown.
    Route("/", "agent-ui"),
    Route("/api/v1/agent-ui", "agent-ui"),
)


def owner(path: str, routes: Iterable[Route] = ROUTES) -> str | None:
    """The service that answers `path`, or None when no service claims it."""
    best: Route | None = None
    for route in routes:
        if matches(route.prefix, path) and (
            best is None or _specificity(route.prefix) > _specificity(best.prefix)
        ):
            best = route
    return None if best is None else best.service


def _specificity(pattern: str) -> tuple[int, int]:
    segments = _segments(pattern)
    # More segments first; at equal length a literal beats a placeholder.
    return len(segments), sum(s != PLACEHOLDER for s in segments)


# --- security headers ------------------------------------------------------------

HSTS = "max-age=63072000; includeSubDomains"
# The hosted payment page takes card numbers: nothing but our own files may run,
# style, load or be posted to there, and no other site may frame it.
PAY_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# Everything else: no framing, no plugins, no <base> rewriting. Kept loose enough for
# the API documentation page, which loads Swagger UI from its CDN with an inline
# script; a page that needs more should get its own row, as /pay/ has.
DEFAULT_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'none'; form-action 'self'"
# The Agent UI: its own scripts, styles and images (a QR code comes as a data: image),
# API calls and its push socket on this site, nothing else. Its page replaces this with
# the same policy whose frame-ancestors lists the origins its tenant allows to embed it
# (a CRM); this value stands wherever the app set none (its files, its errors).
AGENT_UI_PREFIX = "/ui"
AGENT_UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'"
)
API_CACHE_CONTROL = "no-store"


@dataclass(frozen=True)
class PathHeader:
    """A header whose value depends on the path: the first rule whose prefix matches wins,
    `default` otherwise (None: the header is not set). Data, not code, so the nginx
    configuration of a distributed deployment is rendered from the same rules.

    Under an `app_may_set` prefix a value the app set itself stands, and the rule's
    applies only when the app set none: the Agent UI's page frames for its tenant's
    origins, which only the app knows.
    """

    name: str
    rules: tuple[tuple[str, str], ...]  # (prefix pattern, value)
    default: str | None
    app_may_set: tuple[str, ...] = ()

    def value(self, path: str) -> str | None:
        return next((v for prefix, v in self.rules if matches(prefix, path)), self.default)

    def app_may_set_at(self, path: str) -> bool:
        return any(matches(prefix, path) for prefix in self.app_may_set)


FIXED_HEADERS: tuple[tuple[str, str], ...] = (
    ("Strict-Transport-Security", HSTS),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
PATH_HEADERS: tuple[PathHeader, ...] = (
    PathHeader(
        "Content-Security-Policy",
        (("/pay", PAY_CSP), (AGENT_UI_PREFIX, AGENT_UI_CSP)),
        DEFAULT_CSP,
        app_may_set=(AGENT_UI_PREFIX,),
    ),
    # API answers carry tokens, payment state and personal data: never to a cache.
    PathHeader("Cache-Control", (("/api", API_CACHE_CONTROL),), None),
)


def security_headers(path: str) -> list[tuple[str, str]]:
    """The headers every response to `path` carries, replacing any the app set."""
    headers = list(FIXED_HEADERS)
    for header in PATH_HEADERS:
        value = header.value(path)
        if value is not None:
            headers.append((header.name, value))
    return headers


def app_may_set(path: str) -> frozenset[str]:
    """The (lower-case) names of the headers whose value the app may set itself on
    `path`; the gateway's value for them applies only when it did not."""
    return frozenset(h.name.lower() for h in PATH_HEADERS if h.app_may_set_at(path))


# --- request ids -----------------------------------------------------------------

REQUEST_ID_PATTERN = r"[A-Za-z0-9._-]{1,64}"  # nginx checks the same pattern
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


def accept_request_id(value: str | None) -> str | None:
    """A client's `X-Request-ID` if it is safe to log and echo, else None."""
    if value is None or not _REQUEST_ID.fullmatch(value):
        return None
    return value


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_for(value: str | None) -> str:
    return accept_request_id(value) or new_request_id()


# --- rate limits -----------------------------------------------------------------

SESSION_COOKIE = "transact_session"  # the Agent UI's session (set by auth)
PRINCIPAL_KEY_HEX = 32  # 128 bits of SHA-256: no collisions in practice, short keys


@dataclass(frozen=True)
class Limit:
    per: Literal["ip", "principal"]
    per_minute: float
    burst: float


@dataclass(frozen=True)
class RateClass:
    name: str
    limits: tuple[Limit, ...]


# Guessing passwords, client secrets and launch codes: a handful a minute per address.
LOGIN = RateClass("login", (Limit("ip", 10, 10),))
# Money movement and card capture: per caller, generous for a person, tight for a script.
PAYMENT = RateClass("payment", (Limit("principal", 60, 20),))
DEFAULT = RateClass("default", (Limit("ip", 600, 200), Limit("principal", 1200, 300)))

LOGIN_PATHS = (
    "/api/v1/auth/login",
    "/api/v1/auth/token",
    "/api/v1/auth/launch",
    # One-time codes are guessable too.
    "/api/v1/auth/mfa/enroll",
    "/api/v1/auth/mfa/verify",
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PAYMENT_PREFIXES = ("/api/v1/payments", "/api/v1/payment-links", "/api/v1/calls/{}/payments")


def classify(method: str, path: str) -> RateClass:
    """The stricter class a request falls in, if any; DEFAULT otherwise."""
    if method.upper() == "POST" and any(_segments(p) == _segments(path) for p in LOGIN_PATHS):
        return LOGIN
    # Reads (an Agent UI refreshing a payment) stay in the default class.
    if method.upper() not in SAFE_METHODS and any(matches(p, path) for p in PAYMENT_PREFIXES):
        return PAYMENT
    return DEFAULT


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _cookie(cookie_header: str | None, name: str) -> str | None:
    found = None
    for part in (cookie_header or "").split(";"):
        key, sep, value = part.strip().partition("=")
        # The last one wins, as in the cookie parser auth reads the session with.
        if sep and key.strip() == name and value.strip():
            found = value.strip()
    return found


def principal_key(authorization: str | None, cookie_header: str | None) -> str | None:
    """A stable, non-reversible key for the caller's credential, or None for none.

    The gateway does not verify the credential (auth does); a forged one only buys
    its own bucket, and every request also spends from its address's bucket.
    """
    credential = _bearer(authorization) or _cookie(cookie_header, SESSION_COOKIE)
    if credential is None:
        return None
    return hashlib.sha256(credential.encode()).hexdigest()[:PRINCIPAL_KEY_HEX]


@dataclass(frozen=True)
class Bucket:
    key: str
    rate: float  # tokens a second
    burst: float


def buckets_for(
    method: str, path: str, ip: str, principal: str | None, scale: float = 1.0
) -> list[Bucket]:
    """The buckets a request takes one token from, the stricter class's first.

    Every request spends from the default buckets too, so a login storm also counts
    against the address's overall allowance. A principal limit with no principal falls
    back to the address for a stricter class (an anonymous payment call is limited all
    the same) and is skipped for the default class (the address limit covers it).
    `scale` multiplies every rate and burst; 0 turns rate limiting off.
    """
    if scale <= 0:
        return []
    rate_class = classify(method, path)
    classes = [rate_class] if rate_class is DEFAULT else [rate_class, DEFAULT]
    found = []
    for cls in classes:
        for limit in cls.limits:
            if limit.per == "ip":
                who = f"ip:{ip}"
            elif principal is not None:
                who = f"principal:{principal}"
            elif cls is not DEFAULT:
                who = f"ip:{ip}"
            else:
                continue
            found.append(
                Bucket(
                    key=f"{cls.name}:{who}",
                    rate=limit.per_minute / 60.0 * scale,
                    # Below one token nothing would ever pass.
                    burst=max(1.0, limit.burst * scale),
                )
            )
    return found


def retry_after(wait: float) -> int:
    """Whole seconds for `Retry-After`: rounded up, and never 0 (that invites a retry now)."""
    return max(1, math.ceil(wait))
