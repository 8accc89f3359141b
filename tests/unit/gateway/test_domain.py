"""The gateway's pure rules: routes, headers, request ids, rate-limit classes, buckets."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transact.gateway import domain
from transact.gateway.domain import (
    AGENT_UI_CSP,
    DEFAULT,
    LOGIN,
    PAY_CSP,
    PAYMENT,
    Route,
    accept_request_id,
    app_may_set,
    buckets_for,
    classify,
    matches,
    owner,
    principal_key,
    request_id_for,
    retry_after,
    security_headers,
    token_bucket,
)

# --- paths and routes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/api/v1/auth", "/api/v1/auth", True),
        ("/api/v1/auth", "/api/v1/auth/login", True),
        ("/api/v1/auth", "/api/v1/auth/", True),
        ("/api/v1/auth", "/api/v1/authority", False),
        ("/api/v1/auth", "/api/v1", False),
        ("/api/v1/calls/{}/payments", "/api/v1/calls/c-1/payments", True),
        ("/api/v1/calls/{}/payments", "/api/v1/calls/c-1/payments/p-2", True),
        ("/api/v1/calls/{}/payments", "/api/v1/calls/c-1/claim", False),
        ("/api/v1/calls/{}/payments", "/api/v1/calls//payments", False),
        ("/pay", "/pay/abc", True),
        ("/pay", "/payments", False),
    ],
)
def test_matches_by_whole_segments(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/auth/login", "auth"),
        ("/api/v1/auth/mfa/verify", "auth"),
        ("/.well-known/jwks.json", "auth"),
        ("/api/v1/admin/users/7", "auth"),
        ("/api/v1/calls", "correlation"),
        ("/api/v1/calls/c-1/claim", "correlation"),
        ("/api/v1/calls/c-1/transcript", "voice"),
        # Whatever no service claims goes to the Agent UI (its page, its files, its 404).
        ("/api/v1/authx", "agent-ui"),
        ("/nowhere", "agent-ui"),
        ("/", "agent-ui"),
        ("/ui/static/app.js", "agent-ui"),
        ("/api/v1/agent-ui/settings", "agent-ui"),
    ],
)
def test_route_table_names_the_owner(path: str, service: str | None) -> None:
    assert owner(path) == service


def test_a_table_without_a_root_route_owns_nothing_unclaimed() -> None:
    table = [Route("/api/v1/auth", "auth")]
    assert owner("/api/v1/authx", table) is None
    assert owner("/", table) is None


def test_the_most_specific_route_wins_whatever_the_order() -> None:
    routes = [
        Route("/api/v1/calls", "correlation"),
        Route("/api/v1/calls/{}/payments", "capture"),
        Route("/api/v1/calls/{}/payments/special", "other"),
    ]
    for table in (routes, list(reversed(routes))):
        assert owner("/api/v1/calls/c-1/payments", table) == "capture"
        assert owner("/api/v1/calls/c-1/payments/special/x", table) == "other"
        assert owner("/api/v1/calls/c-1", table) == "correlation"


def test_a_literal_beats_a_placeholder_of_the_same_length() -> None:
    routes = [Route("/api/v1/{}", "any"), Route("/api/v1/calls", "correlation")]
    for table in (routes, list(reversed(routes))):
        assert owner("/api/v1/calls", table) == "correlation"
        assert owner("/api/v1/other", table) == "any"


# --- security headers --------------------------------------------------------------


def _headers(path: str) -> dict[str, str]:
    pairs = security_headers(path)
    assert len({k.lower() for k, _ in pairs}) == len(pairs)
    return {k.lower(): v for k, v in pairs}


@pytest.mark.parametrize("path", ["/", "/healthz", "/api/v1/calls", "/pay/tok", "/nope"])
def test_every_path_gets_the_baseline_headers(path: str) -> None:
    headers = _headers(path)
    assert headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    csp = headers["content-security-policy"]
    for directive in ("frame-ancestors 'none'", "base-uri 'none'"):
        assert directive in csp


@pytest.mark.parametrize("path", ["/pay/abc", "/pay", "/pay/abc/receipt"])
def test_the_payment_page_gets_the_strict_policy(path: str) -> None:
    csp = _headers(path)["content-security-policy"]
    assert csp == PAY_CSP
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"  # no inline script, no third party
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert "unsafe" not in csp


@pytest.mark.parametrize("path", ["/", "/healthz", "/api/v1/calls", "/payments"])
def test_other_paths_get_the_default_policy(path: str) -> None:
    csp = _headers(path)["content-security-policy"]
    assert csp != PAY_CSP
    assert "object-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/static/app.js"])
def test_the_agent_ui_gets_its_own_policy_and_may_set_it_itself(path: str) -> None:
    csp = _headers(path)["content-security-policy"]
    assert csp == AGENT_UI_CSP
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"  # the page sets its tenant's own
    assert "unsafe" not in csp
    assert app_may_set(path) == {"content-security-policy"}


@pytest.mark.parametrize("path", ["/", "/pay", "/api/v1/calls", "/uix", "/healthz"])
def test_elsewhere_the_gateways_headers_replace_the_apps(path: str) -> None:
    assert app_may_set(path) == frozenset()


def test_api_answers_are_never_cached_and_others_are_left_alone() -> None:
    assert _headers("/api/v1/calls")["cache-control"] == "no-store"
    assert _headers("/api/docs")["cache-control"] == "no-store"
    assert "cache-control" not in _headers("/healthz")
    assert "cache-control" not in _headers("/apiary")


# --- request ids -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "abc-123", "A.b_c-D", "x" * 64, "0" * 64])
def test_a_well_formed_client_request_id_is_kept(value: str) -> None:
    assert accept_request_id(value) == value
    assert request_id_for(value) == value


@pytest.mark.parametrize(
    "value",
    [None, "", "x" * 65, "has space", "new\nline", "tab\t", "semi;colon", "ünï", "a/b", "x\n"],
)
def test_anything_else_is_replaced_by_a_fresh_id(value: str | None) -> None:
    assert accept_request_id(value) is None
    generated = request_id_for(value)
    assert generated != value
    assert accept_request_id(generated) == generated


def test_generated_request_ids_differ() -> None:
    assert len({request_id_for(None) for _ in range(100)}) == 100


# --- rate-limit classes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/api/v1/auth/login", LOGIN),
        ("post", "/api/v1/auth/token", LOGIN),
        ("POST", "/api/v1/auth/launch", LOGIN),
        ("POST", "/api/v1/auth/login/", LOGIN),
        ("POST", "//api/v1/auth//login", LOGIN),
        ("GET", "/api/v1/auth/login", DEFAULT),
        ("POST", "/api/v1/auth/launch-links", DEFAULT),
        ("POST", "/api/v1/auth/logout", DEFAULT),
        ("POST", "/api/v1/auth/login/extra", DEFAULT),
        ("POST", "/api/v1/payments/p-1/submit", PAYMENT),
        ("GET", "/api/v1/payments/p-1", DEFAULT),
        ("POST", "/api/v1/payment-links", PAYMENT),
        ("POST", "/api/v1/calls/c-1/payments", PAYMENT),
        ("GET", "/api/v1/calls", DEFAULT),
        ("POST", "/api/v1/calls/c-1/claim", DEFAULT),
        ("GET", "/api/v1/paymentsx", DEFAULT),
        ("GET", "/healthz", DEFAULT),
    ],
)
def test_classify(method: str, path: str, expected: domain.RateClass) -> None:
    assert classify(method, path) is expected


def test_the_classes_have_the_agreed_limits() -> None:
    assert [(lim.per, lim.per_minute, lim.burst) for lim in LOGIN.limits] == [("ip", 10, 10)]
    assert [(lim.per, lim.per_minute, lim.burst) for lim in PAYMENT.limits] == [
        ("principal", 60, 20)
    ]
    assert [(lim.per, lim.per_minute, lim.burst) for lim in DEFAULT.limits] == [
        ("ip", 600, 200),
        ("principal", 1200, 300),
    ]


def test_principal_key_hashes_the_bearer_token() -> None:
    key = principal_key("Bearer tok-1", None)
    assert key == hashlib.sha256(b"tok-1").hexdigest()[:32]
    assert principal_key("bearer   tok-1 ", None) == key
    assert principal_key("Bearer tok-2", None) != key
    assert key is not None
    assert "tok-1" not in key


def test_principal_key_falls_back_to_the_session_cookie() -> None:
    from_cookie = principal_key(None, "theme=dark; transact_session=s-1; other=x")
    assert from_cookie == hashlib.sha256(b"s-1").hexdigest()[:32]
    assert principal_key("Basic dXNlcjpwYXNz", "transact_session=s-1") == from_cookie
    # A bearer token is preferred when both are sent.
    assert principal_key("Bearer tok-1", "transact_session=s-1") == principal_key(
        "Bearer tok-1", None
    )


@pytest.mark.parametrize(
    ("authorization", "cookie"),
    [
        (None, None),
        ("", ""),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic abc", None),
        (None, "transact_session="),
        (None, "other_session=s-1"),
        (None, "xtransact_session=s-1"),
    ],
)
def test_no_credential_means_no_principal(authorization: str | None, cookie: str | None) -> None:
    assert principal_key(authorization, cookie) is None


def _by_key(buckets: list[domain.Bucket]) -> dict[str, tuple[float, float]]:
    return {b.key: (b.rate, b.burst) for b in buckets}


def test_a_login_takes_from_the_login_bucket_first_then_the_defaults() -> None:
    buckets = buckets_for("POST", "/api/v1/auth/login", "10.0.0.1", None)
    assert [b.key for b in buckets] == ["login:ip:10.0.0.1", "default:ip:10.0.0.1"]
    assert _by_key(buckets)["login:ip:10.0.0.1"] == pytest.approx((10 / 60, 10))
    assert _by_key(buckets)["default:ip:10.0.0.1"] == pytest.approx((10.0, 200))


def test_a_login_is_limited_by_address_whatever_the_credential() -> None:
    one = buckets_for("POST", "/api/v1/auth/login", "10.0.0.1", "p1")
    two = buckets_for("POST", "/api/v1/auth/login", "10.0.0.1", "p2")
    assert one[0].key == two[0].key == "login:ip:10.0.0.1"


def test_payments_are_limited_per_principal() -> None:
    buckets = buckets_for("POST", "/api/v1/payment-links", "10.0.0.1", "p1")
    assert [b.key for b in buckets] == [
        "payment:principal:p1",
        "default:ip:10.0.0.1",
        "default:principal:p1",
    ]
    assert _by_key(buckets)["payment:principal:p1"] == pytest.approx((1.0, 20))
    assert _by_key(buckets)["default:principal:p1"] == pytest.approx((20.0, 300))


def test_an_anonymous_payment_call_is_limited_by_address() -> None:
    buckets = buckets_for("POST", "/api/v1/payments/p-1/cancel", "10.0.0.1", None)
    assert [b.key for b in buckets] == ["payment:ip:10.0.0.1", "default:ip:10.0.0.1"]


def test_ordinary_requests_take_from_the_defaults_only() -> None:
    assert [b.key for b in buckets_for("GET", "/api/v1/calls", "10.0.0.1", None)] == [
        "default:ip:10.0.0.1"
    ]
    assert [b.key for b in buckets_for("GET", "/api/v1/calls", "10.0.0.1", "p1")] == [
        "default:ip:10.0.0.1",
        "default:principal:p1",
    ]


def test_the_scale_multiplies_every_limit() -> None:
    buckets = _by_key(buckets_for("POST", "/api/v1/auth/login", "ip", None, scale=3))
    assert buckets["login:ip:ip"] == pytest.approx((0.5, 30))
    assert buckets["default:ip:ip"] == pytest.approx((30.0, 600))


def test_a_tiny_scale_still_lets_one_request_through() -> None:
    buckets = buckets_for("POST", "/api/v1/auth/login", "ip", None, scale=0.001)
    assert all(b.burst == 1.0 for b in buckets)
    assert all(b.rate > 0 for b in buckets)


@pytest.mark.parametrize("scale", [0, 0.0, -1])
def test_scale_zero_turns_rate_limiting_off(scale: float) -> None:
    assert buckets_for("POST", "/api/v1/auth/login", "ip", "p", scale=scale) == []


@pytest.mark.parametrize(
    ("wait", "seconds"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.01, 2), (5.9, 6), (60.0, 60)]
)
def test_retry_after_is_whole_seconds_rounded_up(wait: float, seconds: int) -> None:
    assert retry_after(wait) == seconds


# --- token bucket arithmetic ----------------------------------------------------------


def test_a_full_bucket_allows_the_burst_then_names_the_wait() -> None:
    tokens = 3.0
    for _ in range(3):
        step = token_bucket(tokens, 0.0, rate=2.0, burst=3.0)
        assert step.wait == 0.0
        tokens = step.tokens
    refused = token_bucket(tokens, 0.0, rate=2.0, burst=3.0)
    assert refused.wait == pytest.approx(0.5)
    assert refused.tokens == pytest.approx(0.0)


def test_the_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    assert token_bucket(0.0, 0.25, rate=2.0, burst=3.0).wait == pytest.approx(0.25)
    assert token_bucket(0.0, 0.5, rate=2.0, burst=3.0) == (pytest.approx(0.0), 0.0)
    assert token_bucket(0.0, 100.0, rate=2.0, burst=3.0).tokens == pytest.approx(2.0)


def test_a_clock_that_steps_back_mints_nothing() -> None:
    assert token_bucket(0.5, -10.0, rate=2.0, burst=3.0).tokens == pytest.approx(0.5)


def test_a_cost_above_one() -> None:
    step = token_bucket(1.0, 0.0, rate=1.0, burst=5.0, cost=3.0)
    assert step.wait == pytest.approx(2.0)
    assert step.tokens == pytest.approx(1.0)  # a refusal takes nothing


_rates = st.floats(min_value=0.01, max_value=1000, allow_nan=False)
_bursts = st.floats(min_value=1, max_value=1000, allow_nan=False)
_gaps = st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=200)


@given(rate=_rates, burst=_bursts, gaps=_gaps)
def test_never_allows_more_than_the_burst_plus_the_refill(
    rate: float, burst: float, gaps: list[float]
) -> None:
    tokens, elapsed, allowed = burst, 0.0, 0
    for gap in gaps:
        step = token_bucket(tokens, gap, rate, burst)
        elapsed += gap
        tokens = step.tokens
        if step.wait == 0.0:
            allowed += 1
        assert 0.0 <= tokens <= burst
    assert allowed <= burst + rate * elapsed + 1e-6


@given(rate=_rates, burst=_bursts, tokens=st.floats(min_value=0, max_value=1))
def test_waiting_the_named_wait_is_enough(rate: float, burst: float, tokens: float) -> None:
    tokens = min(tokens, burst)
    step = token_bucket(tokens, 0.0, rate, burst)
    if step.wait > 0:
        assert token_bucket(step.tokens, step.wait * (1 + 1e-9), rate, burst).wait == 0.0
        # Below float resolution (a wait of 1e-16 s) half a wait rounds to a whole token.
        if step.wait > 1e-9:
            assert token_bucket(step.tokens, step.wait * 0.5, rate, burst).wait > 0
