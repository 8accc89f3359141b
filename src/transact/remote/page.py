"""The hosted payment page: server-rendered HTML, one first-party script, no third party.

`/pay/{token}` trades the link's token for a session cookie (HttpOnly, SameSite=Strict,
Secure over https) and sends the browser on to the token-free `/pay`. It does so with a
page that refreshes to `/pay` rather than a 303: a Strict cookie set while following a
link from an e-mail or SMS (a cross-site navigation) is not sent on that navigation's
redirects, but is sent on a navigation our own page starts. The PSP's 3-D Secure page
returns through `/pay/return` the same way.

Every form carries the session's CSRF token. The card fields are read once, sealed for
card capture and dropped (see `Remote.post_card`); no response echoes them. Scripts and
styles come only from `static/`, each listed with its SRI hash in `static/inventory.json`
(PCI DSS 6.4.3 / 11.6.1), which is what the page's tags are built from.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures.

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from transact.contracts import utcnow
from transact.kernel import Kernel
from transact.remote import domain
from transact.remote.domain import LinkError, PageState, Submitter
from transact.remote.flow import DEFAULT_MERCHANT, Page, Remote, WebSession

HERE = Path(__file__).parent
STATIC = HERE / "static"
INVENTORY = STATIC / "inventory.json"
COOKIE = "transact_pay"
MAX_FORM_BYTES = 4096
_CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_NO_STORE = {"Cache-Control": "no-store"}

_TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def inventory() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(INVENTORY.read_text())
    return data


def assets(listed: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The page's script and stylesheet tags, from the inventory: a file changed without
    its inventory entry fails its SRI check in the browser and does not run."""
    found: dict[str, dict[str, str]] = {}
    for kind, key in (("scripts", "js"), ("styles", "css")):
        entry = listed[kind][0]
        found[key] = {"src": entry["src"], "integrity": entry["integrity"]}
    return found


def _html(
    template: str, status: int = 200, *, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    body = _TEMPLATES.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status, headers={**_NO_STORE, **(headers or {})})


