"""`transact` command line."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from transact.kernel.errors import TransactError

app = typer.Typer(
    name="transact",
    no_args_is_help=True,
    add_completion=False,
    help="Transact: card payments in the middle of a customer conversation.",
)
out = Console()


def _settings(**overrides: object):  # type: ignore[no-untyped-def]
    from transact.kernel.settings import load_settings

    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _serve(settings, names: list[str] | None, banner: list[str]) -> None:  # type: ignore[no-untyped-def]
    import uvicorn

    from transact import runtime
    from transact.kernel.logging import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    kernel, asgi = runtime.build(settings, names)
    # Reach the backends before the server starts, so a wrong URL is one clear line.
    asyncio.run(_preflight(kernel))
    for line in banner:
        out.print(line, highlight=False, soft_wrap=True)
    config = uvicorn.Config(
        asgi,
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=False,
        server_header=False,
        ws="websockets-sansio",
    )
    uvicorn.Server(config).run()


async def _preflight(kernel) -> None:  # type: ignore[no-untyped-def]
    try:
        await kernel.check()
    finally:
        await kernel.db.close()
        await kernel.cache.close()
        await kernel.bus.close()


@app.command()
def run(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    data_dir: Annotated[Path, typer.Option(help="where the SQLite database lives")] = Path(
        ".transact"
    ),
) -> None:
    """Start everything in one process on the embedded backends, in demo mode."""
    log_json = None if "TRANSACT_LOG_JSON" in os.environ else False
    settings = _settings(host=host, port=port, data_dir=data_dir, demo=True, log_json=log_json)
    url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"  # noqa: S104
    _serve(
        settings,
        None,
        [
            f"Transact is running at {url}  (health {url}/healthz, metrics {url}/metrics)",
            f"Data: {settings.effective_database_url}",
            "Press Ctrl+C to stop.",
        ],
    )


@app.command()
def serve(
    services: Annotated[list[str], typer.Argument(help="services to run in this process")],
    host: Annotated[str | None, typer.Option(help="interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
) -> None:
    """Start chosen services on the backends configured by TRANSACT_* variables."""
    from transact import runtime

    names = runtime.resolve_services(services)
    settings = _settings(host=host, port=port)
    _serve(settings, names, [f"serving {', '.join(names)} on {settings.host}:{settings.port}"])


@app.command()
def migrate() -> None:
    """Create or upgrade the schema on TRANSACT_DATABASE_URL (safe to run repeatedly)."""
    from transact.kernel.db import Database

    settings = _settings()

    async def _go() -> None:
        db = Database(settings.effective_database_url)
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(_go())
    out.print("schema is up to date")


@app.command()
def check() -> None:
    """Validate settings and reach every configured backend."""
    from transact.kernel import Kernel

    settings = _settings()
    asyncio.run(_preflight(Kernel.from_settings(settings)))
    out.print("settings valid; database, cache and bus reachable")


@app.command()
def keygen() -> None:
    """Print a new random master key for TRANSACT_MASTER_KEY."""
    out.print(base64.b64encode(os.urandom(32)).decode(), highlight=False)


def main() -> None:
    try:
        app(standalone_mode=False)
    except TransactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here with standalone_mode off
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
