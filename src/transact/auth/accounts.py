"""Auth's use cases: each one a transaction over its store, an audit record, and an answer.

The HTTP routes (api.py) and the admin commands (the CLI) both call these.
Failures that must be remembered (a failed login counts towards lockout) are
committed before the error is raised.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

import segno
from sqlalchemy.exc import IntegrityError

from transact.auth import domain, store
from transact.auth.keys import SigningKeys
from transact.contracts import utcnow
from transact.kernel import Kernel, audit
from transact.kernel.directory import DirectoryUser, MediaTenant, token_hash
from transact.kernel.errors import ApiError
from transact.kernel.security import Principal, Session

INVALID = ApiError(401, "invalid_credentials", "tenant, username, password or code is wrong")
LOCKED = ApiError(423, "account_locked", "too many failed attempts; try again in 30 minutes")
ENROL_TTL = 600.0
DEMO_TENANT = "demo"
DEMO_AGENT = "agent1"
MEDIA_TOKEN_MIN_LENGTH = 24


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    access_token: str
    expires_in: int
    session: Session | None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }
        if self.session is not None:
            body["csrf_token"] = self.session.csrf
        return body


class Accounts:
    def __init__(self, kernel: Kernel, keys: SigningKeys) -> None:
        self.kernel = kernel
        self.keys = keys

    # --- administration -------------------------------------------------------------

    async def create_tenant(
        self,
        name: str,
        *,
        mfa_required: bool = True,
        mfa_delegated_to_sso: bool = False,
        actor: str = "system",
    ) -> store.Tenant:
        tenant = store.Tenant(
            domain.new_id("ten"), domain.check_tenant_name(name), mfa_required, mfa_delegated_to_sso
        )
        try:
            async with self.kernel.db.transaction() as session:
                await store.add_tenant(session, tenant)
                await audit.append(
                    session,
                    action="auth.tenant_created",
                    actor=actor,
                    tenant_id=tenant.id,
                    target=name,
                    details={"mfa_required": mfa_required},
                )
        except IntegrityError:
            raise ApiError(409, "tenant_exists", f"a tenant named {name!r} exists") from None
        return tenant

    async def tenant(self, name: str) -> store.Tenant:
        async with self.kernel.db.transaction() as session:
            tenant = await store.tenant_by_name(session, name)
        if tenant is None:
            raise ApiError(404, "not_found", f"no tenant named {name!r}")
        return tenant

    async def create_user(
        self,
        tenant_id: str,
        username: str,
        role: str,
        password: str | None = None,
        *,
        actor: str = "system",
    ) -> tuple[store.User, str]:
        """Returns the user and its password (generated when none was given)."""
        password = domain.check_password(password) if password else domain.generate_password()
        checked_role = domain.check_role(role)
        user_id = domain.new_id("usr")
        try:
            async with self.kernel.db.transaction() as session:
                await store.add_user(
                    session,
                    user_id=user_id,
                    tenant_id=tenant_id,
                    username=domain.check_username(username),
                    password_hash=domain.hash_secret(password),
                    role=checked_role.value,
                )
                await audit.append(
                    session,
                    action="auth.user_created",
                    actor=actor,
                    tenant_id=tenant_id,
                    target=user_id,
                    details={"username": username, "role": checked_role.value},
                )
                user = await store.user_by_id(session, user_id)
        except IntegrityError:
            raise ApiError(409, "user_exists", f"a user named {username!r} exists") from None
        assert user is not None
        await self._publish_user(user)
        return user, password

    async def set_password(self, user_id: str, password: str, *, actor: str) -> None:
        async with self.kernel.db.transaction() as session:
            user = await store.user_by_id(session, user_id)
            if user is None:
                raise ApiError(404, "not_found", "no such user")
            await store.update_user(
                session,
                user_id,
                password_hash=domain.hash_secret(domain.check_password(password)),
                failed_attempts=0,
                locked_until=None,
            )
            await audit.append(
                session,
                action="auth.password_set",
                actor=actor,
                tenant_id=user.tenant_id,
                target=user_id,
            )

    async def change_user(
        self,
        principal: Principal,
        user_id: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        unlock: bool = False,
        reset_mfa: bool = False,
    ) -> store.User:
        async with self.kernel.db.transaction() as session:
            user = await store.user_by_id(session, user_id)
            if user is None or user.tenant_id != principal.tenant_id:
                raise ApiError(404, "not_found", "no such resource")
            values: dict[str, Any] = {}
            if role is not None:
                values["role"] = domain.check_role(role).value
            if disabled is not None:
                values["disabled"] = disabled
            if unlock:
                values.update(failed_attempts=0, locked_until=None)
            if reset_mfa:
                values.update(
                    mfa_enabled=False, mfa_secret=None, totp_last_step=None, recovery_hashes=[]
                )
            if values:
                await store.update_user(session, user_id, **values)
                changes = {k: v for k, v in values.items() if k != "recovery_hashes"}
                await audit.append(
                    session,
                    action="auth.user_changed",
                    actor=principal.actor,
                    tenant_id=user.tenant_id,
                    target=user_id,
                    details={k: str(v) for k, v in changes.items() if k != "mfa_secret"},
                )
            changed = await store.user_by_id(session, user_id)
        assert changed is not None
        await self._publish_user(changed)
        return changed

    async def create_client(
        self,
        tenant_id: str,
        name: str,
        scopes: list[str],
        *,
        actor: str = "system",
    ) -> tuple[store.Client, str]:
        secret = "sec_" + secrets.token_urlsafe(32)
        client = store.Client(
            domain.new_id("cli"),
            tenant_id,
            name[:128],
            domain.hash_secret(secret),
            domain.check_scopes(scopes),
            False,
        )
        async with self.kernel.db.transaction() as session:
            await store.add_client(session, client)
            await audit.append(
                session,
                action="auth.client_created",
                actor=actor,
                tenant_id=tenant_id,
                target=client.id,
                details={"scopes": client.scopes},
            )
        return client, secret

    # --- signing in -----------------------------------------------------------------

    async def login(
        self,
        tenant_name: str,
        username: str,
        password: str,
        otp: str | None,
        ip: str,
    ) -> Issued:
        outcome, error, user = await self._check_login(tenant_name, username, password, otp, ip)
        if error is not None:
            raise error
        assert user is not None
        return await self._sign_in(user, ip, outcome)

    async def _check_login(
        self,
        tenant_name: str,
        username: str,
        password: str,
        otp: str | None,
        ip: str,
    ) -> tuple[str, ApiError | None, store.User | None]:
        """Decide, and commit what must be remembered, before any error is raised."""
        now = utcnow()
        async with self.kernel.db.transaction() as session:
            tenant = await store.tenant_by_name(session, tenant_name)
            user = await store.user_by_name(session, tenant.id, username) if tenant else None
            if tenant is None or user is None or user.disabled:
                domain.verify_secret(None, password)  # the same work as for a real user
                locked = await self._unknown_user_failure(tenant_name, username)
                await audit.append(
                    session,
                    action="auth.login_failed",
                    actor="anonymous",
                    tenant_id=tenant.id if tenant else None,
                    target=username,
                    outcome="failure",
                    ip=ip,
                    details={"reason": "unknown_user"},
                )
                return "failure", LOCKED if locked else INVALID, None
            lock = domain.Lockout(user.failed_attempts, user.locked_until)
            if lock.locked(now):
                await audit.append(
                    session,
                    action="auth.login_refused",
                    actor="anonymous",
                    tenant_id=tenant.id,
                    target=user.id,
                    outcome="failure",
                    ip=ip,
                    details={"reason": "locked"},
                )
                return "failure", LOCKED, None
            if not domain.verify_secret(user.password_hash, password):
                return "failure", await self._failure(session, user, lock, ip, "password"), None
            needs_mfa = tenant.mfa_required or user.mfa_enabled
            if needs_mfa and not user.mfa_enabled:
                ticket = await self._enrolment_ticket(user)
                return (
                    "enrol",
                    ApiError(
                        403,
                        "mfa_enrolment_required",
                        "this tenant requires MFA: enrol an authenticator app first",
                        enrolment_token=ticket,
                    ),
                    None,
                )
            if needs_mfa:
                if not otp:
                    return (
                        "otp",
                        ApiError(401, "otp_required", "enter the code from your authenticator app"),
                        None,
                    )
                if not await self._second_factor(session, user, otp, now):
                    return "failure", await self._failure(session, user, lock, ip, "otp"), None
            await store.update_user(session, user.id, failed_attempts=0, locked_until=None)
            return "success", None, user

    async def _unknown_user_failure(self, tenant_name: str, username: str) -> bool:
        """Unknown users lock out exactly like real ones, so lockout reveals nothing."""
        key = f"auth:unknown-failures:{_hash_token(tenant_name + '/' + username)}"
        count = await self.kernel.cache.incr(key, ttl=domain.LOCKOUT.total_seconds())
        return count > domain.MAX_FAILED_ATTEMPTS - 1

    async def _failure(
        self,
        session: Any,
        user: store.User,
        lock: domain.Lockout,
        ip: str,
        reason: str,
    ) -> ApiError:
        after = lock.after_failure(utcnow())
        await store.update_user(
            session, user.id, failed_attempts=after.failed_attempts, locked_until=after.locked_until
        )
        await audit.append(
            session,
            action="auth.login_failed",
            actor="anonymous",
            tenant_id=user.tenant_id,
            target=user.id,
            outcome="failure",
            ip=ip,
            details={"reason": reason},
        )
        if after.locked_until is not None:
            await audit.append(
                session,
                action="auth.locked_out",
                actor="system",
                tenant_id=user.tenant_id,
                target=user.id,
                outcome="failure",
                ip=ip,
                details={"until": after.locked_until.isoformat()},
            )
            return LOCKED
        return INVALID

    async def _second_factor(
        self,
        session: Any,
        user: store.User,
        otp: str,
        now: Any,
    ) -> bool:
        otp = otp.strip().lower()
        if domain.looks_like_recovery_code(otp):
            for i, stored in enumerate(user.recovery_hashes):
                if domain.verify_secret(stored, otp):
                    remaining = user.recovery_hashes[:i] + user.recovery_hashes[i + 1 :]
                    await store.update_user(session, user.id, recovery_hashes=remaining)
                    await audit.append(
                        session,
                        action="auth.recovery_code_used",
                        actor=f"user:{user.id}",
                        tenant_id=user.tenant_id,
                        target=user.id,
                        details={"remaining": len(remaining)},
                    )
                    return True
            return False
        secret = self._mfa_secret(user)
        step = domain.totp_step(secret, otp, now, user.totp_last_step) if secret else None
        if step is None:
            return False
        await store.update_user(session, user.id, totp_last_step=step)
        return True

    def _mfa_secret(self, user: store.User) -> str | None:
        if user.mfa_secret is None:
            return None
        return self.kernel.vault.unseal(
            user.tenant_id, user.mfa_secret, f"mfa:{user.id}".encode()
        ).decode()

    async def _sign_in(self, user: store.User, ip: str, how: str) -> Issued:
        session = await self.kernel.sessions.create(
            tenant_id=user.tenant_id, user_id=user.id, username=user.username, role=user.role
        )
        async with self.kernel.db.transaction() as db:
            await audit.append(
                db,
                action="auth.login",
                actor=f"user:{user.id}",
                tenant_id=user.tenant_id,
                target=user.id,
                ip=ip,
                details={"session": _hash_token(session.id)[:16], "via": how},
            )
        return await self._issue(session)

    async def _issue(self, session: Session) -> Issued:
        ttl = self.kernel.settings.access_token_ttl
        claims = domain.user_claims(
            user_id=session.user_id,
            tenant_id=session.tenant_id,
            username=session.username,
            role=session.role,
            session_id=session.id,
            now=utcnow(),
            ttl=ttl,
        )
        return Issued(await self.keys.sign(claims), int(ttl), session)

    async def refresh(self, principal: Principal) -> Issued:
        if principal.session_id is None:
            raise ApiError(
                400,
                "not_refreshable",
                "API client tokens are not refreshed; ask for a new one with your credentials",
            )
        session = await self.kernel.sessions.touch(principal.session_id)
        if session is None:
            raise ApiError(401, "session_expired", "the session has ended; sign in again")
        return await self._issue(session)

    async def logout(self, principal: Principal, ip: str) -> None:
        if principal.session_id:
            await self.kernel.sessions.end(principal.session_id)
        async with self.kernel.db.transaction() as session:
            await audit.append(
                session,
                action="auth.logout",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=principal.id,
                ip=ip,
            )

    async def client_token(self, client_id: str, client_secret: str, ip: str) -> Issued:
        async with self.kernel.db.transaction() as session:
            client = await store.client_by_id(session, client_id[:64])
            ok = domain.verify_secret(client.secret_hash if client else None, client_secret)
            if client is None or client.disabled or not ok:
                await audit.append(
                    session,
                    action="auth.client_token_refused",
                    actor="anonymous",
                    tenant_id=client.tenant_id if client else None,
                    target=client_id[:64],
                    outcome="failure",
                    ip=ip,
                )
                failed = True
            else:
                await audit.append(
                    session,
                    action="auth.client_token",
                    actor=f"client:{client.id}",
                    tenant_id=client.tenant_id,
                    target=client.id,
                    ip=ip,
                )
                failed = False
        if failed or client is None:
            raise ApiError(401, "invalid_client", "client id or secret is wrong")
        claims = domain.client_claims(
            client_id=client.id,
            tenant_id=client.tenant_id,
            name=client.name,
            scopes=client.scopes,
            now=utcnow(),
        )
        return Issued(await self.keys.sign(claims), domain.CLIENT_TOKEN_TTL, None)

    # --- MFA enrolment --------------------------------------------------------------

    async def _enrolment_ticket(self, user: store.User) -> str:
        ticket = secrets.token_urlsafe(32)
        await self.kernel.cache.set(
            f"auth:enrol:{_hash_token(ticket)}", user.id.encode(), ENROL_TTL
        )
        return ticket

    async def user_for_enrolment(self, ticket: str | None, principal: Principal | None) -> str:
        if principal is not None and principal.kind == "user":
            return principal.id
        if ticket:
            user_id = await self.kernel.cache.get(f"auth:enrol:{_hash_token(ticket)}")
            if user_id is not None:
                return user_id.decode()
        raise ApiError(401, "unauthenticated", "sign in, or use the enrolment token from login")

    async def start_enrolment(self, user_id: str) -> dict[str, str]:
        secret = domain.new_totp_secret()
        async with self.kernel.db.transaction() as session:
            user = await store.user_by_id(session, user_id)
            tenant = await store.tenant_by_id(session, user.tenant_id) if user else None
            if user is None or tenant is None:
                raise ApiError(404, "not_found", "no such user")
            sealed = self.kernel.vault.seal(
                user.tenant_id, secret.encode(), f"mfa-pending:{user.id}".encode()
            )
            await self.kernel.cache.set(f"auth:mfa-pending:{user.id}", sealed, ENROL_TTL)
        uri = domain.otpauth_uri(secret, tenant.name, user.username)
        return {
            "otpauth_uri": uri,
            "secret": secret,
            "qr_svg": segno.make(uri, error="m").svg_inline(scale=4),
        }

    async def finish_enrolment(self, user_id: str, otp: str, ip: str) -> list[str]:
        async with self.kernel.db.transaction() as session:
            user = await store.user_by_id(session, user_id)
            sealed = await self.kernel.cache.get(f"auth:mfa-pending:{user_id}")
            if user is None or sealed is None:
                raise ApiError(409, "no_enrolment", "start the enrolment first")
            secret = self.kernel.vault.unseal(
                user.tenant_id, sealed, f"mfa-pending:{user.id}".encode()
            ).decode()
            step = domain.totp_step(secret, otp.strip(), utcnow(), None)
            if step is None:
                raise ApiError(422, "invalid_otp", "that code does not match; try the next one")
            codes = domain.new_recovery_codes()
            await store.update_user(
                session,
                user.id,
                mfa_enabled=True,
                totp_last_step=step,
                mfa_secret=self.kernel.vault.seal(
                    user.tenant_id, secret.encode(), f"mfa:{user.id}".encode()
                ),
                recovery_hashes=[domain.hash_secret(c) for c in codes],
            )
            await audit.append(
                session,
                action="auth.mfa_enrolled",
                actor=f"user:{user.id}",
                tenant_id=user.tenant_id,
                target=user.id,
                ip=ip,
            )
        await self.kernel.cache.delete(f"auth:mfa-pending:{user_id}")
        return codes

    # --- launch from a CRM ----------------------------------------------------------

    async def launch_link(self, principal: Principal, username: str, base_url: str) -> str:
        async with self.kernel.db.transaction() as session:
            tenant = await store.tenant_by_id(session, principal.tenant_id)
            user = await store.user_by_name(session, principal.tenant_id, username)
            if tenant is None or user is None or user.disabled:
                raise ApiError(404, "not_found", "no such user in your tenant")
            token = secrets.token_urlsafe(32)
            await self.kernel.cache.set(
                f"auth:launch:{_hash_token(token)}",
                json.dumps({"user": user.id}).encode(),
                domain.LAUNCH_TTL,
            )
            await audit.append(
                session,
                action="auth.launch_link_created",
                actor=principal.actor,
                tenant_id=tenant.id,
                target=user.id,
            )
        from urllib.parse import urlencode

        query = urlencode({"tenant": tenant.name, "username": username, "launch": token})
        return f"{base_url.rstrip('/')}/?{query}"

    async def launch(
        self,
        tenant_name: str,
        username: str,
        token: str,
        otp: str | None,
        ip: str,
    ) -> Issued:
        key = f"auth:launch:{_hash_token(token)}"
        user, error = await self._check_launch(key, tenant_name, username, otp, ip)
        if error is not None:
            raise error
        # Single use: of two requests racing with one link, only one takes it.
        if user is None or await self.kernel.cache.take(key) is None:
            raise ApiError(401, "invalid_launch", "the launch link is wrong, used or expired")
        return await self._sign_in(user, ip, "launch")

    async def _check_launch(
        self,
        key: str,
        tenant_name: str,
        username: str,
        otp: str | None,
        ip: str,
    ) -> tuple[store.User | None, ApiError | None]:
        raw = await self.kernel.cache.get(key)
        async with self.kernel.db.transaction() as session:
            tenant = await store.tenant_by_name(session, tenant_name)
            user = await store.user_by_name(session, tenant.id, username) if tenant else None
            if (
                raw is None
                or tenant is None
                or user is None
                or user.disabled
                or json.loads(raw)["user"] != user.id
            ):
                await audit.append(
                    session,
                    action="auth.launch_refused",
                    actor="anonymous",
                    tenant_id=tenant.id if tenant else None,
                    target=username,
                    outcome="failure",
                    ip=ip,
                )
                return None, ApiError(
                    401, "invalid_launch", "the launch link is wrong, used or expired"
                )
            # MFA still applies unless the tenant lets its SSO vouch for the second factor.
            needs_mfa = (tenant.mfa_required or user.mfa_enabled) and not (
                tenant.mfa_delegated_to_sso
            )
            if needs_mfa and not otp:
                return None, ApiError(
                    401, "otp_required", "enter the code from your authenticator app"
                )
            if needs_mfa and not await self._second_factor(session, user, otp or "", utcnow()):
                lock = domain.Lockout(user.failed_attempts, user.locked_until)
                return None, await self._failure(session, user, lock, ip, "otp")
        return user, None

    # --- media tokens and the directory -------------------------------------------------

    async def issue_media_token(
        self,
        tenant_id: str,
        *,
        token: str | None = None,
        keep_previous: bool = False,
        actor: str = "system",
    ) -> str:
        """A new secret the telephony platform sends with each media stream of this tenant.

        Only its hash is stored. Earlier tokens stop working unless `keep_previous`, which
        lets an operator roll the new one out to the telephony platform before revoking.
        """
        if token is None:
            token = "mt_" + secrets.token_urlsafe(32)
        elif len(token) < MEDIA_TOKEN_MIN_LENGTH:
            raise ApiError(
                422,
                "weak_media_token",
                f"a media token needs at least {MEDIA_TOKEN_MIN_LENGTH} characters",
            )
        token_id = domain.new_id("mtk")
        async with self.kernel.db.transaction() as session:
            tenant = await store.tenant_by_id(session, tenant_id)
            if tenant is None:
                raise ApiError(404, "not_found", "no such tenant")
            await store.add_media_token(session, token_id, tenant_id, token_hash(token))
            if not keep_previous:
                await store.revoke_media_tokens(session, tenant_id, except_id=token_id)
            await audit.append(
                session,
                action="auth.media_token_issued",
                actor=actor,
                tenant_id=tenant_id,
                target=token_id,
                details={"kept_previous": keep_previous},
            )
        await self._publish_media(tenant)
        return token

    async def publish_directory(self) -> None:
        """Write every user and media token hash to the directory other services read."""
        async with self.kernel.db.transaction() as session:
            tenants = await store.all_tenants(session)
            users = [u for t in tenants for u in await store.users_of(session, t.id)]
        for tenant in tenants:
            await self._publish_media(tenant)
        for user in users:
            await self._publish_user(user)

    async def _publish_user(self, user: store.User) -> None:
        await self.kernel.directory.put_user(
            DirectoryUser(user.id, user.tenant_id, user.username, user.role, user.disabled)
        )

    async def _publish_media(self, tenant: store.Tenant) -> None:
        async with self.kernel.db.transaction() as session:
            hashes = await store.active_media_hashes(session, tenant.id)
        await self.kernel.directory.put_media_tenant(
            MediaTenant(tenant.id, tenant.name, tuple(hashes))
        )

    # --- demo -------------------------------------------------------------------------

    async def seed_demo(self, password: str, media_token: str | None = None) -> None:
        """The demo tenant (MFA optional) and its agent `agent1`, whose password (and the
        tenant's media token) is reset on every demo start so what is printed works."""
        async with self.kernel.db.transaction() as session:
            tenant = await store.tenant_by_name(session, DEMO_TENANT)
        if tenant is None:
            tenant = await self.create_tenant(DEMO_TENANT, mfa_required=False)
        async with self.kernel.db.transaction() as session:
            user = await store.user_by_name(session, tenant.id, DEMO_AGENT)
        if user is None:
            await self.create_user(tenant.id, DEMO_AGENT, "agent", password)
        else:
            await self.set_password(user.id, password, actor="system")
        if media_token is not None:
            await self.issue_media_token(tenant.id, token=media_token)
