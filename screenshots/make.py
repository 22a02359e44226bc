"""Regenerate the SVG screenshots in this folder, headlessly, the way a user would:
`gpuwatch snapshot --svg FILE --demo SCENARIO --size WxH` for each scenario and size.

    python screenshots/make.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHOTS = [
    ("h100x8", "h100x8"),
    ("h100x8-faults", "h100x8:hot,lost,pcie"),
    ("rtx4090x2", "rtx4090x2"),
    ("rtx4090x2-offload", "rtx4090x2:offload,hot=0"),
    ("ollama3x", "ollama3x"),  # three Ollama replicas behind an nginx pool (issue 14)
    ("ollama3x-lost", "ollama3x:lost=2"),  # ... one of which lost its GPU
]
SIZES = ["200x60", "120x40", "80x24"]


def main() -> int:
    env = dict(os.environ)
    for var in ("NO_COLOR", "TEXTUAL_THEME", "FORCE_COLOR"):
        env.pop(var, None)
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    for name, spec in SHOTS:
        for size in SIZES:
            out = HERE / f"{name}-{size}.svg"
            cmd = [sys.executable, "-m", "gpuwatch", "snapshot", "--svg", str(out), "--demo", spec, "--size", size]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"failed: {' '.join(cmd)}\n{r.stderr}", file=sys.stderr)
                return 1
            print(out.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
