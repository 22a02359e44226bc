"""Small checks of how gpuwatch was called, kept out of the command-line module so that any
layout of it can call them. Each returns the one-line message of a usage error (exit 2), or
None when all is well."""

from __future__ import annotations

from urllib.parse import urlsplit


def demo_before_command(argv: list[str], commands, const: str) -> list[str]:
    """``gpuwatch --demo doctor``: ``--demo`` takes an optional SCENARIO, so argparse would read
    the subcommand as the scenario. A bare ``--demo`` directly before a subcommand's name means
    the default scenario."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--demo" and out[i + 1] in commands:
            out[i] = f"--demo={const}"
    return out


def url_problem(text: str) -> str | None:
    """``http://HOST[:PORT][/path]`` with a host and a valid port."""
    if not text.startswith(("http://", "https://")):
        return f"invalid URL {text[:80]!r}: expected http://HOST:PORT"
    if not text.isprintable() or any(ch.isspace() for ch in text):
        return f"invalid URL {text[:80]!r}: it contains spaces or control characters"
    try:
        parts = urlsplit(text)
        port = parts.port  # raises on a port that is not a number or out of range
    except ValueError as e:
        return f"invalid URL {text!r}: {e}"
    if not parts.hostname:
        return f"invalid URL {text!r}: no host (expected http://HOST:PORT)"
    if port == 0:
        return f"invalid URL {text!r}: port 0"
    return None


def snapshot_flags_problem(args) -> str | None:
    """Options that only mean something with another one: refuse rather than ignore."""
    if getattr(args, "size", None) is not None and not getattr(args, "svg", None):
        return "--size is the size of the picture drawn by --svg FILE; add --svg FILE"
    return None


def no_terminal_problem(stdin, stdout, stderr=None) -> str | None:
    """The live dashboard needs a terminal: it reads keys from standard input and Textual draws
    on standard error (``sys.__stderr__``). Without one it would write escape codes into a file
    and spin. Say so in one line (exit 2) and point to what works there."""
    def tty(f) -> bool:
        try:
            return f is not None and f.isatty()
        except (ValueError, OSError):
            return False
    missing = [name for name, f in (("input", stdin), ("output", stdout), ("error", stderr))
               if f is not None and not tty(f)]
    if not missing:
        return None
    which = " and ".join(missing)
    return (f"the dashboard needs a terminal and standard {which} {'is' if len(missing) == 1 else 'are'} not one; "
            f"for a file or a pipe use `gpuwatch snapshot --json` (one look) or `gpuwatch record -o FILE` "
            f"(a recording)")
