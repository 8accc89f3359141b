"""What the connectors share beyond the interface: transport-level verdicts and scrubbing.

Nothing here knows a provider. Each connector passes its own field names and
its own reading of the provider's status codes; these helpers only keep the
four modules from drifting apart on the parts that must not differ (what "may
retry elsewhere" means for a bare HTTP status, how a transcript is cleaned).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from transact.kernel.sensitive import MASK, mask_pan, redact_card_numbers
from transact.psp.connectors.base import DeclineCode, HttpCall, Outcome, PspResult

# Every brand the capture service recognises, by its lowercase name.
ALL_BRANDS = frozenset(
    {"visa", "mastercard", "amex", "discover", "diners", "jcb", "unionpay", "maestro"}
)

# Header names that carry a provider secret; a transcript never keeps their values.
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "proxy-authorization"})

# Field names that hold a card number, for any provider: masked to BIN + last 4
# (what may be displayed), never kept whole.
PAN_FIELDS = frozenset({"number", "card_number", "cardnumber", "pan", "account_number"})


def http_error(
    status: int,
    message: str | None,
    *,
    psp_reference: str | None = None,
) -> PspResult:
    """The verdict for an answer that is not a provider result, from the status alone.

    `may_retry_elsewhere` is True only where the status proves nothing was done:
    the request was refused before processing (4xx except 409, and 429). Every 5xx,
    503 included, may come after the provider acted (Stripe documents server errors
    as indeterminate; a gateway in front of a PSP answers 503 for a request that
    timed out behind it), so it stays False and the core asks for the status by our
    reference first.
    """
    if status == 429:
        return PspResult(
            Outcome.ERROR,
            psp_reference,
            DeclineCode.RATE_LIMITED,
            message or "rate limited",
            may_retry_elsewhere=True,
            http_status=status,
        )
    if status == 503:
        return PspResult(
            Outcome.ERROR,
            psp_reference,
            DeclineCode.UNAVAILABLE,
            message or "service unavailable",
            may_retry_elsewhere=False,
            http_status=status,
        )
    if status >= 500:
        code = DeclineCode.PROCESSING_ERROR if status == 500 else DeclineCode.UNAVAILABLE
        return PspResult(
            Outcome.ERROR,
            psp_reference,
            code,
            message or f"provider error {status}",
            may_retry_elsewhere=False,
            http_status=status,
        )
    if status == 409:
        # A request with the same idempotency key is still running: it may charge.
        return PspResult(
            Outcome.ERROR,
            psp_reference,
            DeclineCode.PROCESSING_ERROR,
            message or "a request with the same idempotency key is in progress",
            may_retry_elsewhere=False,
            http_status=status,
        )
    if status == 404:
        return PspResult(
            Outcome.ERROR,
            psp_reference,
            DeclineCode.NOT_FOUND,
            message or "not found",
            may_retry_elsewhere=True,
            http_status=status,
        )
    return PspResult(
        Outcome.ERROR,
        psp_reference,
        DeclineCode.INVALID_REQUEST,
        message or f"request refused ({status})",
        may_retry_elsewhere=True,
        http_status=status,
    )


def unexpected(status: int, what: str) -> PspResult:
    """A 2xx answer we cannot read. Something may have happened: never retry elsewhere."""
    return PspResult(
        Outcome.ERROR,
        decline_code=DeclineCode.PROCESSING_ERROR,
        message=f"unreadable {what} answer",
        may_retry_elsewhere=False,
        http_status=status,
    )


def as_dict(body: Any) -> dict[str, Any]:
    return body if isinstance(body, dict) else {}


def safe_text(value: Any, limit: int = 200) -> str | None:
    """Provider words for `PspResult.message`: short, and swept for card numbers."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return redact_card_numbers(text[:limit])


def two_digits(month: int) -> str:
    return f"{month:02d}"


# --- scrubbing ----------------------------------------------------------------------

_FORM_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_FORM_PAIR = re.compile(r"(?P<key>[^\s=&\"'?]+)=(?P<value>[^&\s\"']*)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+")
_JSON_PAIR = re.compile(
    r"\"(?P<key>[A-Za-z0-9_.\-]+)\"\s*:\s*(?P<value>\"(?:[^\"\\]|\\.)*\"|-?[0-9]+)"
)


