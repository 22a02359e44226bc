"""Reading bodies as they pass: any chunking gives the same counts, memory stays bounded."""

from __future__ import annotations

import json

import pytest

from gpuwatch.meter import names
from gpuwatch.meter.metrics import MeterMetrics, Tally
from gpuwatch.meter.parse import JSON, KEEP, NDJSON, SSE, BodyReader, body_format, sniff_model


class Events:
    def __init__(self):
        self.models, self.count, self.reports = [], 0, []

    def model(self, name):
        self.models.append(name)

    def tokens(self, n):
        self.count += n

    def reported(self, prompt, completion, durations):
        self.reports.append((prompt, completion, durations))


def ollama_stream(n=5, context=0) -> bytes:
    lines = [{"model": "llama3.2", "created_at": "t", "response": f"w{i} ", "done": False} for i in range(n)]
    final = {"model": "llama3.2", "created_at": "t", "response": "", "done": True, "done_reason": "stop",
             "context": list(range(context)), "total_duration": 10, "load_duration": 2_000_000,
             "prompt_eval_count": 26, "prompt_eval_duration": 130079000, "eval_count": n, "eval_duration": 4232710000}
    return b"".join(json.dumps(d).encode() + b"\n" for d in lines + [final])


def sse_stream(n=4, usage=True) -> bytes:
    out = b""
    for i in range(n):
        d = {"id": "c", "object": "chat.completion.chunk", "model": "qwen",
             "choices": [{"index": 0, "delta": {"content": f"t{i}"}, "finish_reason": None}]}
        out += b"data: " + json.dumps(d).encode() + b"\r\n\r\n"
    out += b'data: {"id":"c","model":"qwen","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\n\r\n'
    if usage:
        out += b'data: {"id":"c","model":"qwen","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}\r\n\r\n'
    return out + b"data: [DONE]\r\n\r\n"


def read(fmt, body: bytes, cuts=()) -> Events:
    ev = Events()
    r = BodyReader(fmt, ev)
    last = 0
    for c in list(cuts) + [len(body)]:
        r.feed(body[last:c])
        last = c
    r.close()
    return ev


@pytest.mark.parametrize("fmt,body", [(NDJSON, ollama_stream()), (SSE, sse_stream())], ids=["ndjson", "sse"])
def test_a_line_split_anywhere_gives_the_same_counts(fmt, body):
    whole = read(fmt, body)
    assert whole.count in (4, 5) and len(whole.reports) == 1
    for cut in range(1, len(body)):
        got = read(fmt, body, cuts=(cut,))
        assert (got.count, got.reports, got.models[:1]) == (whole.count, whole.reports, whole.models[:1]), cut
    one_byte = read(fmt, body, cuts=range(1, len(body)))
    assert (one_byte.count, one_byte.reports) == (whole.count, whole.reports)


def test_ollama_final_chunk_counts_and_durations():
    ev = read(NDJSON, ollama_stream(7))
    assert ev.models[0] == "llama3.2" and ev.count == 7
    prompt, completion, d = ev.reports[0]
    assert (prompt, completion) == (26, 7)
    assert d["eval_duration"] == pytest.approx(4.23271) and d["load_duration"] == pytest.approx(0.002)


def test_the_real_final_chunk_from_ollamas_docs():
    from pathlib import Path
    body = (Path(__file__).parent / "fixtures" / "ollama-api-generate-final-chunk-docs.json").read_bytes()
    ev = read(NDJSON, json.dumps(json.loads(body)).encode() + b"\n")
    assert ev.reports[0][:2] == (26, 259) and ev.count == 0


def test_a_huge_final_line_is_not_kept_but_its_counts_are_read():
    body = ollama_stream(3, context=300_000)  # a final chunk of ~2.3 MB, as /api/generate's context can be
    assert len(body) > 1_000_000
    ev = Events()
    r = BodyReader(NDJSON, ev, max_line=64 * 1024)
    for i in range(0, len(body), 8192):
        r.feed(body[i:i + 8192])
        assert len(r._buf) <= 64 * 1024 + 8192 and len(r._tail) <= KEEP
    r.close()
    assert ev.count == 3 and ev.reports[0][:2] == (26, 3)


def test_a_huge_line_without_newline_stays_bounded():
    ev = Events()
    r = BodyReader(NDJSON, ev, max_line=4096)
    for _ in range(2000):
        r.feed(b"x" * 4096)
        assert len(r._buf) <= 8192 and len(r._tail) <= KEEP
    r.close()
    assert ev.count == 0 and ev.reports == []


def test_non_streamed_answers_report_without_live_tokens():
    body = json.dumps({"model": "m", "choices": [{"index": 0, "message": {"content": "long answer"}}],
                       "usage": {"prompt_tokens": 11, "completion_tokens": 40}}, indent=2).encode()
    ev = read(JSON, body, cuts=(10, 50))
    assert ev.count == 0 and ev.reports[0][:2] == (11, 40)


def test_formats_from_content_type():
    assert body_format("application/x-ndjson") == NDJSON
    assert body_format("text/event-stream; charset=utf-8") == SSE
    assert body_format("application/json; charset=utf-8") == JSON
    assert body_format("text/plain") == "other" and body_format(None) == "other"


def test_sniff_model_from_the_start_of_a_request():
    assert sniff_model(b'{"prompt": "a \\"model\\": trick", "model": "llama3.2:3b", "images": ["AAAA') == "llama3.2:3b"
    assert sniff_model(b'{"prompt": "x"}') is None


def sample(m: MeterMetrics, name: str, **labels) -> float:
    v = m.registry.get_sample_value(name, labels)
    return v or 0.0


def test_the_live_count_is_topped_up_to_the_servers_count_and_never_goes_down():
    m = MeterMetrics({"r": "http://u"})
    t = Tally(m, "r", 0.0)
    t.model("m")
    t.tokens(5)  # five chunks seen, some of them held two tokens
    t.reported(26, 8, {})
    t.done(200)
    assert sample(m, names.GENERATION_TOKENS, route="r", model="m") == 8
    t2 = Tally(m, "r", 0.0)
    t2.model("m")
    t2.tokens(6)
    t2.reported(None, 4, {})  # a server count below the chunks seen: the chunks stand
    t2.done(200)
    assert sample(m, names.GENERATION_TOKENS, route="r", model="m") == 14
    assert sample(m, names.GENERATION_TOKENS_ESTIMATED, route="r", model="m") == 0


def test_model_labels_from_the_wire_are_bounded():
    m = MeterMetrics({"r": "http://u"})
    for i in range(100):
        Tally(m, "r", 0.0, guess=f"model-{i}\x1b[31m" + "x" * 500).done(200)
    values = {s.labels["model"] for s in m.requests.collect()[0].samples}
    assert len(values) <= 65 and "other" in values
    assert all(len(v) <= 128 and "\x1b" not in v for v in values)


def test_a_usage_repeated_in_every_chunk_counts_once_with_its_last_value():
    # vLLM with stream_options.continuous_usage_stats: a growing usage in every chunk
    out = b""
    for i in range(1, 6):
        d = {"model": "q", "choices": [{"index": 0, "delta": {"content": f"t{i}"}}],
             "usage": {"prompt_tokens": 9, "completion_tokens": i}}
        out += b"data: " + json.dumps(d).encode() + b"\n\n"
    ev = read(SSE, out + b"data: [DONE]\n\n")
    assert ev.count == 5 and [r[:2] for r in ev.reports] == [(9, 5)]
