"""Inference servers running in Docker containers, read from the Docker Engine API.

On the host, a containerised vLLM's process is visible but its listening socket is in the
container's network namespace, so process discovery cannot find its port. The Engine API over
its unix socket says what is needed (docs.docker.com, Engine API v1.41+):

- ``GET /containers/json`` (running containers): ``Id``, ``Names`` (``["/vllm-a"]``), ``Image``,
  ``Command``, ``Ports`` (``[{"IP", "PrivatePort", "PublicPort", "Type"}]``, published ports),
  ``HostConfig.NetworkMode``, ``NetworkSettings.Networks.<net>.IPAddress``;
- ``GET /containers/{id}/json``: ``Config.Env`` (``NVIDIA_VISIBLE_DEVICES``), ``Config.Cmd``,
  ``Config.Entrypoint``, ``HostConfig.DeviceRequests`` (``[{"Driver": "nvidia", "Count": -1,
  "DeviceIDs": ["0", "GPU-…"], "Capabilities": [["gpu"]]}]``: ``--gpus``), ``State.Pid``;
- ``GET /containers/{id}/top``: ``{"Titles": ["UID", "PID", …], "Processes": [[…], …]}``, host
  PIDs, which NVML lists on the GPUs: the GPU join works as for any other server.

httpx talks to the socket with ``HTTPTransport(uds=...)``; no Docker SDK needed. Without the
socket, or without permission to open it, discovery goes on without containers (one note).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field

import httpx

from .engines import names
from .engines.base import int_flag

DOCKER_SOCKET = "/var/run/docker.sock"
DOCKER_HOST_ENV = "DOCKER_HOST"  # unix:///path/to/docker.sock moves the socket


class DockerUnavailable(Exception):
    """The Engine API cannot be read; the message is one line for the user."""


@dataclass
class Container:
    id: str
    name: str
    image: str
    kind: str | None  # the engine it runs, None when not an inference server gpuwatch knows
    url: str | None  # where its engine answers from the host
    pids: list[int] = field(default_factory=list)
    gpus: list[str] = field(default_factory=list)  # GPU indices or UUIDs, or ["all"]


def socket_path(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    host = env.get(DOCKER_HOST_ENV, "")
    if host.startswith("unix://"):
        return host[len("unix://"):]
    return DOCKER_SOCKET


def engine_of(image: str, argv: list[str]) -> str | None:
    """The engine a container runs, from its image name, else from its command line."""
    image = image.lower()
    for marker, kind in names.CONTAINER_IMAGES:
        if marker in image:
            return kind
    joined = " ".join(argv)
    for kind, (_procnames, markers) in names.SERVER_PROCESSES.items():
        if any(m in joined for m in markers):
            return kind
    return None


def container_port(kind: str, argv: list[str], env: dict[str, str]) -> int:
    """The port the engine listens on inside the container."""
    port = int_flag(argv, names.PORT_FLAGS)
    if port:
        return port
    for var in names.CONTAINER_PORT_ENV.get(kind, ()):
        value = env.get(var, "")
        if var == "OLLAMA_HOST" and ":" in value:
            value = value.rsplit(":", 1)[1]
        if value.isdigit():
            return int(value)
    return names.CONTAINER_DEFAULT_PORTS.get(kind, names.DEFAULT_PORTS.get(kind, 0))


def gpus_of(inspect: dict, env: dict[str, str]) -> list[str]:
    """GPUs given to the container: ``--gpus`` (DeviceRequests), else NVIDIA_VISIBLE_DEVICES."""
    host = inspect.get("HostConfig") or {}
    for req in host.get("DeviceRequests") or ():
        caps = [c for group in (req.get("Capabilities") or ()) for c in (group or ())]
        if req.get("Driver") not in ("nvidia", "", None) and "gpu" not in caps:
            continue
        ids = req.get("DeviceIDs")
        if ids:
            return [str(i) for i in ids]
        if req.get("Count") == -1:
            return ["all"]
        if isinstance(req.get("Count"), int) and req["Count"] > 0:
            return [str(i) for i in range(req["Count"])]  # docker gives the first N GPUs
    visible = env.get("NVIDIA_VISIBLE_DEVICES", "").strip()
    if visible and visible not in ("none", "void"):
        return [v.strip() for v in visible.split(",") if v.strip()]
    return []


def _argv(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError:
            return value.split()
    return []


def _env(config: dict) -> dict[str, str]:
    out = {}
    for item in config.get("Env") or ():
        k, sep, v = str(item).partition("=")
        if sep:
            out[k] = v
    return out


def _url(summary: dict, inspect: dict, port: int) -> str | None:
    """Where the engine's container port answers from the host: the published host port, the
    container's own address on a bridge network, or the port itself with host networking."""
    mode = ((inspect.get("HostConfig") or {}).get("NetworkMode") or
            (summary.get("HostConfig") or {}).get("NetworkMode") or "")
    if mode == "host":
        return f"http://127.0.0.1:{port}"
    for p in summary.get("Ports") or ():
        if p.get("PrivatePort") == port and p.get("PublicPort") and p.get("Type", "tcp") == "tcp":
            ip = p.get("IP") or "127.0.0.1"
            if ip in ("0.0.0.0", "::", ""):
                ip = "127.0.0.1"
            return f"http://[{ip}]:{p['PublicPort']}" if ":" in ip else f"http://{ip}:{p['PublicPort']}"
    networks = ((summary.get("NetworkSettings") or {}).get("Networks") or
                (inspect.get("NetworkSettings") or {}).get("Networks") or {})
    for net in networks.values():
        ip = (net or {}).get("IPAddress")
        if ip:
            return f"http://{ip}:{port}"
    return None


