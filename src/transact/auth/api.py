"""Auth's HTTP face: login, tokens, sessions, MFA, launch links, users, audit, JWKS."""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from transact.auth.accounts import Accounts, Issued
from transact.kernel import Kernel, audit
from transact.kernel.errors import ApiError
from transact.kernel.security import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Principal,
    Role,
    Scope,
    require,
)

Short = Annotated[str, Field(min_length=1, max_length=128)]
Secret = Annotated[str, Field(min_length=1, max_length=256)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginRequest(Body):
    tenant: Short
    username: Short
    password: Secret
    otp: Annotated[str | None, Field(max_length=32)] = None


class TokenRequest(Body):
    client_id: Short
    client_secret: Secret


class EnrolRequest(Body):
    enrolment_token: Annotated[str | None, Field(max_length=128)] = None


class VerifyRequest(EnrolRequest):
    otp: Annotated[str, Field(min_length=6, max_length=6, pattern=r"^[0-9]{6}$")]


class LaunchLinkRequest(Body):
    username: Short


class LaunchRequest(Body):
    tenant: Short
    username: Short
    launch: Annotated[str, Field(min_length=1, max_length=128)]
    otp: Annotated[str | None, Field(max_length=32)] = None


class NewUser(Body):
    username: Short
    role: Role = Role.AGENT
    password: Annotated[str | None, Field(max_length=256)] = None


class MediaTokenRequest(Body):
    keep_previous: bool = False


class UserChange(Body):
    role: Role | None = None
    disabled: bool | None = None
    unlock: bool = False
    reset_mfa: bool = False


def _ip(request: Request) -> str:
    return request.client.host if request.client else ""


def build_router(kernel: Kernel, accounts: Accounts) -> APIRouter:
    router = APIRouter(tags=["auth"])
    auth = kernel.authenticator
    any_user = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
    supervisor = require(auth, Role.SUPERVISOR, Role.ADMIN)
    admin = require(auth, Role.ADMIN)
    launcher = require(auth, scope=Scope.LAUNCH)
    secure_cookies = not kernel.settings.demo

    def signed_in(response: Response, issued: Issued) -> dict[str, Any]:
        if issued.session is not None:
            response.set_cookie(
                SESSION_COOKIE,
                issued.session.id,
                httponly=True,
                secure=secure_cookies,
                samesite="strict",
                path="/",
            )
            # Readable by the Agent UI's script, which echoes it in X-CSRF-Token.
            response.set_cookie(
                CSRF_COOKIE,
                issued.session.csrf,
                httponly=False,
                secure=secure_cookies,
                samesite="strict",
                path="/",
            )
        return issued.body()

    @router.post("/api/v1/auth/login")
    async def login(body: LoginRequest, request: Request, response: Response) -> dict[str, Any]:
        issued = await accounts.login(
            body.tenant, body.username, body.password, body.otp, _ip(request)
        )
        return signed_in(response, issued)

    @router.post("/api/v1/auth/token")
    async def token(body: TokenRequest, request: Request) -> dict[str, Any]:
        issued = await accounts.client_token(body.client_id, body.client_secret, _ip(request))
        return issued.body()

    @router.post("/api/v1/auth/refresh")
    async def refresh(
        response: Response, principal: Annotated[Principal, Depends(any_user)]
    ) -> dict[str, Any]:
        return signed_in(response, await accounts.refresh(principal))

    @router.post("/api/v1/auth/logout", status_code=204)
    async def logout(
        request: Request, principal: Annotated[Principal, Depends(any_user)]
    ) -> Response:
        await accounts.logout(principal, _ip(request))
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    @router.get("/api/v1/auth/me")
    async def me(principal: Annotated[Principal, Depends(any_user)]) -> dict[str, Any]:
        return {
            "id": principal.id,
            "tenant_id": principal.tenant_id,
            "username": principal.name,
            "role": principal.role,
        }

    async def optional_user(request: Request) -> Principal | None:
        has_credentials = request.headers.get("authorization") or request.cookies.get(
            SESSION_COOKIE
        )
        return await auth.principal(request) if has_credentials else None

    @router.post("/api/v1/auth/mfa/enroll")
    async def enroll(
        body: EnrolRequest, principal: Annotated[Principal | None, Depends(optional_user)]
    ) -> dict[str, str]:
        user_id = await accounts.user_for_enrolment(body.enrolment_token, principal)
        return await accounts.start_enrolment(user_id)

    @router.post("/api/v1/auth/mfa/verify")
    async def verify(
        body: VerifyRequest,
        request: Request,
        principal: Annotated[Principal | None, Depends(optional_user)],
    ) -> dict[str, Any]:
        user_id = await accounts.user_for_enrolment(body.enrolment_token, principal)
        codes = await accounts.finish_enrolment(user_id, body.otp, _ip(request))
        return {"mfa_enabled": True, "recovery_codes": codes}

    @router.post("/api/v1/auth/launch-links", status_code=201)
    async def launch_link(
        body: LaunchLinkRequest,
        request: Request,
        principal: Annotated[Principal, Depends(launcher)],
    ) -> dict[str, Any]:
        base = kernel.settings.public_url or str(request.base_url)
        url = await accounts.launch_link(principal, body.username, base)
        return {"url": url, "expires_in": 60}

    @router.post("/api/v1/auth/launch")
    async def launch(body: LaunchRequest, request: Request, response: Response) -> dict[str, Any]:
        issued = await accounts.launch(
            body.tenant, body.username, body.launch, body.otp, _ip(request)
        )
        return signed_in(response, issued)

    @router.get("/.well-known/jwks.json")
    @router.get("/api/v1/auth/jwks")
    async def jwks() -> dict[str, Any]:
        return await accounts.keys.jwks()

    @router.get("/api/v1/admin/users")
    async def list_users(
        principal: Annotated[Principal, Depends(supervisor)],
    ) -> list[dict[str, Any]]:
        from transact.auth import store

        async with kernel.db.transaction() as session:
            found = await store.users_of(session, principal.tenant_id)
        return [u.public() for u in found]

    @router.get("/api/v1/admin/users/{user_id}")
    async def get_user(
        user_id: str, principal: Annotated[Principal, Depends(any_user)]
    ) -> dict[str, Any]:
        from transact.auth import store

        async with kernel.db.transaction() as session:
            user = await store.user_by_id(session, user_id[:64])
        if user is None or not principal.may_read(user.tenant_id, user.id):
            raise ApiError(404, "not_found", "no such resource")
        return user.public()

    @router.post("/api/v1/admin/users", status_code=201)
    async def create_user(
        body: NewUser, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        user, password = await accounts.create_user(
            principal.tenant_id,
            body.username,
            body.role.value,
            body.password,
            actor=principal.actor,
        )
        answer = user.public()
        if body.password is None:
            answer["password"] = password  # shown once, to the admin who asked
        return answer

    @router.patch("/api/v1/admin/users/{user_id}")
    async def change_user(
        user_id: str, body: UserChange, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        user = await accounts.change_user(
            principal,
            user_id[:64],
            role=body.role.value if body.role else None,
            disabled=body.disabled,
            unlock=body.unlock,
            reset_mfa=body.reset_mfa,
        )
        return user.public()

    @router.post("/api/v1/admin/media-tokens", status_code=201)
    async def issue_media_token(
        body: MediaTokenRequest, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        token = await accounts.issue_media_token(
            principal.tenant_id, keep_previous=body.keep_previous, actor=principal.actor
        )
        # Shown once: only its hash is kept.
        return {"token": token, "kept_previous": body.keep_previous}

    @router.get("/api/v1/audit")
    async def audit_records(
        principal: Annotated[Principal, Depends(admin)],
        limit: int = 100,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        if not 1 <= limit <= 1000:
            raise ApiError(422, "invalid_request", "limit must be between 1 and 1000")
        async with kernel.db.transaction() as session:
            return await audit.records_for(session, principal.tenant_id, limit=limit, before=before)

    return router
