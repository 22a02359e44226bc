"""One check for every URL a user gives (``--backend``, ``--prometheus``, ``bench URL``, the
config's ``[[backends]] url`` and ``[prometheus] url``): a bad one is a one-line message at
start, never a ValueError/InvalidURL/OverflowError traceback later."""

from __future__ import annotations

from urllib.parse import urlsplit


def check_url(text: str) -> str:
    """``text`` without a trailing slash, or ValueError with a one-line reason."""
    shown = repr(text if len(text) <= 80 else text[:79] + "…")
    if not isinstance(text, str) or not text.startswith(("http://", "https://")):
        raise ValueError(f"invalid URL {shown}: expected http://HOST:PORT")
    if not text.isprintable() or any(ch.isspace() for ch in text):
        raise ValueError(f"invalid URL {shown}: it contains spaces or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises for 99999, "abc"
    except ValueError as e:
        raise ValueError(f"invalid URL {shown}: {e}") from None
    if not parts.hostname:
        raise ValueError(f"invalid URL {shown}: no host name")
    if port == 0:
        raise ValueError(f"invalid URL {shown}: port 0")
    return text.rstrip("/")
