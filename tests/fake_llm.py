"""A fake OpenAI-compatible chat-completions server for the tests: real HTTP on 127.0.0.1.

    with FakeLLM() as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test-1", max_retries=0)
        fake.behaviour("model-b", "bad_search")       # model-b answers with a SEARCH that misses
        fake.fail("429", times=2, retry_after=0.5)    # the next two calls, any model, are refused
        ...
        assert fake.usage_by_model() == {...}

By default a model answers like a helpful one: it mutates the program in the prompt (the first
```python block of the last user message) with one of the offline operators and returns the
change as a SEARCH/REPLACE block when the prompt mentions that format, else as a whole program.
Behaviours make a model answer badly on purpose; faults make the HTTP exchange itself fail.
The server records what it saw and did: `requests`, `served` (kind -> count, faults included)
and `usage_by_model()` (tokens are whitespace-separated words, booked for every 200 answer).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import random
import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sysevolve.proposals import mutate
from sysevolve.proposals.regions import Region, RegionError, find_regions

BEHAVIOURS = ("improve", "noop", "no_edit", "bad_search", "script")
FAULTS = (
    "429", "500", "503", "timeout", "malformed_json",
    "empty_choices", "empty_content", "truncated", "disconnect",
)

SEARCH_LINE, DIVIDER_LINE, REPLACE_LINE = "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE"
_PROGRAM = re.compile(r"```python[^\n]*\n(.*?)^\s*```", re.DOTALL | re.MULTILINE)
_MISSING_LINE = "    value = fake_llm_line_that_is_not_in_the_program()  # fake-llm"


@dataclass(frozen=True)
class Request:
    """One chat-completion request as received: the JSON body and the headers (lower-case names)."""

    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def model(self) -> str:
        return self.body.get("model", "")


@dataclass
class _Fault:
    kind: str
    model: str | None  # None: any model
    params: dict[str, Any]
    left: int


# --- answers ------------------------------------------------------------------------------------


def count_words(text: str) -> int:
    """The fake's token count: whitespace-separated words."""
    return len(text.split())


def message_text(message: dict[str, Any]) -> str:
    """The text of a message whose content is a string or a list of content parts."""
    content = message.get("content") or ""
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def find_program(messages: list[dict[str, Any]]) -> str | None:
    """The first ```python block of the latest user message that has one (a repair turn
    quotes no program, so the program comes from the turn before), or None."""
    for message in reversed([m for m in messages if m.get("role") == "user"]):
        match = _PROGRAM.search(message_text(message))
        if match:
            return match.group(1)
    return None


def mutate_program(code: str, rng: random.Random) -> tuple[str, str] | None:
    """Apply the first offline operator (tried in random order) that changes some line of `code`."""
    for op in rng.sample(mutate.MUTATIONS, len(mutate.MUTATIONS)):
        result = op(code, rng)
        if result and result[0].splitlines() != code.splitlines():
            return result
    return None


def _regions(code: str) -> list[Region]:
    try:
        return find_regions(code)
    except RegionError:
        return [Region(0, len(code.splitlines()))]


def _context(lines: list[str], regions: list[Region], first: int, last: int) -> tuple[int, int]:
    """Lines [a, b) around the lines [first, last): one line of context on each side when the
    evolvable region has it, more until the text occurs exactly once (or fills the region)."""
    lo, hi = next(((r.start, r.end) for r in regions if r.start <= first and last <= r.end),
                  (0, len(lines)))
    whole = "\n".join(lines) + "\n"
    a, b = max(lo, first - 1), min(hi, last + 1)
    while (a, b) != (lo, hi):
        text = "\n".join(lines[a:b]) + "\n"
        if text.strip() and whole.count(text) == 1:
            break
        a, b = max(lo, a - 1), min(hi, b + 1)
    return a, b


def format_block(search: list[str], replace: list[str]) -> str:
    return "\n".join([SEARCH_LINE, *search, DIVIDER_LINE, *replace, REPLACE_LINE])


def diff_block(parent: str, child: str) -> str:
    """One SEARCH/REPLACE block that turns `parent` into `child`."""
    old, new = parent.splitlines(), child.splitlines()
    ops = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    changes = [op for op in ops if op[0] != "equal"]
    i1, i2, j1, j2 = changes[0][1], changes[-1][2], changes[0][3], changes[-1][4]
    a, b = _context(old, _regions(parent), i1, i2)
    return format_block(old[a:b], old[a:i1] + new[j1:j2] + old[i2:b])


def noop_block(parent: str) -> str:
    """A valid SEARCH/REPLACE block that replaces some evolvable lines by themselves."""
    lines, regions = parent.splitlines(), _regions(parent)
    first = next((i for r in regions for i in range(r.start, r.end) if lines[i].strip()), 0)
    a, b = _context(lines, regions, first, first + 1)
    return format_block(lines[a:b], lines[a:b])


