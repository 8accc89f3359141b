"""Shared building blocks: the only code a service imports besides `contracts`."""

from transact.kernel.core import Kernel
from transact.kernel.service import Service, Subscription

__all__ = ["Kernel", "Service", "Subscription"]
