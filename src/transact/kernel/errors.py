"""Errors the kernel raises where an operator, not a programmer, must act."""


class TransactError(Exception):
    """Base of every error Transact raises on purpose."""


class ConfigError(TransactError):
    """Settings are missing or wrong; the message says which and how to fix it."""


class BackendUnavailable(TransactError):
    """A configured backend (database, Redis) cannot be reached."""


class VaultError(TransactError):
    """A vault entry is missing, expired, or does not belong to the asking tenant."""


class ApiError(TransactError):
    """Raise from a route to answer `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