def _leaf_name(key: str) -> str:
    """`payment_method_data[card][cvc]` (or its %5B-encoded form) names `cvc`."""
    if "[" not in key and "%" not in key:  # a plain name, as JSON keys are
        return key.lower()
    decoded = key.replace("%5B", "[").replace("%5D", "]").replace("%5b", "[").replace("%5d", "]")
    segments = _FORM_SEGMENT.findall(decoded)
    leaf = segments[-1] if segments else decoded
    return leaf.lower()


def _mask_value(name: str, value: Any) -> Any:
    if name in PAN_FIELDS and isinstance(value, str | int) and not isinstance(value, bool):
        digits = re.sub(r"[ -]", "", str(value))
        return mask_pan(digits) if digits.isdigit() else MASK
    return MASK


class Scrubber:
    """Removes card data and secrets from a transcript (request or response, any shape).

    `fields` are the provider's names for card number, expiry, security code and
    holder (compared lowercase, and for form keys by their last bracketed part).
    Strings are swept twice: for `name=value` and `"name": value` pairs that use
    one of those names, and for any Luhn-valid 13-19 digit run.
    """

    def __init__(self, fields: Iterable[str]) -> None:
        self.fields = frozenset(f.lower() for f in fields) | PAN_FIELDS

    def __call__(self, transcript: Any) -> Any:
        return self._scrub(transcript)

    def _sensitive(self, key: str) -> bool:
        return _leaf_name(key) in self.fields

    def _hidden_in_text(self, key: str) -> bool:
        return self._sensitive(key) or key.lower() in SECRET_HEADERS

    def _scrub(self, value: Any) -> Any:
        # The commonest leaves first, before the slower checks against ABCs.
        if isinstance(value, str):
            return self._string(value)
        if value is None or isinstance(value, int | float):
            return value  # numbers, booleans, None: only sensitive under a sensitive key
        if isinstance(value, HttpCall):
            return replace(
                value,
                headers=self._headers(value.headers),
                json=self._scrub(value.json),
                form=None if value.form is None else self._scrub(dict(value.form)),
            )
        if isinstance(value, dict | Mapping):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                name = str(key)
                if name.lower() in SECRET_HEADERS:
                    out[key] = MASK
                elif self._sensitive(name):
                    out[key] = _mask_value(_leaf_name(name), item)
                else:
                    out[key] = self._scrub(item)
            return out
        if isinstance(value, list | tuple):
            items = [self._scrub(item) for item in value]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, bytes | bytearray):
            return self._string(bytes(value).decode("utf-8", errors="replace"))
        return value

    def _headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {k: (MASK if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}

    def _string(self, text: str) -> str:
        def _form(match: re.Match[str]) -> str:
            key = match.group("key")
            if not self._hidden_in_text(key):
                return match.group(0)
            return f"{key}={_mask_value(_leaf_name(key), match.group('value'))}"

        def _json(match: re.Match[str]) -> str:
            key = match.group("key")
            if not self._hidden_in_text(key):
                return match.group(0)
            raw = match.group("value")
            inner = json.loads(raw) if raw.startswith('"') else raw
            return f'"{key}": {json.dumps(_mask_value(key.lower(), inner))}'

        # Each sweep runs only where its pattern could match at all: most strings of a
        # transcript are ids and codes, and a transcript is scrubbed for every attempt.
        if '"' in text:
            text = _JSON_PAIR.sub(_json, text)
        if "=" in text:
            text = _FORM_PAIR.sub(_form, text)
        text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
        return redact_card_numbers(text)


# --- status queries -----------------------------------------------------------------

_PRIORITY = {Outcome.APPROVED: 0, Outcome.PENDING: 1, Outcome.DECLINED: 2, Outcome.ERROR: 3}


def pick_status(results: list[PspResult], *, not_found_is_final: bool) -> PspResult:
    """One verdict for every payment a provider holds under our reference.

    An approved payment wins (money moved, whatever else was tried), then a
    pending one. More than one approved is said in the message: it is a double
    charge the core must surface. With none found, `may_retry_elsewhere` is
    `not_found_is_final`: True only where the provider's lookup is strongly
    consistent, so "none" proves nothing was charged.
    """
    if not results:
        return PspResult(
            Outcome.ERROR,
            decline_code=DeclineCode.NOT_FOUND,
            message="no payment under this reference",
            may_retry_elsewhere=not_found_is_final,
            http_status=200,
        )
    best = min(results, key=lambda r: _PRIORITY[r.outcome])
    approved = sum(1 for r in results if r.outcome is Outcome.APPROVED)
    if approved > 1:
        return replace(best, message=f"{approved} approved payments under this reference")
    return best
