"""A real HTTP server on loopback that speaks the OpenAI chat-completions API from a script.

    server = OpenAIServer().start()
    server.script("first reply", Fault.status(429, retry_after=0.1), "second reply")
    ... OpenAILLM(LLMConfig(base_url=server.base_url)) ...
    server.stop()

Each POST /v1/chat/completions takes the next item of the script: a reply text (or an
`Answer` with explicit usage), or a `Fault`. GET /v1/models lists `server.models`
(404 when it is None). An empty script answers 400 "script exhausted", which the client
does not retry, so a test that asks for too much fails at once.

Two optional features for benchmarks (benchmarks/bench_search.py), off by default:
`server.responder = fn` answers a request the script does not (fn gets the request's JSON
body and returns a script item, so a reply can depend on the prompt), and `server.latency =
seconds` holds every chat completion that long before answering, as a real model's
generation would. Requests are served concurrently, each on its own thread.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 8 * 1024 * 1024  # refuse larger request bodies
HANDLER_TIMEOUT = 10.0  # seconds a connection may sit idle or half-sent


@dataclass(frozen=True)
class Answer:
    """A successful chat completion; token counts default to word counts."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None  # the model name the server reports; default: the requested one


@dataclass(frozen=True)
class Fault:
    kind: str
    status_code: int = 200
    retry_after: float | None = None
    body: Any = None
    seconds: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"

    @classmethod
    def status(
        cls,
        code: int,
        retry_after: float | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        """An HTTP error; `body` is a dict (sent as JSON), a str, or None for an OpenAI error."""
        if body is None:
            body = {
                "error": {
                    "message": f"scripted failure {code}",
                    "type": "server_error" if code >= 500 else "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
        return cls(
            "status",
            status_code=code,
            retry_after=retry_after,
            body=body,
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def stall(cls, seconds: float, reply: str = "late reply") -> Fault:
        """Wait `seconds` before answering `reply`, so a client with a shorter timeout gives up."""
        return cls("stall", seconds=seconds, body=reply)

    @classmethod
    def garbage(cls, content_type: str = "application/json") -> Fault:
        """A 200 whose body is not JSON (by default while claiming to be)."""
        return cls("garbage", body="<html>this is not an API</html>", content_type=content_type)

    @classmethod
    def empty(cls) -> Fault:
        """A well-formed chat completion with no choices."""
        return cls("empty")

    @classmethod
    def context_length(cls) -> Fault:
        """OpenAI's 400 for a prompt longer than the context window."""
        return cls(
            "status",
            status_code=400,
            body={
                "error": {
                    "message": (
                        "This model's maximum context length is 128000 tokens. However, your "
                        "messages resulted in 130123 tokens. Please reduce the length of the "
                        "messages."
                    ),
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
        )

    @classmethod
    def disconnect(cls) -> Fault:
        """Read the request, then close the connection without answering."""
        return cls("disconnect")


ScriptItem = str | Answer | Fault
Responder = Callable[[Any], ScriptItem]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any


@dataclass
class _State:
    script: deque[ScriptItem] = field(default_factory=deque)
    requests: list[Any] = field(default_factory=list)
    calls: list[RecordedRequest] = field(default_factory=list)
    models: list[str] | None = field(default_factory=lambda: ["gpt-4o-mini", "llama3.2"])
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    counter: int = 0
    responder: Responder | None = None  # answers what the script does not
    latency: float = 0.0  # seconds every chat completion is held before it is answered


def _words(text: str) -> int:
    return len(text.split())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = HANDLER_TIMEOUT
    wbufsize = -1  # buffer the response so it leaves in one write, flushed explicitly
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    # -- plumbing -----------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: Any,
        content_type: str = "application/json",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)
            self.wfile.flush()
        except OSError:  # the client gave up (timeout) and closed its end
            self.close_connection = True

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("request body too large")
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _record(self, body: Any) -> None:
        state = self.server.state
        with state.lock:
            state.calls.append(
                RecordedRequest(
                    self.command,
                    self.path,
                    {name.lower(): value for name, value in self.headers.items()},
                    body,
                )
            )
            if self.command == "POST":
                state.requests.append(body)

    # -- routes -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._record(None)
        models = self.server.state.models
        if self.path.rstrip("/") != "/v1/models" or models is None:
            self._send(404, {"error": {"message": f"no route {self.path}", "code": None}})
            return
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in models]
        self._send(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send(400, {"error": {"message": f"bad request body: {exc}", "code": None}})
            return
        self._record(body)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}", "code": None}})
            return
        state = self.server.state
        with state.lock:
            item = state.script.popleft() if state.script else None
            state.counter += 1
            number = state.counter
            responder, latency = state.responder, state.latency
        if item is None and responder is not None:
            item = responder(body)  # outside the lock: requests in flight answer concurrently
        if latency > 0 and state.stopping.wait(latency):
            self.close_connection = True
            return
        if item is None:
            self._send(
                400,
                {"error": {"message": "openai_server: script exhausted", "code": "exhausted"}},
            )
            return
        if isinstance(item, str):
            item = Answer(item)
        if isinstance(item, Answer):
            self._send(200, self._completion(body, item, number))
            return
        self._fault(item, body, number)

    def _fault(self, fault: Fault, body: Any, number: int) -> None:
        if fault.kind == "status":
            headers = fault.headers
            if fault.retry_after is not None:
                headers = (*headers, ("Retry-After", f"{fault.retry_after:g}"))
            self._send(fault.status_code, fault.body, headers=headers)
        elif fault.kind == "stall":
            if self.server.state.stopping.wait(fault.seconds):
                self.close_connection = True
                return
            self._send(200, self._completion(body, Answer(str(fault.body)), number))
        elif fault.kind == "garbage":
            self._send(200, str(fault.body), content_type=fault.content_type)
        elif fault.kind == "empty":
            completion = self._completion(body, Answer(""), number)
            completion["choices"] = []
            self._send(200, completion)
        elif fault.kind == "disconnect":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        else:  # pragma: no cover - a typo in a test
            raise ValueError(f"unknown fault {fault.kind}")

    @staticmethod
    def _completion(body: Any, answer: Answer, number: int) -> dict[str, Any]:
        body = body if isinstance(body, dict) else {}
        messages = body.get("messages") or []
        contents = [str(m.get("content", "")) for m in messages if isinstance(m, dict)]
        prompt_words = sum(_words(content) for content in contents)
        prompt_tokens = answer.prompt_tokens if answer.prompt_tokens is not None else prompt_words
        completion_tokens = (
            answer.completion_tokens
            if answer.completion_tokens is not None
            else _words(answer.text)
        )
        return {
            "id": f"chatcmpl-test{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": answer.model or str(body.get("model", "unknown")),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, state: _State) -> None:
        self.state = state
        super().__init__(("127.0.0.1", 0), _Handler)


class OpenAIServer:
    """The scripted server; `base_url` is ready to pass to the client once started."""

    def __init__(self) -> None:
        self._state = _State()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> OpenAIServer:
        self._httpd = _Server(self._state)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openai-test-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._state.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the script and what was received -----------------------------------------------------

    def script(self, *items: ScriptItem) -> OpenAIServer:
        """Append responses to the queue, answered in order."""
        with self._state.lock:
            self._state.script.extend(items)
        return self

    @property
    def remaining(self) -> int:
        with self._state.lock:
            return len(self._state.script)

    @property
    def requests(self) -> list[Any]:
        """The JSON body of every POST received, in order."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def calls(self) -> list[RecordedRequest]:
        """Every request received (method, path, headers, body), in order."""
        with self._state.lock:
            return list(self._state.calls)

    @property
    def models(self) -> list[str] | None:
        return self._state.models

    @models.setter
    def models(self, value: list[str] | None) -> None:
        self._state.models = value

    @property
    def responder(self) -> Responder | None:
        return self._state.responder

    @responder.setter
    def responder(self, value: Responder | None) -> None:
        with self._state.lock:
            self._state.responder = value

    @property
    def latency(self) -> float:
        return self._state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        with self._state.lock:
            self._state.latency = seconds

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"
