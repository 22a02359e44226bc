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
import os
import time

import httpx

from ..model import BenchResult
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


def _check(r: httpx.Response, path: str) -> None:
    if r.status_code in (401, 403):
        raise FetchError(f"needs API key (HTTP {r.status_code} from {path})")
    if r.status_code >= 400:
        raise FetchError(f"HTTP {r.status_code} from {path}")


def _json(r: httpx.Response, path: str):
    _check(r, path)
    try:
        return r.json()
    except ValueError:
        raise FetchError(f"not JSON from {path}") from None


def _pick_model(client: httpx.Client, url: str, kind: str) -> str | None:
    if kind == "ollama":
        for path in ("/api/ps", "/api/tags"):
            data = _json(client.get(url + path), path)
            models = data.get("models") if isinstance(data, dict) else None
            if models:
                return models[0].get("name") or models[0].get("model")
        return None
    if kind == "lmstudio":  # /v1/models lists every downloaded model: take a loaded LLM
        data = _json(client.get(url + "/api/v0/models"), "/api/v0/models")
        for m in data.get("data") or () if isinstance(data, dict) else ():
            if isinstance(m, dict) and m.get("state") == "loaded" and m.get("type") in ("llm", "vlm"):
                return m.get("id")
        return None
    if kind == "tabbyapi":  # the loaded model (/v1/models lists the model directory to admin keys)
        data = _json(client.get(url + "/v1/model"), "/v1/model")
        return data.get("id") if isinstance(data, dict) else None
    data = _json(client.get(url + "/v1/models"), "/v1/models")
    models = data.get("data") if isinstance(data, dict) else None
    if models:
        return models[0].get("id")
    return None


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


def _detect(url: str, timeout: float, headers: dict[str, str]) -> str:
    async def go():
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as c:
            return await detect_kind(Fetcher(c, url, headers))
    return asyncio.run(go())


def run_bench(url: str, kind: str | None = None, model: str | None = None, runs: int = 1, timeout: float = 120.0,
              api_key_env: str | None = None) -> BenchResult:
    """Time ``runs`` short generations on the server at ``url``. Never raises: a failure is
    reported in ``BenchResult.error``. Blocking (run it off the UI thread)."""
    url = url.rstrip("/")
    if "://" not in url:
        url = "http://" + url
    runs = max(1, int(runs))
    headers = _headers(api_key_env)
    result = BenchResult(time=_now_iso(), model=model, runs=runs)
    try:
        if kind is None:
            kind = _detect(url, min(timeout, 5.0), headers)
        with httpx.Client(timeout=timeout, headers=headers, trust_env=False) as client:
            if model is None:
                model = _pick_model(client, url, kind)
                if model is None:
                    raise FetchError("no model loaded or listed to benchmark")
            result.model = display_model_name(model) if kind == "llamacpp" else model
            gen_tokens = prompt_tokens = 0
            gen_s = prompt_s = 0.0
            for _ in range(runs):
                if kind == "ollama":
                    body = {"model": model, "prompt": PROMPT, "stream": False,
                            "options": {"num_predict": MAX_TOKENS, "temperature": 0}}
                    data = _json(client.post(url + "/api/generate", json=body), "/api/generate")
                    try:
                        gen_tokens += int(data["eval_count"])
                        gen_s += int(data["eval_duration"]) / 1e9
                        prompt_tokens += int(data.get("prompt_eval_count") or 0)
                        prompt_s += int(data.get("prompt_eval_duration") or 0) / 1e9
                    except (KeyError, TypeError, ValueError):
                        raise FetchError("no eval_count/eval_duration in the /api/generate answer") from None
                else:
                    body = {"model": model, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0}
                    if kind == "llamacpp":
                        body["cache_prompt"] = False  # every run computes its prompt: a prompt speed to time
                    t0 = time.perf_counter()
                    data = _json(client.post(url + "/v1/completions", json=body), "/v1/completions")
                    wall = time.perf_counter() - t0
                    usage = data.get("usage") if isinstance(data, dict) else None
                    if not isinstance(usage, dict) or "completion_tokens" not in usage:
                        raise FetchError("no usage in the /v1/completions answer")
                    timed = server_timings(data)
                    if timed is not None:  # the server's own decode and prompt times
                        gen_tokens, gen_s, prompt_tokens, prompt_s = (
                            a + b for a, b in zip((gen_tokens, gen_s, prompt_tokens, prompt_s), timed))
                        continue
                    gen_tokens += int(usage["completion_tokens"])
                    prompt_tokens += int(usage.get("prompt_tokens") or 0)
                    gen_s += wall
            result.generation_tokens = gen_tokens
            result.prompt_tokens = prompt_tokens
            result.generation_tokens_per_s = gen_tokens / gen_s if gen_s > 0 else None
            result.prompt_tokens_per_s = prompt_tokens / prompt_s if prompt_s > 0 else None
    except FetchError as e:
        result.error = e.message
    except httpx.TimeoutException:
        result.error = f"no answer within {timeout:g} s"
    except httpx.HTTPError as e:
        result.error = f"could not reach {url} ({type(e).__name__})"
    if result.error and api_key_env and os.environ.get(api_key_env):
        result.error = result.error.replace(os.environ[api_key_env], "***")
    return result


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
