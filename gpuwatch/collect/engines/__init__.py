"""Inference engines behind one interface (:class:`~.base.Engine`), and detection of which
engine a URL speaks."""

from __future__ import annotations

import asyncio
import json

from . import names
from .base import Engine, FetchError, Fetcher, PromScrape, Reading
from .llamacpp import LlamacppEngine
from .llamaswap import LlamaSwapEngine
from .ollama import OllamaEngine
from .openai_compat import LmStudioEngine, TabbyEngine
from .sglang import SglangEngine
from .tgi import TgiEngine
from .vllm import VllmEngine

ENGINES: dict[str, Engine] = {e.kind: e for e in (
    VllmEngine(), LlamacppEngine(), SglangEngine(), OllamaEngine(), TgiEngine(), TabbyEngine(), LmStudioEngine(),
    LlamaSwapEngine())}
KINDS = tuple(ENGINES)


def get_engine(kind: str) -> Engine | None:
    return ENGINES.get(kind)


async def detect_kind(f: Fetcher) -> str:
    """Which engine answers at ``f.base_url``: probes /metrics (series prefix), /api/version
    (Ollama), /.well-known/serviceinfo (TabbyAPI, before /props: it answers llama.cpp's /props
    too), /running (llama-swap), /props (llama.cpp), /info (TGI's router), /api/v0/models
    (LM Studio), /version (vLLM) at once. Raises FetchError when nothing answers or nothing is
    recognised."""
    paths = ("/metrics", "/api/version", "/.well-known/serviceinfo", "/running", "/props", "/info",
             "/api/v0/models", "/version")
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
    s = js("/.well-known/serviceinfo")
    software = s.get("software") if isinstance(s, dict) else None
    if isinstance(software, dict) and str(software.get("name", "")).lower() == "tabbyapi":
        return "tabbyapi"
    running = js("/running")
    if isinstance(running, dict) and isinstance(running.get("running"), list):
        return "llamaswap"
    info = js("/info")
    if isinstance(info, dict) and info.get("router") == "text-generation-router":
        return "tgi"
    lms = js("/api/v0/models")
    if isinstance(lms, dict) and isinstance(lms.get("data"), list) and all(
            isinstance(m, dict) and "state" in m for m in lms["data"]):
        return "lmstudio"
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
    for e in errors:  # an auth failure explains more than a 404
        if "API key" in e.message:
            raise e
    if errors and len(errors) == len(answers):
        raise errors[0]
    raise FetchError("not a recognised inference server (no Ollama, vLLM, llama.cpp, SGLang, TGI, TabbyAPI, "
                     "LM Studio or llama-swap endpoints)")


__all__ = ["ENGINES", "KINDS", "Engine", "FetchError", "Fetcher", "Reading", "detect_kind", "get_engine", "names"]
