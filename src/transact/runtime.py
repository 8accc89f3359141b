"""The composition root: the one place that knows every service and wires them to a kernel.

Services never import each other; this module imports them all, builds the
kernel from settings and starts the chosen ones. Nothing here does I/O at
import time.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy import MetaData

from transact.kernel import Kernel, Service
from transact.kernel.db import metadata
from transact.kernel.errors import ConfigError
from transact.kernel.http import create_app
from transact.kernel.settings import Settings

ServiceFactory = Callable[[Kernel], Service]


def service_factories() -> dict[str, ServiceFactory]:
    """Every service that is built, by name. A service not built yet is not listed."""
    from transact import (
        agent_ui,
        auth,
        capture,
        communications,
        correlation,
        gateway,
        ivr,
        notifications,
        psp,
        remote,
        reporting,
        telephony,
        voice,
    )

    # The gateway first: the first service's middleware is the outermost.
    return {
        "gateway": gateway.build,
        "auth": auth.build,
        "correlation": correlation.build,
        "capture": capture.build,
        "psp": psp.build,
        "psp-webhooks": psp.build_webhooks,
        "telephony": telephony.build,
        "notifications": notifications.build,
        "communications": communications.build,
        "remote": remote.build,
        "ivr": ivr.build,
        "voice": voice.build,
        "reporting": reporting.build,
        "agent-ui": agent_ui.build,
    }


def all_metadata() -> MetaData:
    """The schema of every service, for migrations (importing a service registers its tables)."""
    import transact.kernel.audit
    import transact.kernel.idempotency  # noqa: F401  (kernel tables beside the outbox and inbox)

    service_factories()
    return metadata


def resolve_services(names: list[str] | None) -> list[str]:
    """Validate the names given to `transact serve`; None means every service."""
    available = service_factories()
    if names is None:
        return list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        listed = ", ".join(sorted(available)) or "none yet"
        raise ConfigError(f"unknown service {', '.join(unknown)}; available: {listed}")
    # The registry's order, not the command line's: the gateway must stay outermost.
    return [name for name in available if name in names]


def build(settings: Settings, names: list[str] | None = None) -> tuple[Kernel, FastAPI]:
    """Kernel plus the ASGI app for the chosen services; the app's lifespan starts them."""
    kernel = Kernel.from_settings(settings)
    factories = service_factories()
    services = [factories[name](kernel) for name in resolve_services(names)]
    app = create_app(kernel, services, manage_kernel=True)
    return kernel, app
