"""Inference engines behind one interface (:class:`~.base.Engine`), and detection of which
engine a URL speaks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

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


# probed four at a time (a small server's listen backlog, e.g. cpp-httplib's 5, must not drop
# connections), the most common engines first; each wave is judged before the next is asked
PROBE_WAVES = (("/metrics", "/api/version", "/.well-known/serviceinfo", "/props"),
               ("/running", "/info", "/api/v0/models", "/version"))


def _json_body(body) -> Any:
    if not isinstance(body, bytes):
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _judge(got: dict[str, Any]) -> str | None:
    """The engine the answers so far show, or None."""
    metrics = got.get("/metrics")
    if isinstance(metrics, bytes):
        try:
            # series names only: an empty ``wanted`` parses nothing (cheap even for a big page)
            scrape = PromScrape(metrics.decode("utf-8", "replace"), wanted=set())
            for kind, prefix in names.METRIC_PREFIX.items():
                if scrape.has_prefix(prefix):
                    return kind
        except FetchError:
            pass
    v = _json_body(got.get("/api/version"))
    if isinstance(v, dict) and "version" in v:
        return "ollama"
    s = _json_body(got.get("/.well-known/serviceinfo"))
    software = s.get("software") if isinstance(s, dict) else None
    if isinstance(software, dict) and str(software.get("name", "")).lower() == "tabbyapi":
        return "tabbyapi"  # before /props: TabbyAPI answers llama.cpp's /props too
    p = _json_body(got.get("/props"))
    if isinstance(p, dict) and ("default_generation_settings" in p or "total_slots" in p):
        return "llamacpp"
    running = _json_body(got.get("/running"))
    if isinstance(running, dict) and isinstance(running.get("running"), list):
        return "llamaswap"
    info = _json_body(got.get("/info"))
    if isinstance(info, dict) and info.get("router") == "text-generation-router":
        return "tgi"
    lms = _json_body(got.get("/api/v0/models"))
    if isinstance(lms, dict) and isinstance(lms.get("data"), list) and all(
            isinstance(m, dict) and "state" in m for m in lms["data"]):
        return "lmstudio"
    v = _json_body(got.get("/version"))
    if isinstance(v, dict) and "version" in v:
        return "vllm"
    return None


async def detect_kind(f: Fetcher) -> str:
    """Which engine answers at ``f.base_url``: the metric prefix of /metrics, /api/version
    (Ollama), /.well-known/serviceinfo (TabbyAPI), /props (llama.cpp), then /running
    (llama-swap), /info (TGI's router), /api/v0/models (LM Studio), /version (vLLM). Raises
    FetchError when nothing answers or nothing is recognised."""
    got: dict[str, Any] = {}
    for wave in PROBE_WAVES:
        answers = await asyncio.gather(*(f.get(p, optional=True) for p in wave), return_exceptions=True)
        got.update(zip(wave, answers))
        kind = _judge(got)
        if kind is not None:
            return kind
        if all(isinstance(a, FetchError) and a.status == "down" for a in answers):
            break  # nothing answers at all: no second wave
    answers = list(got.values())
    errors = [a for a in answers if isinstance(a, FetchError)]
    others = [a for a in answers if isinstance(a, BaseException) and not isinstance(a, FetchError)]
    if others:
        raise others[0]
    for e in errors:  # a server loading its model, or an auth failure, explains more than a 404
        if e.status == "loading" or "API key" in e.message:
            raise e
    if errors and len(errors) == len(answers):
        raise errors[0]
    raise NotAServer("not a recognised inference server (no Ollama, vLLM, llama.cpp, SGLang, TGI, TabbyAPI, "
                     "LM Studio or llama-swap endpoints)")


class NotAServer(FetchError):
    """Something answers HTTP at the address, but none of the engines' endpoints."""


__all__ = ["ENGINES", "KINDS", "Engine", "FetchError", "Fetcher", "NotAServer", "Reading", "detect_kind", "get_engine",
           "names"]
