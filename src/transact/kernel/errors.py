"""Errors the kernel raises where an operator, not a programmer, must act."""


class TransactError(Exception):
    """Base of every error Transact raises on purpose."""


class ConfigError(TransactError):
    """Settings are missing or wrong; the message says which and how to fix it."""


class BackendUnavailable(TransactError):
    """A configured backend (database, Redis) cannot be reached."""


class VaultError(TransactError):
    """A vault entry is missing, expired, or does not belong to the asking tenant."""
