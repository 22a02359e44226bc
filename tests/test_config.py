"""Settings: the config file merged with the command line, validated once, one-line errors."""

from __future__ import annotations

import dataclasses

import pytest

from gpuwatch.cli import main
from gpuwatch.cli.commands import settings_from
from gpuwatch.cli.parser import build_parser
from gpuwatch.config import Settings, load_settings
from gpuwatch.errors import ConfigError, UserError


def write(tmp_path, text: str):
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_the_command_line_wins_over_the_config_file(tmp_path):
    cfg = write(tmp_path, 'interval = 5\ntheme = "nvidia"\n[[backends]]\nurl = "http://127.0.0.1:8000/"\nname = "main"\n'
                          '[alerts.thermal_throttle]\nmargin_c = 7\n')
    s = settings_from(build_parser().parse_args(["--config", str(cfg), "--interval", "2", "--theme", "gpuwatch-light",
                                                 "--backend", "http://127.0.0.1:9000"]))
    assert s.interval == 2.0 and s.theme == "gpuwatch-light"
    assert [(b.url, b.name) for b in s.backends] == [("http://127.0.0.1:8000", "main"), ("http://127.0.0.1:9000", None)]
    # alerts arrive parsed: a front end never sees the raw TOML table
    assert s.alerts.param("thermal_throttle", "margin_c") == 7


def test_the_config_file_fills_what_the_command_line_leaves_out(tmp_path):
    cfg = write(tmp_path, 'interval = 5\ntheme = "nvidia"\ndiscover = false\n[prometheus]\nurl = "http://prom:9090"\n')
    s = load_settings(cfg)
    assert (s.interval, s.theme, s.discover, s.prometheus_url) == (5.0, "nvidia", False, "http://prom:9090")
    # --no-discover can only turn discovery off
    assert load_settings(write(tmp_path, ""), discover=False).discover is False


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().interval = 3  # type: ignore[misc]


def test_a_missing_default_file_is_an_empty_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    s = load_settings()
    assert s.interval == 1.0 and s.backends == () and s.config_path is None


@pytest.mark.parametrize("text, words", [
    ("interval = 0.01\n", "interval: 0.01 is outside 0.1..3600 seconds"),
    ("colour = 1\n", "unknown key 'colour'"),
    ('[[backends]]\nurl = "ftp://x"\n', "backends[0].url"),
    ("[alerts.thermal_throttle]\nmargin_c = 'x'\n", "alerts.thermal_throttle.margin_c"),
    ("interval = \n", "is not valid TOML"),
])
def test_a_bad_config_is_one_line_naming_the_file_and_key(tmp_path, text, words):
    cfg = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert words in str(e.value) and str(cfg) in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, UserError)


def test_every_user_error_reaches_the_terminal_as_one_line_and_exit_2(tmp_path, capsys):
    cfg = write(tmp_path, "interval = 0.01\n")
    assert main(["--config", str(cfg), "snapshot", "--demo"]) == 2
    assert main(["snapshot", "--demo", "nosuchbox"]) == 2
    assert main(["snapshot", "--interval", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("gpuwatch: ") for line in err)
    assert "unknown demo scenario 'nosuchbox'" in err[1]
