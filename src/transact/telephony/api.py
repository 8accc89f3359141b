"""The media stream endpoints: `/media/customer` and `/media/agent` (Twilio Media Streams).

Each socket must open with `connected` (optional) and `start` carrying the tenant's
media token; anything wrong closes it with a reason a person can read in the
platform's logs. After that, messages are put back in sequence order and handed to
the switchboard.
"""

import asyncio
import contextlib
from dataclasses import dataclass

import structlog
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from transact.kernel import Kernel, audit
from transact.kernel.directory import MediaTenant
from transact.telephony import domain
from transact.telephony.bridge import Call, Leg, Switchboard

log = structlog.get_logger("transact.telephony")

POLICY_VIOLATION = 1008
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007


class Refused(Exception):
    """Close the socket with this code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class MediaSession:
    kernel: Kernel
    board: Switchboard
    ws: WebSocket
    kind: domain.LegKind

    async def run(self) -> None:
        await self.ws.accept()
        call: Call | None = None
        leg: Leg | None = None
        clean = False
        try:
            start_seq, start = await asyncio.wait_for(
                self._wait_for_start(), timeout=self.kernel.settings.media_start_timeout
            )
            tenant = await self._authenticate(start)
            leg = self.board.new_leg(self.kind, self.ws, start.stream_sid)
            if start_seq is not None:
                leg.reorder.next_seq = start_seq + 1
            call = await self._attach(tenant, start, leg)
            clean = await self._pump(call, leg)
        except TimeoutError:
            self.board.metrics.refused.labels("no_start").inc()
            await self._close(PROTOCOL_ERROR, "no start message in time")
        except Refused as refused:
            await self._close(refused.code, refused.reason)
        except domain.ProtocolError as exc:
            self.board.metrics.refused.labels("protocol").inc()
            await self._close(PROTOCOL_ERROR if call is None else INVALID_DATA, str(exc))
        except WebSocketDisconnect as gone:
            clean = gone.code in (1000, 1001)
        finally:
            if call is not None and leg is not None:
                await self.board.detach(call, leg, clean=clean)

    async def _receive(self) -> tuple[int | None, domain.Inbound] | None:
        """The next message, or None when the platform closed the socket."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            raise domain.ProtocolError("binary frames are not part of the protocol")
        return domain.parse_message(text)

    async def _wait_for_start(self) -> tuple[int | None, domain.Start]:
        while True:
            received = await self._receive()
            assert received is not None
            seq, message = received
            if isinstance(message, domain.Start):
                return seq, message
            if not isinstance(message, domain.Ignored):
                raise domain.ProtocolError("the stream must begin with a start message")

    async def _authenticate(self, start: domain.Start) -> MediaTenant:
        name = start.params.get("tenant", "")
        tenant = await self.kernel.directory.media_tenant(name) if name else None
        if tenant is None or not tenant.accepts(start.params.get("token", "")):
            self.board.metrics.refused.labels("credentials").inc()
            await self._audit_refusal(tenant, start)
            raise Refused(POLICY_VIOLATION, "invalid media credentials (tenant or token)")
        return tenant

    async def _audit_refusal(self, tenant: MediaTenant | None, start: domain.Start) -> None:
        client = self.ws.client
        async with self.kernel.db.transaction() as session:
            await audit.append(
                session,
                action="telephony.stream_refused",
                actor="anonymous",
                tenant_id=tenant.tenant_id if tenant else None,
                target=f"{self.kind}:{start.call_sid}",
                outcome="failure",
                ip=client.host if client else "",
                details={"tenant_named": start.params.get("tenant", "")[:64]},
            )
        log.warning("telephony.stream_refused", leg=self.kind, call_id=start.call_sid)

    async def _attach(self, tenant: MediaTenant, start: domain.Start, leg: Leg) -> Call:
        if self.kind == "customer":
            return await self.board.attach_customer(tenant.tenant_id, start, leg)
        call_id = start.params.get("call", "")
        if not call_id:
            raise domain.ProtocolError(
                "customParameters.call (the customer leg's callSid) is missing"
            )
        return await self.board.attach_agent(tenant.tenant_id, call_id[:64], leg)

    async def _pump(self, call: Call, leg: Leg) -> bool:
        """Media until the platform stops; True when it ended cleanly."""
        while not call.ended:
            received = await self._receive()
            assert received is not None
            seq, message = received
            for ready in leg.reorder.push(seq, message):
                if await self._handle(call, leg, ready):
                    for late in leg.reorder.flush():
                        await self._handle(call, leg, late)
                    return True
        return True

    async def _handle(self, call: Call, leg: Leg, message: domain.Inbound) -> bool:
        """Apply one message in order; True for `stop`."""
        if isinstance(message, domain.Media):
            await self.board.media(call, leg, message.payload)
        elif isinstance(message, domain.Dtmf):
            await self.board.out_of_band_key(call, leg, message.digit)
        elif isinstance(message, domain.Mark):
            await self.board.prompt_marked(call, leg, message.name)
        elif isinstance(message, domain.Stop):
            return True
        elif isinstance(message, domain.Start):
            raise domain.ProtocolError("a second start message on one stream")
        return False

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError):  # already closing
                await self.ws.close(code=code, reason=reason[:120])


def build_router(kernel: Kernel, board: Switchboard) -> APIRouter:
    router = APIRouter()

    @router.websocket("/media/customer")
    async def customer(ws: WebSocket) -> None:
        await MediaSession(kernel, board, ws, "customer").run()

    @router.websocket("/media/agent")
    async def agent(ws: WebSocket) -> None:
        await MediaSession(kernel, board, ws, "agent").run()

    return router
