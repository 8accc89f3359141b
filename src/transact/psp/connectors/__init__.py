"""PSP connectors: one module per provider, all speaking `base.Connector`.

`make(name, base_url=..., credentials=...)` builds one by name. Credentials are
the provider's secrets; `options` are the non-secret settings. Unknown names are
refused, so a typo in configuration is an error, not a silently ignored key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from transact.psp.connectors.adyen import DEFAULT_RETURN_URL, AdyenConnector
from transact.psp.connectors.base import (
    Card,
    Connector,
    DeclineCode,
    HttpCall,
    Order,
    Outcome,
    PspResult,
)
from transact.psp.connectors.checkout import CheckoutConnector
from transact.psp.connectors.sandbox import SandboxConnector
from transact.psp.connectors.stripe import StripeConnector

__all__ = [
    "CONNECTORS",
    "AdyenConnector",
    "Card",
    "CheckoutConnector",
    "Connector",
    "DeclineCode",
    "HttpCall",
    "Order",
    "Outcome",
    "PspResult",
    "SandboxConnector",
    "StripeConnector",
    "make",
]

CONNECTORS: dict[str, type] = {
    "sandbox": SandboxConnector,
    "stripe": StripeConnector,
    "adyen": AdyenConnector,
    "checkout": CheckoutConnector,
}

# name -> (required credentials, optional credentials, options)
_SETTINGS: dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {
    "sandbox": (frozenset(), frozenset({"api_key"}), frozenset()),
    "stripe": (frozenset({"secret_key"}), frozenset(), frozenset({"api_version", "return_url"})),
    "adyen": (
        frozenset({"api_key", "merchant_account"}),
        frozenset(),
        frozenset({"return_url", "status_query", "verification_currency"}),
    ),
    "checkout": (
        frozenset({"secret_key"}),
        frozenset(),
        frozenset({"processing_channel_id", "verification_currency"}),
    ),
}


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


def make(
    name: str,
    *,
    base_url: str,
    credentials: Mapping[str, str],
    options: Mapping[str, str] | None = None,
) -> Connector:
    """Build the connector called `name`, sending to `base_url`.

    Raises ValueError for an unknown connector, a missing or empty credential,
    or a credential/option the connector does not take. Messages name keys,
    never values.
    """
    if name not in CONNECTORS:
        known = ", ".join(sorted(CONNECTORS))
        raise ValueError(f"unknown PSP connector {name!r} (known: {known})")
    if not base_url:
        raise ValueError(f"{name}: a base URL is required")
    required, optional, allowed_options = _SETTINGS[name]
    missing = sorted(k for k in required if not credentials.get(k))
    if missing:
        raise ValueError(f"{name}: missing credentials: {', '.join(missing)}")
    extra = sorted(set(credentials) - required - optional)
    if extra:
        raise ValueError(f"{name}: unexpected credentials: {', '.join(extra)}")
    opts = dict(options or {})
    unknown = sorted(set(opts) - allowed_options)
    if unknown:
        raise ValueError(f"{name}: unknown options: {', '.join(unknown)}")
    builders: dict[str, Callable[[], Connector]] = {
        "sandbox": lambda: SandboxConnector(base_url, api_key=credentials.get("api_key") or None),
        "stripe": lambda: StripeConnector(
            credentials["secret_key"],
            base_url,
            **{k: opts[k] for k in ("api_version", "return_url") if k in opts},
        ),
        "adyen": lambda: AdyenConnector(
            credentials["api_key"],
            credentials["merchant_account"],
            base_url,
            return_url=opts.get("return_url") or DEFAULT_RETURN_URL,
            status_query=_flag(opts.get("status_query", "false")),
            verification_currency=opts.get("verification_currency", "EUR"),
        ),
        "checkout": lambda: CheckoutConnector(
            credentials["secret_key"],
            base_url,
            processing_channel_id=opts.get("processing_channel_id") or None,
            verification_currency=opts.get("verification_currency", "GBP"),
        ),
    }
    return builders[name]()
