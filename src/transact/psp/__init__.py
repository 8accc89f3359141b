"""PSP adapter: routes each payment to a provider, fails over only when that is safe."""

from __future__ import annotations

from transact.kernel import Kernel, Service
from transact.psp import handlers
from transact.psp.api import build_router
from transact.psp.flow import Psp
from transact.psp.simulator import create_simulator_app
from transact.psp.webhooks import build_webhooks

__all__ = ["Psp", "build", "build_webhooks"]

RECONCILE_SECONDS = 30.0


def build(kernel: Kernel, psp: Psp | None = None) -> Service:
    """The service; pass `psp` to keep a handle on it (the benchmark instruments it)."""
    psp = psp or Psp(kernel, sandbox_app=create_simulator_app())
    service = Service(name="psp", routers=[build_router(kernel, psp)])
    handlers.subscribe(service, psp)

    after = kernel.settings.psp_reconcile_after

    async def reconcile() -> None:
        # Payments left mid-flight by a crash are resolved by asking, never by resending.
        await psp.reconcile(older_than_seconds=after)

    service.on_start.append(reconcile)
    service.on_stop.append(psp.close)
    service.every(min(RECONCILE_SECONDS, max(1.0, after)), reconcile, "reconcile")
    return service
