"""Themes as files: TOML in the project's ``themes/`` (shipped as ``gpuwatch.themes``) and in
the user's ``~/.config/gpuwatch/themes``, loaded into Textual themes. A broken file is
reported (file and reason) and skipped; it never stops the dashboard."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from textual.theme import Theme

from ...config import config_dir
from ...userfiles import read_small_file, regular_file_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_THEME = "gpuwatch"
COLOR_KEYS = ("primary", "secondary", "accent", "warning", "error", "success", "foreground", "background",
              "surface", "panel", "boost")
KNOWN_KEYS = set(COLOR_KEYS) | {"name", "dark", "variables", "luminosity_spread", "text_alpha"}


@dataclass
class ThemeLoad:
    themes: list[Theme] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "FILE: reason", one per broken file


def builtin_theme_dir() -> Path | None:
    """themes/ of a source checkout, else the installed ``gpuwatch.themes`` package data."""
    package = Path(__file__).resolve().parents[2]  # .../gpuwatch
    for candidate in (package.parent / "themes", package / "themes"):
        if candidate.is_dir():
            return candidate
    return None


def user_theme_dir() -> Path:
    return config_dir() / "themes"


def theme_from_dict(data: dict, source: str) -> Theme:
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r}")
    name = data.get("name") or Path(source).stem
    if not isinstance(name, str):
        raise ValueError("name must be a string")
    if "primary" not in data:
        raise ValueError("a theme needs at least a 'primary' colour")
    from textual.color import Color, ColorParseError

    kwargs = {}
    for key in COLOR_KEYS:
        if key in data:
            value = data[key]
            try:
                if not isinstance(value, str):
                    raise TypeError(value)
                Color.parse(value)
            except (ColorParseError, TypeError, ValueError, AttributeError):
                raise ValueError(f"{key}: {value!r} is not a colour") from None
            kwargs[key] = value
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise ValueError("[variables] must map names to strings")
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ValueError("dark must be true or false")
    theme = Theme(name=name, dark=dark, variables=dict(variables), **kwargs)
    check_variables(theme)
    return theme


def check_variables(theme: Theme) -> None:
    """ValueError for a ``[variables]`` value Textual's stylesheet would reject when the theme
    is applied ("Error in stylesheet", exit 1): one that is not CSS at all, or one that stands
    for a colour (a variable the colour system defines) and is not a colour."""
    from textual.color import Color, ColorParseError
    from textual.css.tokenize import tokenize_values
    from textual.css.tokenizer import TokenError

    try:
        # the colour system without the theme's own variables: what each name stands for
        plain = Theme(name=theme.name, primary=theme.primary, secondary=theme.secondary, dark=theme.dark)
        base = plain.to_color_system().generate()
    except Exception as e:  # pragma: no cover - colours were checked above
        raise ValueError(f"cannot build colours: {e}") from None
    for name, value in theme.variables.items():
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"variables.{name}: not a CSS variable name")
        try:
            tokenize_values({name: value})
        except (TokenError, ValueError) as e:
            raise ValueError(f"variables.{name}: {value!r} is not valid CSS ({str(e).splitlines()[0][:80]})") from None
        if name in base and _is_colour(base[name]):
            ref = value.strip()
            if ref.startswith("$"):
                if ref[1:] not in base and ref[1:] not in theme.variables:
                    raise ValueError(f"variables.{name}: {value!r} names no known variable")
                continue
            try:
                Color.parse(ref)
            except (ColorParseError, ValueError):
                raise ValueError(f"variables.{name}: {value!r} is not a colour") from None


def _is_colour(text: str) -> bool:
    from textual.color import Color, ColorParseError
    try:
        Color.parse(text)
        return True
    except (ColorParseError, ValueError):
        return False


def load_theme_files(*dirs: Path | None) -> ThemeLoad:
    out = ThemeLoad()
    for d in dirs:
        if d is None or not d.is_dir():
            continue
        for path in sorted(d.glob("*.toml")):
            try:
                why = regular_file_problem(path)
                if why:
                    raise ValueError(why)
                data = tomllib.loads(read_small_file(path).decode("utf-8"))
                out.themes.append(theme_from_dict(data, str(path)))
            except tomllib.TOMLDecodeError as e:
                out.errors.append(f"{path}: not valid TOML ({e})")
            except UnicodeDecodeError:
                out.errors.append(f"{path}: not UTF-8 text")
            except (OSError, ValueError) as e:
                out.errors.append(f"{path}: {e}")
    return out


def load_all_themes() -> ThemeLoad:
    return load_theme_files(builtin_theme_dir(), user_theme_dir())


def theme_problem(name: str | None) -> str | None:
    """``--theme NAME`` names no theme gpuwatch has: the one-line message (exit 2)."""
    if not name:
        return None
    from textual.theme import BUILTIN_THEMES

    loaded = load_all_themes()
    names = [t.name for t in loaded.themes]
    if name in names or name in BUILTIN_THEMES:
        return None
    return f"unknown theme {name!r}: choose one of {', '.join(names + sorted(BUILTIN_THEMES))}"
