"""Communications' bus consumer: `message.send`, made once-only by the inbox."""

from __future__ import annotations

from transact.communications.flow import Communications
from transact.contracts import Message
from transact.contracts.messages import MessageSend
from transact.kernel import Service


def subscribe(service: Service, communications: Communications) -> None:
    async def on_send(message: Message) -> None:
        assert isinstance(message, MessageSend)
        await communications.accept(message)

    service.subscribe(MessageSend.topic, on_send)
