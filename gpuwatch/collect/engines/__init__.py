"""Inference engines behind one interface (:class:`~.base.Engine`), and detection of which
engine a URL speaks."""

from __future__ import annotations

import asyncio
import json

from . import names
from .base import Engine, FetchError, Fetcher, PromScrape, Reading
from .llamacpp import LlamacppEngine
from .ollama import OllamaEngine
from .sglang import SglangEngine
from .vllm import VllmEngine

ENGINES: dict[str, Engine] = {e.kind: e for e in (VllmEngine(), LlamacppEngine(), SglangEngine(), OllamaEngine())}
KINDS = tuple(ENGINES)


def get_engine(kind: str) -> Engine | None:
    return ENGINES.get(kind)


async def detect_kind(f: Fetcher) -> str:
    """Which engine answers at ``f.base_url``: probes /metrics (series prefix), /api/version
    (Ollama), /props (llama.cpp), /version (vLLM) at once. Raises FetchError when nothing
    answers or nothing is recognised."""
    paths = ("/metrics", "/api/version", "/props", "/version")
    answers = await asyncio.gather(*(f.get(p, optional=True) for p in paths), return_exceptions=True)
    got = dict(zip(paths, answers))
    metrics = got["/metrics"]
    if isinstance(metrics, bytes):
        try:
            scrape = PromScrape(metrics.decode("utf-8", "replace"))
            for kind, prefix in names.METRIC_PREFIX.items():
                if scrape.has_prefix(prefix):
                    return kind
        except FetchError:
            pass

    def js(path):
        body = got[path]
        if not isinstance(body, bytes):
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    v = js("/api/version")
    if isinstance(v, dict) and "version" in v:
        return "ollama"
    p = js("/props")
    if isinstance(p, dict) and ("default_generation_settings" in p or "total_slots" in p):
        return "llamacpp"
    v = js("/version")
    if isinstance(v, dict) and "version" in v:
        return "vllm"
    errors = [a for a in answers if isinstance(a, FetchError)]
    others = [a for a in answers if isinstance(a, BaseException) and not isinstance(a, FetchError)]
    if others:
        raise others[0]
    for e in errors:  # a server loading its model, or an auth failure, explains more than a 404
        if e.status == "loading" or "API key" in e.message:
            raise e
    if errors and len(errors) == len(answers):
        raise errors[0]
    raise FetchError("not a recognised inference server (no Ollama, vLLM, llama.cpp or SGLang endpoints)")


__all__ = ["ENGINES", "KINDS", "Engine", "FetchError", "Fetcher", "Reading", "detect_kind", "get_engine", "names"]
