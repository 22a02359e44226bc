"""Command line: ``gpuwatch`` (the dashboard) and its subcommands.

Every user error (a bad flag or value, a broken config, an unknown scenario) is a
:class:`~gpuwatch.errors.UserError`, caught here once: one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys

from ..errors import UserError
from .commands import COMMANDS, cmd_dashboard
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    from ..usage import demo_before_command

    parser = build_parser()
    try:
        args = parser.parse_args(demo_before_command(sys.argv[1:] if argv is None else argv, COMMANDS, "h100x8"))
        handler = COMMANDS.get(args.command, cmd_dashboard)
        return handler(args)
    except UserError as e:
        print(f"gpuwatch: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `gpuwatch snapshot --json | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


def entry() -> None:
    sys.exit(main())


__all__ = ["build_parser", "entry", "main"]
