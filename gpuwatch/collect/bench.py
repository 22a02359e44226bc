"""On-demand benchmark of one inference server: a short fixed prompt, timed.

Ollama reports its own timings (``eval_count`` tokens in ``eval_duration`` ns, and the same
for the prompt); for vLLM and SGLang the OpenAI-compatible ``/v1/completions`` answer's ``usage`` is
counted over the request's wall time (which includes the prompt phase, so it reads slightly
below the pure decode speed); llama.cpp's answer carries its own ``timings`` (decode and prompt
separately), which are used instead.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
import time

import httpx

from ..model import BenchResult
from ..sanitize import clean
from .engines import Fetcher, detect_kind
from .engines.base import FetchError
from .engines.llamacpp import display_model_name

PROMPT = "Write a short paragraph about the history of the bicycle."
MAX_TOKENS = 128


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _headers(api_key_env: str | None) -> dict[str, str]:
    key = os.environ.get(api_key_env) if api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


# total deadlines (headers and body, however slowly a server sends): finding the model, and
# each timed generation
SETUP_TIMEOUT_S = 10.0
RUN_TIMEOUT_S = 60.0


async def _pick_model(f: Fetcher, kind: str) -> str | None:
    if kind == "ollama":
        for path in ("/api/ps", "/api/tags"):
            data = await f.get_json(path)
            models = data.get("models") if isinstance(data, dict) else None
            if isinstance(models, list) and models and isinstance(models[0], dict):
                name = models[0].get("name") or models[0].get("model")
                return name if isinstance(name, str) else None
        return None
    if kind == "lmstudio":  # /v1/models lists every downloaded model: take a loaded LLM
        data = await f.get_json("/api/v0/models")
        for m in (data.get("data") or ()) if isinstance(data, dict) else ():
            if isinstance(m, dict) and m.get("state") == "loaded" and m.get("type") in ("llm", "vlm"):
                name = m.get("id")
                return name if isinstance(name, str) else None
        return None
    if kind == "tabbyapi":  # the loaded model (/v1/models lists the model directory to admin keys)
        data = await f.get_json("/v1/model")
        name = data.get("id") if isinstance(data, dict) else None
        return name if isinstance(name, str) else None
    data = await f.get_json("/v1/models")
    models = data.get("data") if isinstance(data, dict) else None
    if isinstance(models, list) and models and isinstance(models[0], dict):
        name = models[0].get("id")
        return name if isinstance(name, str) else None
    return None


async def _post_json(f: Fetcher, path: str, body: dict):
    raw = await f.request("POST", path, json_body=body)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise FetchError(f"not JSON from {path}") from None


def server_timings(data) -> tuple[int, float, int, float] | None:
    """(generated tokens, seconds, prompt tokens, seconds) from llama.cpp's ``timings`` in a
    completion answer (``predicted_n``/``predicted_ms``, ``prompt_n``/``prompt_ms``: the figures
    behind its ``predicted_per_second`` and ``prompt_per_second``; tools/server/server-task.cpp
    ``result_timings``); None when absent."""
    t = data.get("timings") if isinstance(data, dict) else None
    if not isinstance(t, dict):
        return None
    try:
        gen_n, gen_ms = int(t["predicted_n"]), float(t["predicted_ms"])
        prompt_n, prompt_ms = int(t.get("prompt_n") or 0), float(t.get("prompt_ms") or 0.0)
    except (KeyError, TypeError, ValueError):
        return None
    if gen_n <= 0 or gen_ms <= 0:
        return None
    return gen_n, gen_ms / 1000, prompt_n, prompt_ms / 1000



def _count(v) -> int:
    """A token count or duration from a server: a whole number within reason."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 2**62:
        raise ValueError(v)
    return int(v)