# --- the server ---------------------------------------------------------------------------------


class FakeLLM:
    """An OpenAI-compatible server in a background thread; a context manager, or start()/stop()."""

    def __init__(self, latency_s: float = 0.0, models: list[str] | None = None):
        self.latency_s = latency_s
        self.models = list(models) if models is not None else None
        self.served: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[Request] = []
        self._behaviours: dict[str | None, str] = {}
        self._scripts: dict[str, list[str]] = {}
        self._faults: list[_Fault] = []
        self._usage: dict[str, tuple[int, int]] = {}
        self._responses = 0  # numbers the response ids
        self._improvements = 0  # salts the random stream of "improve" answers
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle

    def start(self) -> FakeLLM:
        if self._server is None:
            self._stopping.clear()
            self._server = _Server(("127.0.0.1", 0), _Handler)
            self._server.fake = self
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes handlers sleeping on latency or a "timeout" fault
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeLLM is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # --- configuration

    def behaviour(self, model: str | None, kind: str) -> None:
        """How `model` answers from now on (model=None: every model without its own)."""
        if kind not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {kind!r}; expected one of {BEHAVIOURS}")
        with self._lock:
            self._behaviours[model] = kind

    def script(self, model: str, texts: list[str]) -> None:
        """Answer `model`'s next requests with `texts`, in order, then go back to "improve"."""
        with self._lock:
            self._scripts.setdefault(model, []).extend(texts)
            self._behaviours[model] = "script"

    def fail(self, kind: str, times: int = 1, model: str | None = None, **params: Any) -> None:
        """Queue a fault for the next `times` requests to `model` (None: any model).

        Params: retry_after (for "429", seconds, default 0.1), delay_s (for "timeout", default 5).
        """
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {FAULTS}")
        with self._lock:
            self._faults.append(_Fault(kind, model, params, times))

    def clear_faults(self) -> None:
        """Drop every queued fault: the server is healthy again."""
        with self._lock:
            self._faults.clear()

    def set_latency(self, seconds: float) -> None:
        self.latency_s = seconds

    # --- what happened

    @property
    def requests(self) -> list[Request]:
        """A snapshot of the chat-completion requests received so far."""
        with self._lock:
            return list(self._requests)

    def usage_by_model(self) -> dict[str, tuple[int, int]]:
        """{model: (prompt_tokens, completion_tokens)} over the 200 responses that carried usage."""
        with self._lock:
            return dict(self._usage)

    # --- serving (called from handler threads)

    def _model_list(self) -> dict[str, Any]:
        with self._lock:
            names = self.models if self.models is not None else sorted(
                {r.model for r in self._requests} | {m for m in self._behaviours if m})
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "fake-llm"} for n in names]
        return {"object": "list", "data": data}

    def _count(self, kind: str) -> None:
        self.served[kind] = self.served.get(kind, 0) + 1

    def _take_fault(self, model: str) -> _Fault | None:
        for fault in self._faults:
            if fault.model is None or fault.model == model:
                fault.left -= 1
                if fault.left <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _sleep(self, seconds: float) -> bool:
        """Sleep; False when the server is stopping meanwhile."""
        return seconds <= 0 or not self._stopping.wait(seconds)

    def _chat(self, handler: _Handler, body: dict[str, Any]) -> None:
        """Answer one chat-completion request."""
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not isinstance(messages, list):
            return handler.send_error_json(400, "'model' and 'messages' are required")
        if body.get("stream"):
            return handler.send_error_json(400, "the fake server does not stream")
        with self._lock:
            self._requests.append(Request(body, {k.lower(): v for k, v in handler.headers.items()}))
            known = self.models is None or model in self.models
            fault = self._take_fault(model) if known else None
            if not known or fault:
                self._count(fault.kind if fault else "unknown_model")
        if not self._sleep(self.latency_s):
            return handler.drop()
        if not known:
            return handler.send_error_json(404, f"The model '{model}' does not exist",
                                           code="model_not_found")
        kind = fault.kind if fault else None
        if kind in ("429", "500", "503", "disconnect", "malformed_json"):
            return _send_fault(handler, fault)
        if kind == "timeout" and not self._sleep(fault.params.get("delay_s", 5.0)):
            return handler.drop()
        if kind == "timeout" and _peer_closed(handler.connection):
            return handler.drop()  # the client gave up: nothing is sent, nothing is billed
        # Only a normal answer uses up a scripted text; faulty ones are made up on the spot.
        text, behaviour = self._answer(model, messages, use_script=kind is None)
        handler.send_json(200, self._completion(model, messages, text, kind or behaviour))

    def _completion(self, model: str, messages: list[Any], text: str, kind: str) -> dict[str, Any]:
        """The response body for `text`, spoilt as the fault `kind` asks; books the usage."""
        finish = "stop"
        if kind == "empty_content":
            text = ""
        elif kind == "truncated":
            text, finish = text[: len(text) // 2], "length"
        prompt_tokens = sum(count_words(message_text(m)) for m in messages if isinstance(m, dict))
        completion_tokens = 0 if kind == "empty_choices" else count_words(text)
        with self._lock:
            # Booked before the answer is sent, so a test sees it as soon as the client returns.
            if kind in BEHAVIOURS:
                self._count(kind)
            p, c = self._usage.get(model, (0, 0))
            self._usage[model] = (p + prompt_tokens, c + completion_tokens)
            self._responses += 1
            number = self._responses
        message = {"role": "assistant", "content": text}
        choices = [{"index": 0, "message": message, "finish_reason": finish}]
        return {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [] if kind == "empty_choices" else choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _answer(self, model: str, messages: list[dict[str, Any]],
                use_script: bool = True) -> tuple[str, str]:
        """The answer text for a normal (non-fault) request, and the behaviour that produced it."""
        with self._lock:
            kind = self._behaviours.get(model, self._behaviours.get(None, "improve"))
            if kind == "script" and use_script:
                queue = self._scripts.get(model)
                if queue:
                    return queue.pop(0), "script"
            if kind == "script":
                kind = "improve"
            if kind == "improve":
                # One number per improve answer: answers vary, yet repeat given the same requests.
                self._improvements += 1
            salt = self._improvements
        return answer_text(kind, messages, salt), kind


def answer_text(kind: str, messages: list[dict[str, Any]], salt: int) -> str:
    """What a model with behaviour `kind` says to `messages`; `salt` varies "improve" answers."""
    if kind == "no_edit":
        return "I looked at the program carefully and would keep it as it is."
    if kind == "bad_search":
        block = format_block([_MISSING_LINE], [_MISSING_LINE.replace("value =", "value = 2 *")])
        return f"Here is a change to the scoring step.\n\n{block}\n"
    program = find_program(messages)
    if program is None:
        return "I could not find a Python program in your message to change."
    if kind == "noop":
        return f"This edit keeps the logic as it is.\n\n{noop_block(program)}\n"
    seed = int.from_bytes(hashlib.sha256(f"{salt}\n{program}".encode()).digest()[:8], "big")
    result = mutate_program(program, random.Random(seed))
    if result is None:
        return "I found nothing in the evolvable region worth changing."
    child, summary = result
    prose = f"A small change should help ({summary})."
    if any(SEARCH_LINE in message_text(m) for m in messages if isinstance(m, dict)):
        return f"{prose}\n\n{diff_block(program, child)}\n"
    return f"{prose} The full program:\n\n```python\n{child}```\n"


def _send_fault(handler: _Handler, fault: _Fault) -> None:
    """Fail the HTTP exchange itself."""
    if fault.kind == "429":
        retry = str(fault.params.get("retry_after", 0.1))
        handler.send_error_json(429, "Rate limit reached (fake)", "requests",
                                code="rate_limit_exceeded", headers={"Retry-After": retry})
    elif fault.kind in ("500", "503"):
        handler.send_error_json(int(fault.kind), "The server had an error (fake)", "server_error")
    elif fault.kind == "malformed_json":
        handler.send_body(200, b'{"choices": [')
    else:
        handler.drop()


def _peer_closed(sock: socket.socket) -> bool:
    """True when the client has closed its end (it sent nothing else while waiting for us)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops bursts of concurrent connections
    fake: FakeLLM


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real endpoint
    server: _Server
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self.send_json(200, self.server.fake._model_list())
        else:
            self.send_error_json(404, f"no route {self.path}")

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self.send_error_json(404, f"no route {self.path}")
        try:
            body = json.loads(raw)
        except ValueError:
            return self.send_error_json(400, "the body is not JSON")
        if not isinstance(body, dict):
            return self.send_error_json(400, "the body is not a JSON object")
        self.server.fake._chat(self, body)

    def send_body(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client went away

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_body(status, json.dumps(obj).encode(), headers)

    def send_error_json(self, status: int, message: str, type_: str = "invalid_request_error",
                        code: str | None = None, headers: dict[str, str] | None = None) -> None:
        error = {"message": message, "type": type_, "param": None, "code": code}
        self.send_json(status, {"error": error}, headers)

    def drop(self) -> None:
        """Close the connection without a response."""
        self.close_connection = True
