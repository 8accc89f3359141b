"""The Agent UI's rules, free of I/O: a tenant's UI settings and the page's security policy.

The settings drive the agent's start menu (which ways to pay are offered, which is
preselected, which currencies) and say which sites may frame the UI (a tenant's CRM or
contact-centre desktop). The page's Content-Security-Policy is built here from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from transact.contracts.money import currency_exponent

# Ways to take a payment, in the order the start menu lists them.
KEYPAD: Final = "keypad"
SPEECH: Final = "speech"
LINK_SMS: Final = "link_sms"
LINK_EMAIL: Final = "link_email"
LINK_CHAT: Final = "link_chat"
METHODS: Final = (KEYPAD, SPEECH, LINK_SMS, LINK_EMAIL, LINK_CHAT)
LINK_METHODS: Final = frozenset({LINK_SMS, LINK_EMAIL, LINK_CHAT})

MAX_ORIGINS: Final = 10
MAX_CURRENCIES: Final = 20
MAX_ORIGIN_LENGTH: Final = 200
_HOST: Final = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")
_IPV6: Final = re.compile(r"^\[[0-9a-f:.]+\]$")

# The page's policy without its frame-ancestors, which is the tenant's: our own scripts,
# styles and images only (a QR code comes as a data: image), and API calls and the push
# socket on this site (CSP Level 3 'self' covers ws: and wss: to the same host).
PAGE_POLICY: Final = (
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "object-src 'none'",
)


NOBODY: Final = "'none'"


class InvalidSettings(ValueError):
    """Settings an admin sent that cannot be used; the message says why."""


@dataclass(frozen=True)
class UiSettings:
    methods: tuple[str, ...] = (KEYPAD, LINK_SMS, LINK_EMAIL, LINK_CHAT)
    default_method: str = KEYPAD
    currencies: tuple[str, ...] = ("GBP",)
    default_currency: str = "GBP"
    frame_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_methods(self.methods, self.default_method)
        check_currencies(self.currencies, self.default_currency)
        object.__setattr__(self, "frame_origins", check_origins(self.frame_origins))

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "default_method": self.default_method,
            "currencies": list(self.currencies),
            "default_currency": self.default_currency,
            "frame_origins": list(self.frame_origins),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UiSettings:
        defaults = cls()
        return cls(
            methods=tuple(_strings(data.get("methods", defaults.methods), "methods")),
            default_method=str(data.get("default_method", defaults.default_method)),
            currencies=tuple(_strings(data.get("currencies", defaults.currencies), "currencies")),
            default_currency=str(data.get("default_currency", defaults.default_currency)),
            frame_origins=tuple(
                _strings(data.get("frame_origins", defaults.frame_origins), "frame_origins")
            ),
        )

    def public(self) -> dict[str, Any]:
        """What every signed-in user of the tenant may read: the settings, plus each
        currency's minor-unit digits so the page converts "12.50" without a table."""
        return {
            **self.to_dict(),
            "exponents": {code: currency_exponent(code) for code in self.currencies},
        }


def _strings(value: object, name: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidSettings(f"{name} must be a list of strings")
    return list(value)


def check_methods(methods: Iterable[str], default: str) -> None:
    chosen = list(methods)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise InvalidSettings(f"unknown methods {unknown}; methods are {', '.join(METHODS)}")
    if not chosen or len(set(chosen)) != len(chosen):
        raise InvalidSettings("methods must name at least one method, each once")
    if default not in chosen:
        raise InvalidSettings("default_method must be one of methods")


def check_currencies(currencies: Iterable[str], default: str) -> None:
    chosen = list(currencies)
    if not chosen or len(chosen) > MAX_CURRENCIES or len(set(chosen)) != len(chosen):
        raise InvalidSettings(f"currencies must list 1-{MAX_CURRENCIES} codes, each once")
    unknown = [c for c in chosen if currency_exponent(c) is None]
    if unknown:
        raise InvalidSettings(f"not ISO 4217 currency codes: {unknown}")
    if default not in chosen:
        raise InvalidSettings("default_currency must be one of currencies")


def check_origin(text: str) -> str:
    """An origin as CSP `frame-ancestors` needs it, `scheme://host[:port]`, normalized
    (lower case, the scheme's default port left out). Anything else is refused rather
    than guessed at: a path, query, user name, wildcard or other scheme."""
    if len(text) > MAX_ORIGIN_LENGTH:
        raise InvalidSettings("an origin is at most 200 characters")
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise InvalidSettings(f"not an origin: {text!r}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http"):
        raise InvalidSettings("an origin starts with https:// (or http://)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise InvalidSettings(f"an origin is scheme://host[:port] only, not {text!r}")
    shown = f"[{host}]" if ":" in host else host
    if not (_HOST.match(shown) or _IPV6.match(shown)):
        raise InvalidSettings(f"not a host name: {text!r}")
    default_port = 443 if parts.scheme == "https" else 80
    suffix = "" if port in (None, default_port) else f":{port}"
    return f"{parts.scheme}://{shown}{suffix}"


def check_origins(origins: Iterable[str]) -> tuple[str, ...]:
    found: list[str] = []
    for origin in origins:
        normal = check_origin(origin)
        if normal not in found:
            found.append(normal)
    if len(found) > MAX_ORIGINS:
        raise InvalidSettings(f"at most {MAX_ORIGINS} frame origins")
    return tuple(found)


def frame_ancestors(origins: Iterable[str]) -> str:
    """Who may frame the page: the tenant's origins, or nobody."""
    allowed = " ".join(origins) or NOBODY
    return f"frame-ancestors {allowed}"


def page_csp(origins: Iterable[str]) -> str:
    return "; ".join((*PAGE_POLICY, frame_ancestors(origins)))


# --- the launch link's query --------------------------------------------------------

MAX_TENANT_NAME: Final = 64


def tenant_hint(query: Mapping[str, str]) -> str | None:
    """The tenant a page load names (`/?tenant=T&username=U&launch=...`, as auth's launch
    links do), used only to pick whose frame origins apply before anyone signs in."""
    name = query.get("tenant", "").strip()
    return name if 0 < len(name) <= MAX_TENANT_NAME else None
