"""What the user asks the collectors to watch, as plain data (no network code here, so the
config can be read without loading an HTTP stack)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendConfig:
    """A server the user named (``--backend URL`` or ``[[backends]]`` in the config file)."""

    url: str
    name: str | None = None
    api_key_env: str | None = None  # name of the environment variable holding the API key
    kind: str | None = None  # ollama | vllm | llamacpp | sglang; probed when None
    source: str = "configured"  # configured | simulated
