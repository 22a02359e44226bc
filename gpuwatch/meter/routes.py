"""Routes and addresses of ``gpuwatch meter`` (no HTTP stack: gpuwatch's collector reads a
meter's command line with these too)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Route:
    listen: str  # as given: "127.0.0.1:11534"
    host: str
    port: int
    upstream: str  # "http://127.0.0.1:11434" (no trailing slash)
    upstream_host: str  # Host header value for the upstream

    @property
    def label(self) -> str:
        return self.listen


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` (loopback)."""
    text = text.strip()
    if text.isdigit():
        host, port = "127.0.0.1", text
    elif text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"invalid address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:11534")
        host = host or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid port in {text!r}")
    return host, int(port)


def parse_route(text: str) -> Route:
    """``LISTEN=UPSTREAM``, e.g. ``127.0.0.1:11534=http://127.0.0.1:11434``."""
    listen, sep, upstream = text.partition("=")
    if not sep or not listen or not upstream:
        raise ValueError(f"invalid route {text!r}: expected LISTEN=UPSTREAM, "
                         "e.g. 127.0.0.1:11534=http://127.0.0.1:11434")
    host, port = parse_listen(listen)
    upstream = upstream.strip().rstrip("/")
    if "://" not in upstream:
        upstream = "http://" + upstream
    parts = urlsplit(upstream)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid upstream {upstream!r}: expected http://HOST:PORT")
    if parts.path or parts.query:
        raise ValueError(f"invalid upstream {upstream!r}: a route forwards whole servers (no path)")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"invalid port in upstream {upstream!r}") from None
    return Route(listen=listen.strip(), host=host, port=port, upstream=upstream,
                 upstream_host=parts.netloc.rpartition("@")[2])


def join_addr(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
