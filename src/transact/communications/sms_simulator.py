"""An SMS provider simulator: the part of Twilio's Messages API that communications uses,
on its real path and wire format, with status callbacks signed as Twilio signs them.

`create_sms_simulator()` returns an ASGI app; run it under uvicorn (`transact sms-sim`,
the tests). It stands in for the provider and the handsets: it keeps every message's
text, which is what a handset would show, so a test reads the payment link from it.

* `POST /2010-04-01/Accounts/{sid}/Messages.json`, form `To`, `From`, `Body`,
  `StatusCallback?`, basic auth `sid:token` (the token given at creation; any sid).
  `201` with Twilio's message resource; `400` with Twilio's error body for a bad
  number (`21211`), a missing body (`21602`) or a number that cannot take SMS.
* Twilio's magic numbers: `+15005550001` is invalid (21211), `+15005550009` cannot
  receive SMS (21614); a number ending `0003` is accepted, then reported
  `undelivered` with error 30003 (handset unreachable). Every other number is
  reported `sent`, then `delivered`.
* `GET /2010-04-01/Accounts/{sid}/Messages.json?To&From&DateSent>` lists messages
  as Twilio does (`{"messages": [...]}`, newest first; `DateSent>` is a day, inclusive).
* Control: `GET /_sim/messages`, `POST /_sim/faults {status, count}` (the next
  `count` sends answer `status`, nothing sent) or `{slow: seconds, count}` (the next
  `count` sends are sent, and answered only after `seconds`: an answer a client's
  timeout loses), `POST /_sim/reset`, `GET /_sim/health`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from transact.communications.domain import segments, twilio_signature
from transact.contracts.messages import InvalidDestination, e164

DEFAULT_AUTH_TOKEN = "sim-auth-token"  # noqa: S105  (a simulator's published test token)
INVALID_NUMBER = "+15005550001"
NO_SMS_NUMBER = "+15005550009"
UNREACHABLE_SUFFIX = "0003"
CALLBACK_DELAY = 0.05


@dataclass
class SimMessage:
    sid: str
    account_sid: str
    to: str
    sender: str
    body: str
    status: str
    segments: int
    status_callback: str | None
    created_at: str
    callbacks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SimState:
    auth_token: str
    messages: list[SimMessage] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    slow: list[float] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


def _authorized(state: SimState, request: Request, sid: str) -> bool:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return user == sid and hmac.compare_digest(password, state.auth_token)


def _resource(message: SimMessage) -> dict[str, Any]:
    return {
        "sid": message.sid,
        "account_sid": message.account_sid,
        "to": message.to,
        "from": message.sender,
        "body": message.body,
        "status": message.status,
        "num_segments": str(message.segments),
        "direction": "outbound-api",
        "date_created": message.created_at,
        "error_code": None,
        "error_message": None,
        "uri": f"/2010-04-01/Accounts/{message.account_sid}/Messages/{message.sid}.json",
    }


async def _report(state: SimState, message: SimMessage) -> None:
    """The carrier's story of a message, told to its StatusCallback as Twilio tells it."""
    unreachable = message.to.endswith(UNREACHABLE_SUFFIX)
    steps = [("sent", None), ("undelivered", "30003") if unreachable else ("delivered", None)]
    async with httpx.AsyncClient() as client:
        for status, error in steps:
            await asyncio.sleep(CALLBACK_DELAY)
            message.status = status
            if not message.status_callback:
                continue
            params = {
                "AccountSid": message.account_sid,
                "MessageSid": message.sid,
                "SmsSid": message.sid,
                "MessageStatus": status,
                "SmsStatus": status,
                "To": message.to,
                "From": message.sender,
                "ApiVersion": "2010-04-01",
            }
            if error:
                params["ErrorCode"] = error
            signature = twilio_signature(state.auth_token, message.status_callback, params)
            try:
                answer = await client.post(
                    message.status_callback,
                    data=params,
                    headers={"X-Twilio-Signature": signature},
                    timeout=5.0,
                )
                message.callbacks.append({"status": status, "answer": answer.status_code})
            except httpx.HTTPError as problem:
                message.callbacks.append({"status": status, "error": type(problem).__name__})


def _day(rfc2822: str) -> str:
    return parsedate_to_datetime(rfc2822).date().isoformat()


def create_sms_simulator(auth_token: str = DEFAULT_AUTH_TOKEN) -> Starlette:
    state = SimState(auth_token)

    async def send(request: Request) -> Response:
        sid = request.path_params["sid"]
        if not _authorized(state, request, sid):
            return _error(401, 20003, "Authenticate")
        if state.faults:
            return _error(state.faults.pop(0), 20500, "Simulated provider failure")
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        body, sender = form.get("Body", ""), form.get("From", "")
        try:
            to = e164(form.get("To", ""))
        except InvalidDestination:
            return _error(400, 21211, "The 'To' number is not a valid phone number.")
        if to == INVALID_NUMBER:
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to == NO_SMS_NUMBER:
            return _error(400, 21614, f"'To' number {to} is not a mobile number")
        if not sender:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not body or len(body) > 1600:
            return _error(400, 21602, "Message body is required (at most 1600 characters).")
        message = SimMessage(
            sid="SM" + secrets.token_hex(16),
            account_sid=sid,
            to=to,
            sender=sender,
            body=body,
            status="queued",
            segments=segments(body),
            status_callback=form.get("StatusCallback") or None,
            created_at=datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"),
        )
        state.messages.append(message)
        task = asyncio.create_task(_report(state, message))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        if state.slow:
            await asyncio.sleep(state.slow.pop(0))
        return JSONResponse(_resource(message), status_code=201)

    async def listing(request: Request) -> Response:
        sid = request.path_params["sid"]
        if not _authorized(state, request, sid):
            return _error(401, 20003, "Authenticate")
        query = request.query_params
        since = query.get("DateSent>")
        found = [
            _resource(m)
            for m in reversed(state.messages)
            if m.account_sid == sid
            and query.get("To") in (None, m.to)
            and query.get("From") in (None, m.sender)
            and (since is None or _day(m.created_at) >= since)
        ]
        return JSONResponse({"messages": found, "page": 0, "page_size": len(found)})

    async def messages(_: Request) -> Response:
        return JSONResponse({"messages": [asdict(m) for m in state.messages]})

    async def faults(request: Request) -> Response:
        try:
            body = await request.json()
            count = max(1, int(body.get("count", 1)))
            if "slow" in body:
                state.slow.extend([float(body["slow"])] * count)
            else:
                state.faults.extend([int(body["status"])] * count)
        except (ValueError, KeyError, TypeError, AttributeError):
            return JSONResponse(
                {"sim_error": "give {status, count?} or {slow, count?}"}, status_code=400
            )
        return JSONResponse({"queued": len(state.faults) + len(state.slow)}, status_code=201)

    async def reset(_: Request) -> Response:
        state.messages.clear()
        state.faults.clear()
        state.slow.clear()
        return JSONResponse({"reset": True})

    async def health(_: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/2010-04-01/Accounts/{sid}/Messages.json", send, methods=["POST"]),
            Route("/2010-04-01/Accounts/{sid}/Messages.json", listing, methods=["GET"]),
            Route("/_sim/messages", messages, methods=["GET"]),
            Route("/_sim/faults", faults, methods=["POST"]),
            Route("/_sim/reset", reset, methods=["POST"]),
            Route("/_sim/health", health, methods=["GET"]),
        ]
    )
    app.state.sim = state
    return app
