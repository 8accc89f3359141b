"""`/ws/agent`: the Agent UI's push channel (protocol in docs/notifications.md).

The handshake decides who is asking, from (in this order) an `Authorization: Bearer`
header, the session cookie of a page on our own origin, or a first `auth` message;
never from the URL. Then the socket follows one stream (the agent's own events, or
the tenant's for a supervisor) and `hub.Connection` does all the sending.
"""

# No `from __future__ import annotations`, like every api module (FastAPI reads hints).

import asyncio
import contextlib
from dataclasses import dataclass

import structlog
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from transact.kernel import Kernel
from transact.kernel.errors import ApiError
from transact.kernel.security import SESSION_COOKIE, Principal
from transact.notifications import domain
from transact.notifications.domain import Scope
from transact.notifications.flow import Notifications
from transact.notifications.hub import Connection, Follow, Hub, ResumeFrom, Say

log = structlog.get_logger("transact.notifications")

MAX_SOCKETS_PER_USER = 8  # tabs and screens of one person, per instance


class Refused(Exception):
    """Close the socket with this code and reason before it follows anything."""

    def __init__(self, code: int, reason: str, metric: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.metric = metric


class _BadFrame(Exception):
    """A frame outside the protocol (binary, too long): close with this code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Handshake:
    principal: Principal
    after: int | None  # from the query string or the auth message
    scope: Scope


def _unauthenticated(problem: ApiError) -> Refused:
    return Refused(domain.UNAUTHENTICATED, f"{problem.code}: {problem.message}", problem.code)


class PushSession:
    def __init__(
        self, kernel: Kernel, hub: Hub, notifications: Notifications, ws: WebSocket
    ) -> None:
        self.kernel = kernel
        self.settings = kernel.settings
        self.hub = hub
        self.notifications = notifications
        self.ws = ws

    async def run(self) -> None:
        await self.ws.accept()
        try:
            handshake = await self._handshake()
            self._admit(handshake.principal)
        except Refused as refused:
            self.hub.metrics.refused.labels(refused.metric).inc()
            log.info("notifications.socket_refused", reason=refused.metric)
            await self._close(refused.code, refused.reason)
            return
        except WebSocketDisconnect:
            return
        await self._serve(handshake)

    # --- who is asking ------------------------------------------------------------------

    async def _handshake(self) -> Handshake:
        query = self.ws.query_params
        if domain.token_in_query(query.keys()):
            raise Refused(
                domain.POLICY_VIOLATION,
                "credentials in the URL are refused: use the Authorization header, "
                "the session cookie or an auth message",
                "token_in_url",
            )
        try:
            after = None if query.get("after") is None else domain.parse_id(query["after"])
            scope = domain.parse_scope(query.get("scope", Scope.AGENT.value))
        except domain.Rejected as problem:
            raise Refused(domain.POLICY_VIOLATION, problem.message, "bad_query") from None
        principal, sent_after = await self._principal()
        return Handshake(principal, after if sent_after is None else sent_after, scope)

    async def _principal(self) -> tuple[Principal, int | None]:
        authenticator = self.kernel.authenticator
        authorization = self.ws.headers.get("authorization")
        try:
            if authorization is not None:
                scheme, _, token = authorization.partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    raise ApiError(401, "invalid_token", "use 'Authorization: Bearer <token>'")
                return await authenticator.from_token(token.strip()), None
            session_id = self.ws.cookies.get(SESSION_COOKIE)
            if session_id:
                self._check_origin()
                return await authenticator.from_session(session_id), None
            auth = await self._auth_message()
            return await authenticator.from_token(auth.token), auth.after
        except ApiError as problem:
            raise _unauthenticated(problem) from None

    def _check_origin(self) -> None:
        origin = self.ws.headers.get("origin")
        if not domain.origin_allowed(origin, self.ws.headers.get("host"), self.settings.public_url):
            raise Refused(
                domain.FORBIDDEN,
                "the session cookie is accepted from this site's own pages only "
                "(Origin); other clients use a bearer token",
                "origin",
            )

    async def _auth_message(self) -> domain.Auth:
        """A browser cannot set headers on a WebSocket: it may send its token first."""
        try:
            async with asyncio.timeout(self.settings.push_auth_timeout):
                text = await self._receive_text()
        except _BadFrame as problem:
            raise Refused(problem.code, problem.reason, "bad_frame") from None
        except TimeoutError:
            raise Refused(
                domain.UNAUTHENTICATED,
                f'no credentials: send {{"type":"auth","token":...}} within '
                f"{self.settings.push_auth_timeout:g} s",
                "no_credentials",
            ) from None
        try:
            message = domain.parse_client_message(text)
        except (domain.Malformed, domain.Rejected):
            message = None
        if not isinstance(message, domain.Auth):
            raise Refused(
                domain.UNAUTHENTICATED,
                'the first message must be {"type":"auth","token":...}',
                "no_credentials",
            )
        return message

    def _admit(self, principal: Principal) -> None:
        if principal.kind != "user":
            raise Refused(domain.FORBIDDEN, "the push channel is for signed-in users", "not_a_user")
        if self.hub.count(principal.id) >= MAX_SOCKETS_PER_USER:
            raise Refused(
                domain.TOO_MANY,
                f"at most {MAX_SOCKETS_PER_USER} push sockets per user; close one",
                "too_many",
            )

    # --- serving ------------------------------------------------------------------------

    async def _serve(self, handshake: Handshake) -> None:
        principal = handshake.principal
        connection = Connection(
            self.ws,
            user_id=principal.id,
            hub=self.hub,
            log=self.notifications,
            queue_limit=self.settings.push_queue_limit,
            heartbeat=self.settings.push_heartbeat,
            signed_in=lambda: self._signed_in(principal),
        )
        self.hub.add(connection)
        connection.start()
        connection.offer(Say(self._ready(principal)))
        scope = handshake.scope if domain.may_watch(handshake.scope, principal.supervises) else None
        if scope is None:
            connection.offer(Say(domain.error("forbidden", "only supervisors watch the tenant")))
            scope = Scope.AGENT
        connection.offer(self._follow(principal, scope, handshake.after))
        reader = asyncio.create_task(self._read(principal, connection), name="push-reader")
        closed = asyncio.create_task(connection.closed.wait(), name="push-closed")
        try:
            await asyncio.wait({reader, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, closed):
                task.cancel()
            await asyncio.gather(reader, closed, return_exceptions=True)
            await connection.stop()

    def _ready(self, principal: Principal) -> str:
        scopes = [s.value for s in Scope if domain.may_watch(s, principal.supervises)]
        return domain.control(
            "ready",
            user={
                "id": principal.id,
                "tenant_id": principal.tenant_id,
                "username": principal.name,
                "role": principal.role.value if principal.role else None,
            },
            scopes=scopes,
            heartbeat=self.settings.push_heartbeat,
        )

    @staticmethod
    def _follow(principal: Principal, scope: Scope, after: int | None) -> Follow:
        stream = domain.stream_for(scope, principal.tenant_id, principal.id)
        return Follow(scope, stream, after)

    async def _signed_in(self, principal: Principal) -> bool:
        if principal.session_id is None:
            return True
        return await self.kernel.sessions.alive(principal.session_id)

    async def _read(self, principal: Principal, connection: Connection) -> None:
        """The client's messages until it leaves; protocol errors close the socket."""
        try:
            while True:
                text = await self._receive_text()
                try:
                    message = domain.parse_client_message(text)
                except domain.Rejected as problem:
                    connection.offer(Say(domain.error(problem.code, problem.message)))
                    continue
                self._dispatch(principal, connection, message)
        except domain.Malformed as problem:
            connection.close_soon(domain.INVALID_DATA, str(problem))
        except _BadFrame as problem:
            connection.close_soon(problem.code, problem.reason)
        except WebSocketDisconnect:
            return

    def _dispatch(
        self, principal: Principal, connection: Connection, message: domain.ClientMessage
    ) -> None:
        if isinstance(message, domain.Resume):
            connection.offer(ResumeFrom(message.after))
        elif isinstance(message, domain.Subscribe):
            if domain.may_watch(message.scope, principal.supervises):
                connection.offer(self._follow(principal, message.scope, message.after))
            else:
                connection.offer(
                    Say(domain.error("forbidden", "only supervisors watch the tenant"))
                )
        elif isinstance(message, domain.Ping):
            connection.offer(Say(domain.control("pong")))
        elif isinstance(message, domain.Auth):
            connection.offer(Say(domain.error("already_authenticated", "this socket is signed in")))
        # A pong answers our ping: nothing to do.

    async def _receive_text(self) -> str:
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            raise _BadFrame(domain.UNSUPPORTED_DATA, "binary frames are not part of the protocol")
        if len(text) > domain.MAX_CLIENT_MESSAGE:
            raise _BadFrame(domain.MESSAGE_TOO_BIG, "messages are at most 4096 characters")
        return str(text)

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError):  # already closing
                await self.ws.close(code=code, reason=reason[:120])


def build_router(kernel: Kernel, hub: Hub, notifications: Notifications) -> APIRouter:
    router = APIRouter()

    @router.websocket("/ws/agent")
    async def agent_socket(ws: WebSocket) -> None:
        await PushSession(kernel, hub, notifications, ws).run()

    return router