def _pids(top: dict) -> list[int]:
    titles = top.get("Titles") or []
    try:
        col = titles.index("PID")
    except ValueError:
        return []
    out = []
    for row in top.get("Processes") or ():
        try:
            out.append(int(row[col]))
        except (IndexError, ValueError, TypeError):
            continue
    return out


class DockerDiscovery:
    """Reads the running containers that serve a model. ``containers()`` raises
    DockerUnavailable with a one-line reason when the API cannot be read."""

    def __init__(self, path: str | None = None, timeout_s: float = 1.0) -> None:
        self.path = path or socket_path()
        self.timeout_s = timeout_s
        self._client: httpx.Client | None = None

    def _get(self, path: str):
        if self._client is None:
            self._client = httpx.Client(transport=httpx.HTTPTransport(uds=self.path), base_url="http://docker",
                                        timeout=self.timeout_s, trust_env=False)
        try:
            r = self._client.get(path)
        except httpx.TransportError as e:
            raise DockerUnavailable(f"Docker API at {self.path} not readable ({_reason(e)})") from None
        if r.status_code != 200:
            raise DockerUnavailable(f"Docker API answered HTTP {r.status_code} to {path.split('?')[0]}")
        try:
            return r.json()
        except ValueError:
            raise DockerUnavailable(f"Docker API sent no JSON for {path.split('?')[0]}") from None

    def containers(self) -> list[Container]:
        if not os.path.exists(self.path):
            raise DockerUnavailable(f"no Docker socket at {self.path}: containers are not looked at")
        listed = self._get("/containers/json")
        out = []
        for summary in listed if isinstance(listed, list) else ():
            cid = summary.get("Id")
            if not isinstance(cid, str):
                continue
            image = str(summary.get("Image") or "")
            if engine_of(image, _argv(summary.get("Command"))) is None:
                continue  # not an inference server: not inspected
            try:
                inspect = self._get(f"/containers/{cid}/json")
            except DockerUnavailable:
                continue  # gone between the list and the inspect
            config = inspect.get("Config") or {}
            env = _env(config)
            argv = _argv(config.get("Entrypoint")) + _argv(config.get("Cmd")) or _argv(summary.get("Command"))
            kind = engine_of(image, argv)
            if kind is None:
                continue
            name = ((summary.get("Names") or [None])[0] or inspect.get("Name") or cid[:12]).lstrip("/")
            try:
                top = self._get(f"/containers/{cid}/top")
            except DockerUnavailable:
                top = {}
            pid = (inspect.get("State") or {}).get("Pid")
            pids = _pids(top) or ([pid] if isinstance(pid, int) and pid > 0 else [])
            out.append(Container(id=cid, name=name, image=image, kind=kind,
                                 url=_url(summary, inspect, container_port(kind, argv, env)),
                                 pids=pids, gpus=gpus_of(inspect, env)))
        return out

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _reason(e: BaseException) -> str:
    text = str(e).lower()
    if "permission" in text or isinstance(e.__context__, PermissionError):
        return "permission denied: add the user to the docker group"
    if "refused" in text:
        return "connection refused"
    return type(e).__name__
