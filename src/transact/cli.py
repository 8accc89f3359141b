"""`transact` command line."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

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
    from transact.kernel.core import settle_heap
    from transact.kernel.http import SERVER_KEEP_ALIVE_SECONDS
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
        timeout_keep_alive=SERVER_KEEP_ALIVE_SECONDS,
    )
    settle_heap()
    uvicorn.Server(config).run()


async def _preflight(kernel: Kernel) -> None:
    try:
        await kernel.check()
    finally:
        await kernel.db.close()
        await kernel.cache.close()
        if kernel.vault_store is not None:
            await kernel.vault_store.close()
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
    media_token = os.environ.get("TRANSACT_DEMO_MEDIA_TOKEN") or "mt_" + secrets.token_urlsafe(24)
    settings = _settings(
        host=host,
        port=port,
        data_dir=data_dir,
        demo=True,
        log_json=log_json,
        demo_password=password,
        demo_media_token=media_token,
    )
    url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"  # noqa: S104
    ws_url = "ws" + url.removeprefix("http")
    _serve(
        settings,
        None,
        [
            f"Transact is running at {url}  (health {url}/healthz, metrics {url}/metrics)",
            f"Agent UI: {url}/",
            f"Demo sign-in: tenant {DEMO_TENANT}, username {DEMO_AGENT}, password {password}",
            f"Demo media streams: {ws_url}/media/customer and {ws_url}/media/agent, "
            f"tenant {DEMO_TENANT}, token {media_token}",
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


@app.command("sms-sim")
def sms_sim(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8098,
    auth_token: Annotated[
        str, typer.Option(help="the auth token senders must present (any account SID)")
    ] = "sim-auth-token",  # noqa: S107  (the simulator's published test token)
) -> None:
    """Run the SMS provider simulator (Twilio's Messages API with status callbacks), for tests."""
    import uvicorn

    from transact.communications.sms_simulator import create_sms_simulator
    from transact.kernel.logging import configure_logging

    url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"  # noqa: S104
    out.print(
        f"SMS simulator at {url}  (base_url for tenant SMS settings; messages {url}/_sim/messages)",
        highlight=False,
        soft_wrap=True,
    )
    configure_logging("INFO", json=False)
    uvicorn.run(
        create_sms_simulator(auth_token), host=host, port=port, log_config=None, server_header=False
    )


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


@admin.command("media-token")
def media_token(
    tenant: Annotated[str, typer.Option(help="tenant name")],
    keep_previous: Annotated[
        bool, typer.Option(help="keep earlier tokens working while the new one rolls out")
    ] = False,
) -> None:
    """Issue the tenant's media stream token (customParameters.token); printed once."""

    async def work(accounts: Accounts) -> str:
        found = await accounts.tenant(tenant)
        return await accounts.issue_media_token(found.id, keep_previous=keep_previous, actor="cli")

    out.print(f"media_token: {_with_accounts(work)}", highlight=False)


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


@audit_app.command("scan")
def audit_scan(
    data_dir: Annotated[
        Path | None, typer.Option(help="a data directory: its transact.db is scanned")
    ] = None,
    redis: Annotated[list[str] | None, typer.Option(help="a Redis URL (repeatable)")] = None,
    pg: Annotated[list[str] | None, typer.Option(help="a PostgreSQL URL (repeatable)")] = None,
    logs: Annotated[
        list[Path] | None, typer.Option(help="a log or captured-message file (repeatable)")
    ] = None,
    security_code: Annotated[
        list[str] | None, typer.Option(help="a security code used in the run (repeatable)")
    ] = None,
) -> None:
    """Search stores, Redis, logs and messages for card numbers and security codes."""
    from transact.kernel.pan_scan import scan

    databases = [_pg_async(url) for url in pg or []]
    if data_dir is not None:
        sqlite = data_dir / "transact.db"
        if not sqlite.is_file():
            raise ConfigError(f"no transact.db in {data_dir}")
        databases.append(f"sqlite+aiosqlite:///{sqlite}")
    missing = [str(p) for p in logs or [] if not p.is_file()]
    if missing:
        raise ConfigError(f"no such file: {', '.join(missing)}")
    if not (databases or redis or logs):
        raise ConfigError("nothing to scan: give --data-dir, --redis, --pg or --logs")
    try:
        findings = asyncio.run(
            scan(
                database_urls=databases,
                redis_urls=redis or [],
                files=logs or [],
                codes=security_code or [],
            )
        )
    except OSError as exc:
        raise ConfigError(f"cannot read a source: {exc}") from None
    for finding in findings:
        print(finding.line())
    sources = len(databases) + len(redis or []) + len(logs or [])
    print(f"{len(findings)} finding(s) in {sources} source(s)", file=sys.stderr)
    if findings:
        sys.exit(1)


def _pg_async(url: str) -> str:
    """Accept a plain postgresql:// URL as people copy it; scan with asyncpg."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


bench_app = typer.Typer(help="Benchmarks; each prints one JSON object.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.callback()
def bench_logging() -> None:
    """Stdout carries the JSON alone: warnings go to stderr, and nothing chattier."""
    from transact.kernel.logging import configure_logging

    configure_logging("WARNING", json=False)


def _progress(step: str) -> None:
    """Steps of a long benchmark, on stderr: stdout carries only its JSON."""
    Console(stderr=True).print(f"{step} ...", highlight=False)


@bench_app.command("payments")
def bench_payments(
    connector: Annotated[str, typer.Option(help="sandbox (in-process) or sim (HTTP)")] = "sandbox",
    concurrency: Annotated[int, typer.Option(min=1, max=1000)] = 16,
    seconds: Annotated[float, typer.Option(min=0.5, max=600)] = 10.0,
    cluster: Annotated[
        bool,
        typer.Option(help="against PSP adapter processes on Redis Streams and PostgreSQL"),
    ] = False,
    instances: Annotated[
        int, typer.Option(min=1, max=8, help="PSP adapter processes (--cluster)")
    ] = 1,
) -> None:
    """Payments per second and platform overhead (p50/p99, PSP time excluded)."""
    import json

    from transact.bench import bench_payments as run_bench
    from transact.bench import bench_payments_cluster

    try:
        if cluster:
            if connector != "sandbox":
                raise ValueError("--cluster runs the sandbox connector")
            result = bench_payments_cluster(instances, concurrency, seconds, progress=_progress)
        else:
            result = asyncio.run(run_bench(connector, concurrency, seconds))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(json.dumps(result))


@bench_app.command("calls")
def bench_calls(
    calls: Annotated[int, typer.Option(min=1, max=5000, help="concurrent bridged calls")] = 250,
    seconds: Annotated[float, typer.Option(min=0.1, max=600, help="audio per call")] = 5.0,
) -> None:
    """Bridged calls per core: p50/p99 per-frame processing and the masking delay."""
    from transact.telephony.callbench import run as run_bench

    print(run_bench(calls, seconds))


@bench_app.command("dtmf")
def bench_dtmf(
    seconds: Annotated[float, typer.Option(min=0.5, max=600, help="audio per stream")] = 10.0,
) -> None:
    """DTMF detection and masking on one core: streams per core, per-frame time."""
    import json

    from transact.telephony.bench import run_isolated

    print(json.dumps(run_isolated(seconds)))


@bench_app.command("push")
def bench_push(
    keys: Annotated[int, typer.Option(min=10, max=5000, help="keys the customer presses")] = 200,
) -> None:
    """Key on the customer's line to `capture.progress` on the agent's socket: p50/p99."""
    from transact.push_bench import run as run_bench

    print(run_bench(keys))


@bench_app.command("speech")
def bench_speech(
    quick: Annotated[bool, typer.Option(help="a small corpus (seconds, for tests)")] = False,
    seed: Annotated[int, typer.Option(help="seed for the numbers and noise")] = 1,
    fsdd: Annotated[
        Path,
        typer.Option(
            help="recordings of single digits named like FSDD's (DIGIT_SPEAKER_N.wav, 8 kHz "
            "mono); every speaker but george, lucas and nicolas is held out and reported "
            "apart; skipped if absent"
        ),
    ] = Path("../shared/data/fsdd"),
    cards: Annotated[
        int, typer.Option(min=1, max=500, help="card numbers per tuning speaker")
    ] = 10,
    held_out_cards: Annotated[
        int, typer.Option(min=1, max=500, help="card numbers per held-out speaker")
    ] = 30,
    accented: Annotated[
        bool,
        typer.Option(help="the accented corpus (MBROLA voices), where they are installed"),
    ] = True,
) -> None:
    """Spoken card fields through the recognizer on one core: accuracy, RTF, latency.
    Each speaker also says half as many expiries and security codes as card numbers."""
    import json

    from transact.voice.bench import Options, run_isolated

    chosen = Options(
        quick=quick,
        seed=seed,
        fsdd=str(fsdd),
        cards=cards,
        held_out_cards=held_out_cards,
        accented=accented,
    )
    print(json.dumps(run_isolated(chosen)))


@bench_app.command("reports")
def bench_reports(
    payments: Annotated[int, typer.Option(min=1, max=10_000_000)] = 1_000_000,
    database_url: Annotated[
        str | None,
        typer.Option(help="PostgreSQL (postgresql+asyncpg://...); default: a temporary SQLite"),
    ] = None,
    days: Annotated[
        int, typer.Option(min=7, max=400, help="the period the payments spread over")
    ] = 90,
    repeat: Annotated[
        int, typer.Option(min=1, max=1000, help="dashboard loads timed per view")
    ] = 20,
    projection: Annotated[
        bool, typer.Option(help="also fill the payments projection (CSV, reconciliation)")
    ] = True,
    quick: Annotated[
        bool, typer.Option(help="2,000 payments, 3 loads (seconds, for tests)")
    ] = False,
) -> None:
    """Dashboard loads (p50/p95) over aggregates of a million payments."""
    import json

    from transact.reporting.bench import run_sync

    if quick:
        payments, repeat = min(payments, 2_000), min(repeat, 3)
    print(json.dumps(run_sync(payments, database_url, days, repeat, projection)))


cluster_app = typer.Typer(
    help="The distributed mode on this machine: PostgreSQL, Redis, nginx and one process "
    "per service.",
    no_args_is_help=True,
)
app.add_typer(cluster_app, name="cluster")
ClusterDir = Annotated[
    Path, typer.Option("--dir", help="the cluster's throwaway directory (state, logs, data)")
]


@cluster_app.command("up")
def cluster_up(
    replicas: Annotated[
        list[str] | None, typer.Option(help="SERVICE=N instances of a service (repeatable)")
    ] = None,
    directory: ClusterDir = Path(".transact-cluster"),
) -> None:
    """Start the whole set, migrate once, and print where everything is."""
    from transact import cluster

    started = cluster.up(
        directory,
        cluster.parse_replicas(replicas or []),
        progress=lambda step: out.print(f"{step} ...", highlight=False),
    )
    for line in cluster.describe(started):
        out.print(line, highlight=False, soft_wrap=True)


@cluster_app.command("status")
def cluster_status(directory: ClusterDir = Path(".transact-cluster")) -> None:
    """Each process of the cluster: running, and answering its health check? Exit 1 if not."""
    from transact import cluster

    report = cluster.status(directory)
    for health in report:
        state = "ok" if health.healthy else ("unhealthy" if health.alive else "not running")
        out.print(
            f"{health.name:<24} pid {health.pid:<8} {state:<12} {health.detail}",
            highlight=False,
            soft_wrap=True,
        )
    if not all(h.healthy for h in report):
        sys.exit(1)


@cluster_app.command("scale")
def cluster_scale(
    service: Annotated[str, typer.Argument(help="the service, e.g. capture")],
    count: Annotated[int, typer.Argument(help="instances to run")],
    directory: ClusterDir = Path(".transact-cluster"),
) -> None:
    """Run COUNT instances of SERVICE; nginx's upstream follows without dropping connections."""
    from transact import cluster

    scaled = cluster.scale(directory, service, count)
    for proc in scaled.instances(service):
        out.print(f"{proc.name} pid {proc.pid} http://127.0.0.1:{proc.port}", highlight=False)


@cluster_app.command("down")
def cluster_down(directory: ClusterDir = Path(".transact-cluster")) -> None:
    """Stop every process (SIGTERM, then SIGKILL) and remove the directory."""
    from transact import cluster

    stopped = cluster.down(directory)
    out.print(f"stopped {len(stopped)} processes; removed {directory}", highlight=False)


@cluster_app.command("env")
def cluster_env(directory: ClusterDir = Path(".transact-cluster")) -> None:
    """Print `export TRANSACT_...` lines for the admin CLI against the cluster."""
    from transact import cluster

    found = cluster.Cluster.load(directory.absolute())
    for key, value in sorted(found.admin_env().items()):
        print(f"export {key}='{value}'")


deploy_app = typer.Typer(help="Deployment files rendered from the code.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("render")
def deploy_render(
    out_dir: Annotated[Path, typer.Option("--out", help="the deploy/ directory")] = Path("deploy"),
) -> None:
    """Write the nginx configuration (and its Kubernetes ConfigMap) from the gateway's rules."""
    from transact.deploy import write_rendered

    for path in write_rendered(out_dir):
        out.print(f"wrote {path}", highlight=False)


dtmf_app = typer.Typer(
    help="DTMF in 8 kHz mono WAV files (16-bit PCM or mu-law).", no_args_is_help=True
)
app.add_typer(dtmf_app, name="dtmf")


def _fail(exc: Exception) -> NoReturn:
    """The `error: ...` line and exit status 2 of `main`, also when the app runs embedded."""
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)


@dtmf_app.command("detect")
def dtmf_detect(
    file: Annotated[Path, typer.Argument(help="the recording")],
) -> None:
    """Print the keys pressed in a recording as one string, e.g. 4111111111111111#1228#."""
    from transact.telephony.audio import AudioFormatError, read_wav
    from transact.telephony.dtmf import detect_keys

    try:
        samples = read_wav(file)
    except AudioFormatError as exc:
        _fail(exc)
    print(detect_keys(samples))


@dtmf_app.command("mask")
def dtmf_mask(
    source: Annotated[Path, typer.Argument(help="the customer's recording")],
    target: Annotated[Path, typer.Argument(help="where to write what the agent hears")],
) -> None:
    """Write what the agent would hear: every DTMF tone replaced by the masking tone.

    The output is 16-bit PCM, 40 ms longer than the input: the masker's look-ahead delay.
    """
    from transact.telephony.audio import AudioFormatError, read_wav, write_wav
    from transact.telephony.masking import mask_signal

    try:
        samples = read_wav(source)
    except AudioFormatError as exc:
        _fail(exc)
    try:
        write_wav(target, mask_signal(samples))
    except OSError as exc:
        _fail(ConfigError(f"cannot write {target}: {exc.strerror or exc}"))


ivr_app = typer.Typer(help="Self-service payment lines (IVR).", no_args_is_help=True)
app.add_typer(ivr_app, name="ivr")


@ivr_app.command("render-prompts")
def ivr_render_prompts(
    voice: Annotated[str, typer.Option(help="espeak-ng voice")] = "en-gb",
    speed: Annotated[int, typer.Option(help="words a minute")] = 150,
    folder: Annotated[
        Path | None,
        typer.Option("--out", help="folder for the .ulaw files (default: the package's)"),
    ] = None,
) -> None:
    """Record every standard prompt with espeak-ng as 8 kHz mu-law (run once; commit them)."""
    from transact.ivr.render import default_folder, render_all

    if not 80 <= speed <= 400:
        raise ConfigError("--speed must be 80-400 words a minute")
    target = folder or default_folder()
    written = render_all(target, voice, speed)
    size = sum(path.stat().st_size for path in written)
    out.print(f"wrote {len(written)} prompts ({size // 1024} KiB) to {target}", highlight=False)


voice_app = typer.Typer(help="Speech: spoken card digits, offline.", no_args_is_help=True)
app.add_typer(voice_app, name="voice")


@voice_app.command("digits")
def voice_digits(
    file: Annotated[Path, typer.Argument(help="8 kHz mono WAV, 16-bit PCM or mu-law")],
) -> None:
    """Print the digits spoken in a recording as one string, e.g. 4111111111111111."""
    from transact.kernel.audio import AudioFormatError, read_wav
    from transact.voice.transcriber import recognize_digits

    try:
        samples = read_wav(file)
    except AudioFormatError as exc:
        _fail(exc)
    print(recognize_digits(samples))


simulate_app = typer.Typer(
    help="Play the telephony platform's side of a call.", no_args_is_help=True
)
app.add_typer(simulate_app, name="simulate")


@simulate_app.command("call")
def simulate_call(
    url: Annotated[
        str, typer.Option(help="Transact's base WebSocket URL, e.g. ws://localhost:8000")
    ],
    tenant: Annotated[str, typer.Option(help="tenant name (customParameters.tenant)")],
    token: Annotated[str, typer.Option(help="the tenant's media token")],
    keys: Annotated[str, typer.Option(help="keys the customer presses, e.g. 4111...#1228#")] = "",
    agent: Annotated[str | None, typer.Option(help="agent username, for correlation")] = None,
    call_id: Annotated[str | None, typer.Option(help="callSid (random when left out)")] = None,
    lead_in: Annotated[float, typer.Option(help="seconds of silence before the keys")] = 0.5,
    speech: Annotated[
        Path | None, typer.Option(help="8 kHz WAV played under the keys (talking over them)")
    ] = None,
    agent_wav: Annotated[
        Path | None, typer.Option(help="write what the agent heard to this WAV")
    ] = None,
    ivr: Annotated[
        str | None,
        typer.Option(
            help="a self-service call on this flow (no agent): --keys is then a script, "
            "each '|' waiting for one more prompt, e.g. '||4242424242424242|1228|737|1'"
        ),
    ] = None,
    fast: Annotated[
        bool, typer.Option(help="send audio as fast as possible, not in real time")
    ] = False,
    hang_up: Annotated[
        bool, typer.Option(help="with --ivr: hang up as soon as the script is keyed")
    ] = False,
) -> None:
    """A customer keys digits at human pace; an agent ear records what it hears."""
    import json

    from transact.telephony.audio import read_wav
    from transact.telephony.simulate import CallPlan, save_agent_audio, simulate_ivr_call
    from transact.telephony.simulate import simulate_call as play

    allowed = "0123456789*#ABCDabcd" + ("|" if ivr else "")
    if any(k not in allowed for k in keys):
        raise ConfigError(f"--keys may only hold 0-9, *, # and A-D{', |' if ivr else ''}")
    plan = CallPlan(
        url=url,
        tenant=tenant,
        token=token,
        keys=keys.upper(),
        agent=agent,
        lead_in_ms=int(lead_in * 1000),
        speech=read_wav(speech) if speech else None,
    )
    if call_id:
        plan.call_id = call_id
    plan.realtime = not fast
    if ivr:
        try:
            ivr_report = asyncio.run(simulate_ivr_call(plan, ivr, keys.upper(), hang_up=hang_up))
        except OSError as exc:
            raise ConfigError(f"cannot reach {url}: {exc}") from None
        print(json.dumps(ivr_report.summary()))
        return
    try:
        report = asyncio.run(play(plan))
    except OSError as exc:
        raise ConfigError(f"cannot reach {url}: {exc}") from None
    if agent_wav:
        save_agent_audio(report, agent_wav)
    print(json.dumps(report.summary()))


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
    except typer.TyperException as exc:
        # Usage errors (a missing argument, a bad option) arrive here with standalone
        # mode off; typer vendors click, so its exception is typer's, not click's.
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        sys.exit(int(getattr(exc, "exit_code", 2)))
