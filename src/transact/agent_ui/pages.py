"""The Agent UI's page and files: one HTML shell, plain ES modules and a stylesheet.

`/` sends the browser on to `/ui/` with its query intact (auth's launch links point at
`/?tenant=T&username=U&launch=...`). `/ui/` carries a Content-Security-Policy of its own,
whose `frame-ancestors` lists the origins the tenant allows to embed the UI (its CRM);
the gateway keeps that header on `/ui` (see `gateway.domain.APP_MAY_SET`). Everything
else comes from `static/`: no third party, no build step.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures.

import hashlib
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from transact.agent_ui import domain
from transact.agent_ui.flow import AgentUi
from transact.kernel.errors import ApiError

HERE = Path(__file__).parent
STATIC = HERE / "static"
STATIC_URL = "/ui/static"
_CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

_TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def shipped_files() -> dict[str, bytes]:
    """Every file the page may load, read once: a name not listed here is a 404."""
    return {
        path.name: path.read_bytes()
        for path in sorted(STATIC.iterdir())
        if path.is_file() and path.suffix in _CONTENT_TYPES
    }


def version_of(files: dict[str, bytes]) -> str:
    """Changes whenever any shipped file does, so a browser never mixes old and new."""
    digest = hashlib.sha256()
    for name, body in sorted(files.items()):
        digest.update(name.encode() + b"\0" + body)
    return digest.hexdigest()[:12]


def build_router(ui: AgentUi) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    files = shipped_files()
    version = version_of(files)

    @router.get("/")
    async def root(request: Request) -> RedirectResponse:
        query = request.url.query
        return RedirectResponse("/ui/" + (f"?{query}" if query else ""), status_code=303)

    @router.get("/ui")
    async def ui_without_slash(request: Request) -> RedirectResponse:
        query = request.url.query
        return RedirectResponse("/ui/" + (f"?{query}" if query else ""), status_code=303)

    @router.get("/ui/")
    async def page(request: Request) -> HTMLResponse:
        origins = await ui.frame_origins(request)
        body = _TEMPLATES.get_template("index.html").render(
            static=STATIC_URL, version=version, tenant=domain.tenant_hint(request.query_params)
        )
        return HTMLResponse(
            body,
            headers={
                "Content-Security-Policy": domain.page_csp(origins),
                # The page names the tenant it was opened for: never from a shared cache.
                "Cache-Control": "no-store",
            },
        )

    @router.get("/ui/static/{name}")
    async def static(name: str) -> Response:
        body = files.get(name)
        if body is None:
            raise ApiError(404, "not_found", "no such file")
        return Response(
            body,
            media_type=_CONTENT_TYPES[Path(name).suffix],
            headers={"Cache-Control": "no-cache"},
        )

    return router
