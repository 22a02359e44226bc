"""What `pip install .` ships: every package folder and the themes."""

from __future__ import annotations

import sys

from conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_every_package_folder_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gpuwatch").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert cfg["package-dir"]["gpuwatch.themes"] == "themes"


def test_the_four_themes_load_without_errors():
    from gpuwatch.frontends.tui.themes import load_theme_files
    loaded = load_theme_files(ROOT / "themes")
    assert loaded.errors == []
    names = {t.name for t in loaded.themes}
    assert {"gpuwatch", "nvidia", "high-contrast", "gpuwatch-light"} <= names
    assert any(not t.dark for t in loaded.themes)
