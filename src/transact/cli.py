"""`transact` command line."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from transact.kernel.errors import ConfigError, TransactError

if TYPE_CHECKING:  # the CLI imports heavy modules only for the command that runs
    from transact.auth import Accounts
    from transact.kernel import Kernel
    from transact.kernel.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    name="transact",
    no_args_is_help=True,
    add_completion=False,
    help="Transact: card payments in the middle of a customer conversation.",
)
out = Console()


def _settings(**overrides: object) -> Settings:
    from transact.kernel.settings import load_settings

    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def _serve(settings: Settings, names: list[str] | None, banner: list[str]) -> None:
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


async def _preflight(kernel: Kernel) -> None:
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
    from transact.auth.accounts import DEMO_AGENT, DEMO_TENANT
    from transact.auth.domain import generate_password

    log_json = None if "TRANSACT_LOG_JSON" in os.environ else False
    password = os.environ.get("TRANSACT_DEMO_PASSWORD") or generate_password()
    settings = _settings(
        host=host,
        port=port,
        data_dir=data_dir,
        demo=True,
        log_json=log_json,
        demo_password=password,
    )
    url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"  # noqa: S104
    _serve(
        settings,
        None,
        [
            f"Transact is running at {url}  (health {url}/healthz, metrics {url}/metrics)",
            f"Demo sign-in: tenant {DEMO_TENANT}, username {DEMO_AGENT}, password {password}",
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


@app.command("psp-sim")
def psp_sim(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8099,
) -> None:
    """Run the PSP simulator: Stripe, Adyen, Checkout.com and sandbox APIs, for tests."""
    import uvicorn

    from transact.kernel.logging import configure_logging
    from transact.psp.simulator import create_simulator_app

    url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"  # noqa: S104
    out.print(
        f"PSP simulator at {url}  (charges {url}/_sim/charges, faults POST {url}/_sim/faults)",
        highlight=False,
        soft_wrap=True,
    )
    # The same logging wall as every other process; request paths carry references only.
    configure_logging("INFO", json=False)
    uvicorn.run(create_simulator_app(), host=host, port=port, log_config=None, server_header=False)


admin = typer.Typer(help="Manage tenants, users and API clients.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(admin, name="admin")
app.add_typer(audit_app, name="audit")


def _with_accounts(work: Callable[[Accounts], Awaitable[T]]) -> T:
    """Run `work(accounts)` against the configured database, migrated first."""
    from transact.auth import Accounts, SigningKeys
    from transact.kernel import Kernel

    settings = _settings()

    async def _go() -> T:
        kernel = Kernel.from_settings(settings)
        try:
            await kernel.db.migrate()
            return await work(Accounts(kernel, SigningKeys(kernel)))
        finally:
            await kernel.db.close()
            await kernel.cache.close()
            await kernel.bus.close()

    return asyncio.run(_go())


@admin.command("create-tenant")
def create_tenant(
    name: Annotated[str, typer.Argument(help="lowercase letters, digits and '-'")],
    mfa: Annotated[bool, typer.Option(help="require MFA for every user")] = True,
    mfa_delegated_to_sso: Annotated[
        bool, typer.Option(help="launch links skip MFA: the tenant's SSO did it")
    ] = False,
) -> None:
    """Create a tenant (a merchant or contact-centre account)."""
    tenant = _with_accounts(
        lambda a: a.create_tenant(
            name, mfa_required=mfa, mfa_delegated_to_sso=mfa_delegated_to_sso, actor="cli"
        )
    )
    out.print(
        f"tenant {tenant.name} created (id {tenant.id}, MFA "
        f"{'required' if tenant.mfa_required else 'optional'})",
        highlight=False,
    )


@admin.command("create-user")
def create_user(
    tenant: Annotated[str, typer.Option(help="tenant name")],
    username: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="agent, supervisor or admin")] = "agent",
    password_stdin: Annotated[
        bool, typer.Option(help="read the password from standard input")
    ] = False,
) -> None:
    """Create a user; without --password-stdin a password is generated and printed once."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None

    async def work(accounts: Accounts) -> Any:
        found = await accounts.tenant(tenant)
        return await accounts.create_user(found.id, username, role, password, actor="cli")

    user, chosen = _with_accounts(work)
    out.print(f"user {user.username} ({user.role}) created in {tenant}", highlight=False)
    if password is None:
        out.print(f"password: {chosen}", highlight=False)


@admin.command("create-client")
def create_client(
    tenant: Annotated[str, typer.Option(help="tenant name")],
    scope: Annotated[list[str] | None, typer.Option(help="repeat for several scopes")] = None,
    name: Annotated[str, typer.Option(help="a label for people")] = "api client",
) -> None:
    """Create an API client (client credentials); the secret is printed once."""

    async def work(accounts: Accounts) -> Any:
        found = await accounts.tenant(tenant)
        return await accounts.create_client(found.id, name, scope or [], actor="cli")

    client, secret = _with_accounts(work)
    out.print(
        f"client_id: {client.id}\nclient_secret: {secret}\nscopes: "
        f"{' '.join(client.scopes) or '(none)'}",
        highlight=False,
    )


@admin.command("set-routes")
def set_routes(
    tenant: Annotated[str, typer.Option(help="tenant name")],
    file: Annotated[Path, typer.Option(help="JSON: {mode, routes, credentials, options}")],
) -> None:
    """Set a tenant's PSP routing (as PUT /api/v1/psp/routes does), from a JSON file."""
    import json

    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read routes from {file}: {type(exc).__name__}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{file} must hold a JSON object with 'routes'")

    async def work(accounts: Accounts) -> Any:
        from transact.kernel.security import Principal, Role
        from transact.psp import Psp

        found = await accounts.tenant(tenant)
        operator = Principal(kind="user", id="cli", tenant_id=found.id, name="cli", role=Role.ADMIN)
        psp = Psp(accounts.kernel)
        try:
            return await psp.set_setup(operator, config)
        finally:
            await psp.close()

    public = _with_accounts(work)
    out.print(json.dumps(public), highlight=False, soft_wrap=True)


@admin.command("rotate-keys")
def rotate_keys() -> None:
    """Mint a new token signing key; the old one keeps verifying for a day."""
    kid = _with_accounts(lambda a: a.keys.ensure_current(force_rotation=True))
    out.print(f"signing with {kid}", highlight=False)


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the audit chain; exit 1 at the first record that was changed or removed."""
    from transact.kernel import audit

    async def work(accounts: Accounts) -> Any:
        async with accounts.kernel.db.transaction() as session:
            return await audit.verify_chain(session)

    report = _with_accounts(work)
    if report.ok:
        out.print(f"audit chain intact: {report.records} records", highlight=False)
        return
    print(
        f"error: audit chain broken at record {report.broken_at}: {report.reason}", file=sys.stderr
    )
    sys.exit(1)


bench_app = typer.Typer(help="Benchmarks; each prints one JSON object.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("payments")
def bench_payments(
    connector: Annotated[str, typer.Option(help="sandbox (in-process) or sim (HTTP)")] = "sandbox",
    concurrency: Annotated[int, typer.Option(min=1, max=1000)] = 16,
    seconds: Annotated[float, typer.Option(min=0.5, max=600)] = 10.0,
) -> None:
    """Payments per second and platform overhead (p50/p99, PSP time excluded)."""
    import json

    from transact.bench import bench_payments as run_bench

    try:
        result = asyncio.run(run_bench(connector, concurrency, seconds))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(json.dumps(result))


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
