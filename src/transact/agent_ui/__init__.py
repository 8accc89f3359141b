"""The Agent UI: the agent's web app (one page, plain ES modules) and the tenant's UI
settings that drive its start menu and say who may embed it."""

from __future__ import annotations

from transact.agent_ui import api, pages
from transact.agent_ui.flow import AgentUi
from transact.kernel import Kernel, Service

__all__ = ["AgentUi", "build"]


def build(kernel: Kernel) -> Service:
    ui = AgentUi(kernel)
    return Service(name="agent-ui", routers=[api.build_router(kernel, ui), pages.build_router(ui)])