def build_router(kernel: Kernel, remote: Remote) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    listed = inventory()
    tags = assets(listed)
    files = {
        entry["src"].rsplit("/", 1)[1]: (STATIC / entry["file"]).read_bytes()
        for kind in ("scripts", "styles")
        for entry in listed[kind]
    }

    def secure(request: Request) -> bool:
        return request.url.scheme == "https" or kernel.settings.public_url.startswith("https:")

    def base(request: Request) -> str:
        return (kernel.settings.public_url or str(request.base_url)).rstrip("/")

    def message_page(status: int, title: str, text: str, **context: Any) -> HTMLResponse:
        return _html(
            "message.html",
            status,
            assets=tags,
            title=title,
            text=text,
            merchant=context.pop("merchant", None),
            **context,
        )

    def refused(problem: LinkError, merchant: str | None = None) -> HTMLResponse:
        titles = {
            404: "Link not valid",
            410: "Link no longer available",
            403: "Page expired",
            429: "Please wait",
            409: "Already in progress",
        }
        return message_page(
            problem.status,
            titles.get(problem.status, "Something went wrong"),
            problem.message,
            merchant=merchant,
            reload=problem.status in (403, 409),
        )

    def no_session() -> HTMLResponse:
        return message_page(
            401,
            "Session ended",
            "For your security this page has timed out. Please open the payment link "
            "from your message again.",
        )

    async def session_of(request: Request) -> WebSession | None:
        return await remote.web_session(request.cookies.get(COOKIE))

    def render(page: Page, csrf: str) -> HTMLResponse:
        link, settings = page.link, page.settings
        merchant = settings.merchant_name or DEFAULT_MERCHANT
        context: dict[str, Any] = {
            "assets": tags,
            "merchant": merchant,
            "amount": domain.money(link.amount, link.currency),
            "reference": link.reference,
            "state": page.state.value,
        }
        if page.state is PageState.FORM:
            errors = {
                name: domain.field_message(name, reason)
                for name, reason in (page.attempt.errors if page.attempt else {}).items()
            }
            return _html(
                "pay.html",
                **context,
                csrf=csrf,
                errors=errors,
                notice=domain.last_outcome(page.attempt),
                ask_postcode=settings.ask_postcode,
                ask_name=settings.ask_name,
                agent_submits=settings.submitter is Submitter.AGENT,
                attempts_left=link.max_attempts - link.attempts,
                first_try=link.attempts == 0,
            )
        status = 410 if page.state is PageState.ENDED else 200
        ended = domain.ENDED.get(domain.status_at(link, utcnow()), ("", ""))[1]
        return _html("status.html", status, **context, ended=ended)

    @router.get("/pay/static/{name}")
    async def static(name: str) -> Response:
        body = files.get(name)
        if body is None:
            return Response(status_code=404)
        content_type = _CONTENT_TYPES[Path(name).suffix]
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-cache"})

    @router.get("/pay/status")
    async def status(request: Request) -> JSONResponse:
        web = await session_of(request)
        if web is None:
            return JSONResponse({"state": "ended"}, status_code=401, headers=_NO_STORE)
        page = await remote.page(web)
        return JSONResponse({"state": page.state.value}, headers=_NO_STORE)

    @router.post("/pay/card")
    async def card(request: Request) -> Response:
        web = await session_of(request)
        if web is None:
            return no_session()
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return message_page(413, "Too much data", "Please reload the page and try again.")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        client = request.client
        try:
            await remote.post_card(web, form, client.host if client else "unknown")
        except LinkError as problem:
            if problem.status == 409:
                return RedirectResponse("/pay", status_code=303)
            return refused(problem)
        finally:
            form.clear()
        return RedirectResponse("/pay", status_code=303, headers=_NO_STORE)

    @router.post("/pay/progress", status_code=204)
    async def progress(request: Request) -> Response:
        web = await session_of(request)
        if web is None:
            return Response(status_code=401)
        try:
            data = json.loads(await request.body())
            field, complete, valid = data["field"], data["complete"], data.get("valid")
            if not (isinstance(field, str) and isinstance(complete, bool)):
                raise TypeError
            if valid is not None and not isinstance(valid, bool):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"error": {"code": "invalid_request", "message": "{field, complete, valid}"}},
                status_code=422,
            )
        try:
            await remote.progress(web, request.headers.get("x-csrf-token"), field, complete, valid)
        except LinkError as problem:
            return JSONResponse(
                {"error": {"code": problem.code, "message": problem.message}},
                status_code=problem.status,
            )
        return Response(status_code=204)

    @router.get("/pay/challenge")
    async def challenge(request: Request) -> Response:
        web = await session_of(request)
        if web is None:
            return no_session()
        target = await remote.challenge_url(web, f"{base(request)}/pay/return")
        return RedirectResponse(target or "/pay", status_code=303, headers=_NO_STORE)

    @router.get("/pay/return")
    async def back_from_bank() -> HTMLResponse:
        # Arriving from the bank's site, the Strict cookie is not sent: hop to /pay
        # from our own page, where it is.
        return _html("opening.html", assets=tags, title="Returning to your payment")

    @router.get("/pay")
    async def pay(request: Request) -> Response:
        web = await session_of(request)
        if web is None:
            return no_session()
        return render(await remote.page(web), web.csrf)

    @router.get("/pay/{token}")
    async def open_link(token: str, request: Request) -> Response:
        try:
            web, link = await remote.open_page(token)
        except LinkError as problem:
            return refused(problem)
        response = _html("opening.html", assets=tags, title="Opening your secure payment page")
        lifetime = max(60, int((link.expires_at - utcnow()).total_seconds()))
        response.set_cookie(
            COOKIE,
            web.id,
            max_age=min(lifetime, 2 * 3600),
            path="/pay",
            secure=secure(request),
            httponly=True,
            samesite="strict",
        )
        return response

    return router
