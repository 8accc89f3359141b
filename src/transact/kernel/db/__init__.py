"""Database port: SQLAlchemy 2 async on SQLite (embedded) or PostgreSQL (distributed).

Every service declares its tables on the one `metadata` here (prefixed with the
service name) and reads only its own. The kernel's own tables are the
transactional outbox and the handlers' inbox.
"""

from transact.kernel.db.database import Database, first_row, metadata, upsert_insert
from transact.kernel.db.inbox import first_time, handle_once
from transact.kernel.db.outbox import OutboxRelay, add_to_outbox

__all__ = [
    "Database",
    "OutboxRelay",
    "add_to_outbox",
    "first_row",
    "first_time",
    "handle_once",
    "metadata",
    "upsert_insert",
]
