"""audit appends in one round trip on PostgreSQL

`kernel_audit_append` takes the chain's lock, reads the last hash, computes the new
record's hash and inserts it, on the server: one statement where the application sent
three. Each statement in a PL/pgSQL function reads a fresh snapshot, so the last hash
is read after the lock is held, as before. The hash is the one `record_hash` computes
(SHA-256 of the previous hash and the record's canonical JSON, which the caller sends).
SQLite has no stored functions and needs none: its appends stay in Python.

Revision ID: 0017_audit_append
Revises: 0016_voice
Create Date: 2026-11-27 16:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017_audit_append"
down_revision: str | None = "0016_voice"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND = """
CREATE OR REPLACE FUNCTION kernel_audit_append(
    p_at text, p_tenant_id text, p_actor text, p_action text, p_target text,
    p_outcome text, p_ip text, p_details text,
    p_canonical text, p_lock bigint, p_genesis text
) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    previous text;
    digest text;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    SELECT hash INTO previous FROM kernel_audit ORDER BY seq DESC LIMIT 1;
    previous := coalesce(previous, p_genesis);
    digest := encode(sha256(convert_to(previous || p_canonical, 'UTF8')), 'hex');
    INSERT INTO kernel_audit
        (at, tenant_id, actor, action, target, outcome, ip, details, prev_hash, hash)
    VALUES
        (p_at, p_tenant_id, p_actor, p_action, p_target, p_outcome, p_ip, p_details,
         previous, digest);
    RETURN digest;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS kernel_audit_append("
            "text, text, text, text, text, text, text, text, text, bigint, text)"
        )
