"""Transact: card payments in the middle of a customer conversation."""

__version__ = "0.1.0"
