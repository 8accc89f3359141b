"""The PSP simulator's 3-D Secure challenge page: where a cardholder lands from
`action_url` (`https://sim.invalid/3ds/{payment id}`, path `/3ds/{id}`), confirms or
refuses, and is sent back to the merchant's `return_url`.

Plain HTML with two buttons and no script, so a browser test can drive it. Completing
it does what `POST /_sim/challenges/{id}` does; the payment's outcome is then known to a
status query, as with a real provider.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from starlette.types import Send

if TYPE_CHECKING:
    from transact.psp.simulator import Request, SimulatorApp


def _safe_return(url: str) -> str | None:
    """Only an http(s) URL goes back: never `javascript:` or the like."""
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def _page(payment_id: str, amount: str, return_url: str) -> bytes:
    esc = html.escape
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Simulated bank: confirm your payment</title></head>
<body style="font-family:sans-serif;max-width:30rem;margin:1rem auto;padding:1rem">
<h1>Simulated bank security check</h1>
<p>Confirm the payment of <strong>{esc(amount)}</strong>?</p>
<form method="post" action="/3ds/{esc(payment_id)}">
<input type="hidden" name="return_url" value="{esc(return_url)}">
<p><button name="result" value="approved" style="font-size:1.2rem">Confirm payment</button></p>
<p><button name="result" value="declined">Refuse</button></p>
</form></body></html>""".encode()


async def serve(app: SimulatorApp, request: Request, send: Send) -> None:
    from transact.psp.simulator import Request as SimRequest

    payment_id = request.path.removeprefix("/3ds/")
    payment = app.state.payments.get(payment_id)
    if payment is None or payment.outcome != "pending":
        await _send(send, 404, b"No payment waits for a challenge here.")
        return
    if request.method == "GET":
        # The way back: given with the link to this page, or with the payment request.
        given = request.query.get("return_url") or payment.return_url or ""
        way_back = _safe_return(given) or ""
        shown = f"{payment.amount / 100:.2f} {payment.currency.upper()}"
        await _send(send, 200, _page(payment_id, shown, way_back), "text/html; charset=utf-8")
        return
    form = dict(parse_qsl(request.body.decode("utf-8", "replace")))
    result = form.get("result", "")
    answer = app._complete_challenge(
        SimRequest(
            "POST",
            f"/_sim/challenges/{payment_id}",
            {},
            {},
            json.dumps({"result": result}).encode(),
        )
    )
    back = _safe_return(form.get("return_url", ""))
    if answer.status != 200 or back is None:
        await _send(send, answer.status, b"Done.")
        return
    await _send(send, 303, b"", headers=[(b"location", back.encode())])


async def _send(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
