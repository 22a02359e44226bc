"""One pipeline, one direction: nothing below the front ends imports Textual."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import gpuwatch
from conftest import ROOT


def _modules():
    for m in pkgutil.walk_packages(gpuwatch.__path__, "gpuwatch."):
        if m.name.startswith("gpuwatch.frontends.tui") or m.name in ("gpuwatch.__main__",):
            continue
        yield m.name


def test_collectors_analysis_and_model_never_import_textual():
    names = list(_modules())
    assert "gpuwatch.collect.nvml" in names and "gpuwatch.model" in names
    code = ("import importlib, sys\n"
            f"names = {names!r}\n"
            "for n in names:\n"
            "    importlib.import_module(n)\n"
            "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
            "print('TEXTUAL' if bad else 'CLEAN')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "CLEAN"
