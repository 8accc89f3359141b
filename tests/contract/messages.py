"""Contracts used only by the kernel's own tests."""

from transact.contracts import Message


class Ping(Message):
    topic = "test.ping"
    n: int = 0


class Pong(Message):
    topic = "test.pong"
    n: int = 0
