"""A local HTTP server that speaks OpenAI's chat-completions wire format, for the assistant's
`openai` provider tests.

    with FakeOpenAI(api_key="sk-test") as fake:
        fake.answer(Reply(content="Hola {{contact.first_name|there}}"))
        provider = OpenAIChatProvider(fake.base_url, "gpt-test", "sk-test")

POST /v1/chat/completions with `Authorization: Bearer <key>` and JSON {model, messages} answers
{id, object: "chat.completion", created, model, choices: [{index, message: {role: "assistant",
content}, finish_reason: "stop"}], usage}. Each request takes the next scripted Reply (the last
one repeats; none scripted: the user's text echoed back): its content (a string, or a function
of the request's JSON), an HTTP status, a delay, a drip (the body sent a few bytes at a time,
for a total deadline), or a raw body (for malformed answers). A wrong key is answered 401 as
OpenAI does, echoing the key. Every request is recorded.

The provider's user message is a JSON object {"text", "protected_tokens"}: `user_text` reads
the text out of it (a plain user message is the text itself).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """What the fake answers to one request."""

    content: str | Callable[[dict[str, Any]], str] | None = None  # None: echo the user's text
    status: int = 200
    delay: float = 0.0  # seconds before answering
    drip: float = 0.0  # seconds between the body's pieces of DRIP_BYTES (0: all at once)
    body: str | None = None  # a raw body instead of a chat completion


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    json: dict[str, Any]

    @property
    def system_prompt(self) -> str:
        return next(m["content"] for m in self.json["messages"] if m["role"] == "system")

    @property
    def user_message(self) -> str:
        return user_message(self.json)

    @property
    def user_text(self) -> str:
        return user_text(self.json)

    @property
    def protected_tokens(self) -> list[str]:
        return list(json.loads(self.user_message)["protected_tokens"])


DRIP_BYTES = 8


def user_message(request: dict[str, Any]) -> str:
    """The last user message of a request, as sent."""
    return str([m for m in request["messages"] if m["role"] == "user"][-1]["content"])


def user_text(request: dict[str, Any]) -> str:
    """The text the provider asked about: the "text" of the last user message's JSON object
    (or the message itself when it is not one)."""
    message = user_message(request)
    try:
        data = json.loads(message)
    except ValueError:
        return message
    return str(data["text"]) if isinstance(data, dict) and "text" in data else message


@dataclass
class FakeOpenAI:
    api_key: str = "sk-test-key"
    requests: list[Recorded] = field(default_factory=list)
    _replies: list[Reply] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *replies: Reply) -> None:
        """Scripts the next answers, in order (the last one repeats)."""
        with self._lock:
            self._replies = list(replies)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def _next_reply(self) -> Reply:
        with self._lock:
            if not self._replies:
                return Reply()
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    def __enter__(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: str, drip: float = 0.0) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    if not drip:
                        self.wfile.write(data)
                        return
                    for at in range(0, len(data), DRIP_BYTES):
                        self.wfile.write(data[at : at + DRIP_BYTES])
                        self.wfile.flush()
                        time.sleep(drip)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    request = json.loads(raw)
                except ValueError:
                    request = {}
                fake.requests.append(Recorded(self.path, dict(self.headers.items()), request))
                if self.path != "/v1/chat/completions":
                    self._send(404, json.dumps({"error": {"message": "Not found"}}))
                    return
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                    message = f"Incorrect API key provided: {given}."
                    self._send(401, json.dumps({"error": {"message": message}}))
                    return
                reply = fake._next_reply()
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.body is not None:
                    self._send(reply.status, reply.body)
                    return
                if reply.status != 200:
                    error = {"error": {"message": "The server had an error", "type": "server"}}
                    self._send(reply.status, json.dumps(error))
                    return
                content = reply.content
                if content is None:
                    text = user_text(request)
                elif callable(content):
                    text = content(request)
                else:
                    text = content
                answer = json.dumps(completion(str(request.get("model", "")), text))
                self._send(200, answer, reply.drip)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


def completion(model: str, content: str) -> dict[str, Any]:
    """A chat.completion answer as OpenAI sends it."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }
