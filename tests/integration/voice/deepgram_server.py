"""A real WebSocket server speaking Deepgram's live audio protocol (`/v1/listen`, as its
documentation describes it), so the adapter is tested against the protocol rather than
against itself. It checks the `Authorization: Token` header and the audio format in the
query, records the audio, and answers from a script: each utterance's alternatives
after each `utterance_bytes` of audio, an interim result first (which a client must not
take as final), the rest of the script when the client sends `CloseStream`, then a
`Metadata` message and a normal close."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

KEY = "dg-test-key"


@dataclass
class ListenServer:
    script: list[list[str]]  # each utterance: its alternatives, best first
    utterance_bytes: int = 16000  # one second of 8 kHz linear16
    close_code: int | None = None  # close with this code after the first utterance
    audio: bytearray = field(default_factory=bytearray)
    queries: list[dict[str, str]] = field(default_factory=list)
    control: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    keys: tuple[str, ...] = (KEY,)  # the accounts this server knows
    accounts: list[str] = field(default_factory=list)  # the key each accepted stream used
    max_streams: int | None = None  # refuse every stream after this many (a revoked key)

    def check(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != "/v1/listen":
            return connection.respond(HTTPStatus.NOT_FOUND, "no such endpoint\n")
        token = request.headers.get("Authorization", "")
        spent = self.max_streams is not None and len(self.accounts) >= self.max_streams
        if spent or token.removeprefix("Token ") not in self.keys or not token.startswith("Token "):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid credentials\n")
        self.accounts.append(token.removeprefix("Token "))
        return None

    def handle(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        query = {k: v[0] for k, v in parse_qs(urlsplit(connection.request.path).query).items()}
        self.queries.append(query)
        script = list(self.script)
        answered = 0
        for message in connection:
            if isinstance(message, bytes):
                self.audio += message
                while script and len(self.audio) >= (answered + 1) * self.utterance_bytes:
                    connection.send(results(script[0][:1], final=False))
                    connection.send(results(script.pop(0), final=True))
                    answered += 1
                    if self.close_code is not None:
                        connection.close(self.close_code, "internal error")
                        return
                continue
            control = json.loads(message)
            self.control.append(control)
            if control.get("type") == "CloseStream":
                for alternatives in script:
                    connection.send(results(alternatives, final=True, from_finalize=True))
                connection.send(json.dumps({"type": "Metadata", "request_id": "r1"}))
                connection.close()
                return


def results(alternatives: list[str], *, final: bool, from_finalize: bool = False) -> str:
    return json.dumps(
        {
            "type": "Results",
            "channel_index": [0, 1],
            "start": 0.0,
            "duration": 1.0,
            "is_final": final,
            "speech_final": final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {"transcript": text, "confidence": 0.9, "words": []} for text in alternatives
                ]
            },
            "metadata": {"request_id": "r1", "model_info": {"name": "nova-2-phonecall"}},
        }
    )


@contextmanager
def listen_server(server: ListenServer) -> Iterator[ListenServer]:
    with serve(server.handle, "127.0.0.1", 0, process_request=server.check) as running:
        port = running.socket.getsockname()[1]
        server.url = f"ws://127.0.0.1:{port}/v1/listen"
        thread = threading.Thread(target=running.serve_forever, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            running.shutdown()
            thread.join(timeout=5)
