"""auth and audit

Revision ID: 0002_auth_audit
Revises: 0001_kernel
Create Date: 2026-11-27 02:40:22.215492
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_auth_audit"
down_revision: str | None = "0001_kernel"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("private_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_auth_signing_keys")),
    )
    op.create_table(
        "auth_tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("mfa_required", sa.Boolean(), nullable=False),
        sa.Column("mfa_delegated_to_sso", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_tenants")),
        sa.UniqueConstraint("name", name=op.f("uq_auth_tenants_name")),
    )
    op.create_table(
        "kernel_audit",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=160), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=160), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_kernel_audit")),
        sa.UniqueConstraint("hash", name=op.f("uq_kernel_audit_hash")),
    )
    with op.batch_alter_table("kernel_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kernel_audit_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "auth_clients",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("secret_hash", sa.String(length=256), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["auth_tenants.id"], name=op.f("fk_auth_clients_tenant_id_auth_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_clients")),
    )
    op.create_table(
        "auth_users",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("mfa_secret", sa.LargeBinary(), nullable=True),
        sa.Column("mfa_enabled", sa.Boolean(), nullable=False),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("recovery_hashes", sa.Text(), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["auth_tenants.id"], name=op.f("fk_auth_users_tenant_id_auth_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_users")),
        sa.UniqueConstraint("tenant_id", "username", name="uq_auth_users_tenant_username"),
    )


def downgrade() -> None:
    op.drop_table("auth_users")
    op.drop_table("auth_clients")
    with op.batch_alter_table("kernel_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kernel_audit_tenant_id"))

    op.drop_table("kernel_audit")
    op.drop_table("auth_tenants")
    op.drop_table("auth_signing_keys")
