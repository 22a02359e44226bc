"""Reading a response body as it passes, without holding it: incremental and bounded.

A :class:`BodyReader` is fed the body's chunks as the proxy forwards them (any split: a line
cut across chunks is joined; a line longer than ``max_line`` is not kept, only its first and
last few KiB, from which the counts at the end of Ollama's final chunk are still read). It
tells a :class:`Sink` what it saw: the model, each token-bearing chunk, and the counts the
server reported. Nothing of the text itself is kept or passed on.
"""

from __future__ import annotations

import json
import re
from typing import Protocol

from . import names

MAX_LINE = 256 * 1024  # a streamed chunk or whole JSON answer parsed in full up to this size
KEEP = 4096  # of a longer one, its head and tail are kept for the counts


class Sink(Protocol):
    def model(self, name: str) -> None: ...
    def tokens(self, n: int) -> None: ...
    def reported(self, prompt: int | None, completion: int | None, durations_s: dict[str, float]) -> None: ...


NDJSON, SSE, JSON, OTHER = "ndjson", "sse", "json", "other"


def body_format(content_type: str | None) -> str:
    """How a body is framed, from its Content-Type: Ollama streams ``application/x-ndjson``
    (server/routes.go ``streamResponse``), OpenAI-compatible servers ``text/event-stream``."""
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    if ct in ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/jsonlines"):
        return NDJSON
    if ct == "text/event-stream":
        return SSE
    if ct == "application/json" or ct.endswith("+json"):
        return JSON
    return OTHER


_NUM = re.compile(rb'"(prompt_eval_count|eval_count|prompt_eval_duration|eval_duration|load_duration|'
                  rb'prompt_tokens|completion_tokens)"\s*:\s*(\d{1,18})')
_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,256})"')


def sniff_model(head: bytes) -> str | None:
    """The ``model`` of a request from the first bytes of its JSON body (bounded: no parse)."""
    m = _MODEL.search(head)
    if not m:
        return None
    try:
        return json.loads(b'"' + m.group(1) + b'"')
    except ValueError:
        return None


class BodyReader:
    """Feeds one response body to a :class:`Sink`. ``fmt``: NDJSON, SSE, JSON or OTHER."""

    __slots__ = ("fmt", "sink", "max_line", "_buf", "_over", "_head", "_tail", "_model_seen", "_counts")

    def __init__(self, fmt: str, sink: Sink, max_line: int = MAX_LINE) -> None:
        self.fmt = fmt
        self.sink = sink
        self.max_line = max_line
        self._buf = bytearray()
        self._over = False  # inside a line longer than max_line
        self._head = b""
        self._tail = b""
        self._model_seen = False
        self._counts: tuple | None = None  # the last counts the server reported

    def feed(self, data: bytes) -> None:
        if self.fmt == OTHER:
            return
        if self.fmt == JSON:  # one document: kept up to max_line, then only head and tail
            self._extend(data)
            return
        start = 0
        find = data.find
        while True:
            nl = find(b"\n", start)
            if nl < 0:
                break
            if self._over:
                self._tail = (self._tail + data[start:nl])[-KEEP:]
                self._oversize()
            elif self._buf:
                self._buf += data[start:nl]
                line = bytes(self._buf)
                self._buf.clear()
                self._line(line)
            else:
                self._line(data[start:nl])
            start = nl + 1
        if start < len(data):
            self._extend(data[start:] if start else data)

    def close(self) -> None:
        """The body ended (or was cut): what is left is the last line (or the whole JSON
        document); then the server's last reported counts go to the sink, once. The last, as
        vLLM's ``continuous_usage_stats`` repeats a growing ``usage`` in every chunk."""
        if self._over:
            self._oversize()
        elif self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            self._line(line)
        if self._counts is not None:
            counts, self._counts = self._counts, None
            self.sink.reported(*counts)

    # ---- internals ------------------------------------------------------------------------
    def _extend(self, part: bytes) -> None:
        if self._over:
            self._tail = (self._tail + part)[-KEEP:]
            return
        self._buf += part
        if len(self._buf) > self.max_line:
            self._over = True
            self._head = bytes(self._buf[:KEEP])
            self._tail = bytes(self._buf[-KEEP:])
            self._buf = bytearray()

    def _oversize(self) -> None:
        """A line too long to parse (an Ollama final chunk with a huge ``context`` array): the
        counts are at its end (api/types.go: ``Metrics`` follows ``Context``), the model at its
        start."""
        head, tail = self._head, self._tail
        self._over = False
        self._head = self._tail = b""
        if not self._model_seen:
            m = sniff_model(head)
            if m:
                self._set_model(m)
        found: dict[str, int] = {}
        for part in (head, tail):
            for key, value in _NUM.findall(part):
                found[key.decode()] = int(value)
        if found:
            self._report(found)

    def _line(self, line: bytes) -> None:
        if self.fmt == SSE:
            if not line.startswith(b"data:"):
                return  # event:, id:, retry:, comments, the blank line between events
            line = line[5:]
        line = line.strip()
        if not line or line[:1] not in (b"{", b"["):
            return  # "[DONE]" and anything else that is not a JSON object
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            return
        if isinstance(obj, dict):
            self._object(obj)

    def _set_model(self, name) -> None:
        if isinstance(name, str) and name:
            self._model_seen = True
            self.sink.model(name)

    def _object(self, d: dict) -> None:
        if not self._model_seen:
            self._set_model(d.get("model"))
        choices = d.get("choices")
        if isinstance(choices, list):  # OpenAI-compatible
            n = 0
            for c in choices:
                if not isinstance(c, dict):
                    continue
                delta = c.get("delta")
                if isinstance(delta, dict):
                    if any(delta.get(k) for k in names.DELTA_TEXT_KEYS):
                        n += 1
                elif c.get("text") and self.fmt != JSON:
                    n += 1
            if n:
                self.sink.tokens(n)
            usage = d.get("usage")
            if isinstance(usage, dict):
                self._report(usage)
            return
        if "done" in d:  # Ollama /api/generate, /api/chat
            msg = d.get("message")
            if self.fmt != JSON and (any(d.get(k) for k in names.OLLAMA_TEXT_KEYS) or (
                    isinstance(msg, dict) and any(msg.get(k) for k in names.MESSAGE_TEXT_KEYS))):
                self.sink.tokens(1)
            if d.get("done") is True:
                self._report(d)
            return
        if "prompt_eval_count" in d:  # /api/embed
            self._report(d)

    def _report(self, d: dict) -> None:
        prompt = _int(d.get("prompt_eval_count"))
        completion = _int(d.get("eval_count"))
        if prompt is None:
            prompt = _int(d.get(names.USAGE_PROMPT))
        if completion is None:
            completion = _int(d.get(names.USAGE_COMPLETION))
        if prompt is None and completion is None:
            return
        durations = {}
        for key in names.OLLAMA_DURATIONS_NS:
            v = _int(d.get(key))
            if v is not None:
                durations[key] = v / 1e9
        self._counts = (prompt, completion, durations)


def _int(v) -> int | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != v:
        return None
    return int(v)