async def _bench(url: str, kind: str | None, model: str | None, runs: int, headers: dict[str, str],
                 result: BenchResult, setup_s: float, run_s: float) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(run_s, connect=min(5.0, setup_s)), trust_env=False,
                                 follow_redirects=False) as client:
        f = Fetcher(client, url, headers)

        async def setup():
            k = kind or await detect_kind(f)
            return k, (model or await _pick_model(f, k))
        try:
            kind, model = await asyncio.wait_for(setup(), setup_s)
        except asyncio.TimeoutError:
            raise FetchError(f"no answer within {setup_s:g} s") from None
        if model is None:
            raise FetchError("no model loaded or listed to benchmark")
        result.model = display_model_name(model) if kind == "llamacpp" else model
        gen_tokens = prompt_tokens = 0
        gen_s = prompt_s = 0.0
        for _ in range(runs):
            try:
                if kind == "ollama":
                    body = {"model": model, "prompt": PROMPT, "stream": False,
                            "options": {"num_predict": MAX_TOKENS, "temperature": 0}}
                    data = await asyncio.wait_for(_post_json(f, "/api/generate", body), run_s)
                    try:
                        gen_tokens += _count(data["eval_count"])
                        gen_s += _count(data["eval_duration"]) / 1e9
                        prompt_tokens += _count(data.get("prompt_eval_count") or 0)
                        prompt_s += _count(data.get("prompt_eval_duration") or 0) / 1e9
                    except (KeyError, TypeError, ValueError):
                        raise FetchError("no eval_count/eval_duration in the /api/generate answer") from None
                else:
                    body = {"model": model, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0}
                    if kind == "llamacpp":
                        body["cache_prompt"] = False  # every run computes its prompt: a prompt speed to time
                    t0 = time.perf_counter()
                    data = await asyncio.wait_for(_post_json(f, "/v1/completions", body), run_s)
                    wall = time.perf_counter() - t0
                    usage = data.get("usage") if isinstance(data, dict) else None
                    if not isinstance(usage, dict) or "completion_tokens" not in usage:
                        raise FetchError("no usage in the /v1/completions answer")
                    timed = server_timings(data)
                    if timed is not None:  # the server's own decode and prompt times
                        gen_tokens, gen_s, prompt_tokens, prompt_s = (
                            a + b for a, b in zip((gen_tokens, gen_s, prompt_tokens, prompt_s), timed))
                        continue
                    try:
                        gen_tokens += _count(usage["completion_tokens"])
                        prompt_tokens += _count(usage.get("prompt_tokens") or 0)
                    except ValueError:
                        raise FetchError("no usable token counts in the /v1/completions answer") from None
                    gen_s += wall
            except asyncio.TimeoutError:
                raise FetchError(f"no answer within {run_s:g} s") from None
        result.generation_tokens = gen_tokens
        result.prompt_tokens = prompt_tokens
        result.generation_tokens_per_s = gen_tokens / gen_s if gen_s > 0 else None
        result.prompt_tokens_per_s = prompt_tokens / prompt_s if prompt_s > 0 else None


def run_bench(url: str, kind: str | None = None, model: str | None = None, runs: int = 1,
              timeout: float = RUN_TIMEOUT_S, api_key_env: str | None = None,
              setup_timeout: float = SETUP_TIMEOUT_S) -> BenchResult:
    """Time ``runs`` short generations on the server at ``url``. Never raises: a failure is
    reported in ``BenchResult.error``. Blocking (run it off the UI thread). Finding the model
    takes at most ``setup_timeout`` seconds and each generation ``timeout``, in all (however
    slowly the server sends); answers are capped at 4 MiB decompressed."""
    url = url.rstrip("/")
    if "://" not in url:
        url = "http://" + url
    runs = max(1, int(runs))
    headers = _headers(api_key_env)
    result = BenchResult(time=_now_iso(), model=model, runs=runs)
    try:
        asyncio.run(_bench(url, kind, model, runs, headers, result, min(setup_timeout, timeout), timeout))
    except FetchError as e:
        result.error = e.message
    except httpx.TimeoutException:
        result.error = f"no answer within {timeout:g} s"
    except httpx.HTTPError as e:
        result.error = f"could not reach {url} ({type(e).__name__})"
    if result.error and api_key_env and os.environ.get(api_key_env):
        result.error = result.error.replace(os.environ[api_key_env], "***")
    return clean(result)  # model names and error texts from the server: shown, so checked


def format_bench(result: BenchResult, url: str | None = None) -> str:
    """One line for the terminal: ``llama3.2: 61.2 tok/s generation, 200 tok/s prompt (259 tokens, 1 run)``."""
    model = result.model or url or "?"
    if result.error:
        where = f"{result.model} at {url}" if result.model and url else model
        return f"gpuwatch: benchmark of {where} failed: {result.error}"
    parts = []
    if result.generation_tokens_per_s is not None:
        parts.append(f"{result.generation_tokens_per_s:.1f} tok/s generation")
    if result.prompt_tokens_per_s is not None:
        parts.append(f"{result.prompt_tokens_per_s:.0f} tok/s prompt")
    runs = f"{result.runs} run" + ("s" if result.runs != 1 else "")
    tokens = f"{result.generation_tokens} tokens, " if result.generation_tokens is not None else ""
    return f"{model}: {', '.join(parts) or 'no timing'} ({tokens}{runs})"
