import pytest

from gpuwatch.analysis.alert_config import RULE_PARAMS, AlertConfig
from gpuwatch.analysis.rules import RULES


def test_every_rule_has_a_config_entry_and_back():
    assert set(RULES) == set(RULE_PARAMS)
    for r in RULES.values():
        assert r.severity in ("info", "warning", "critical")


def test_defaults():
    cfg = AlertConfig.from_toml_dict({})
    assert cfg.raise_after_s == 10 and cfg.clear_after_s == 20
    assert cfg.param("thermal_throttle", "margin_c") == 5
    assert cfg.raise_after("thermal_throttle") == 10
    assert cfg.raise_after("gpu_lost") == 0  # lost GPUs raise at once
    assert cfg.clear_after("gpu_lost") == 20


def test_global_and_per_rule_overrides():
    cfg = AlertConfig.from_toml_dict({
        "raise_after_s": 3, "clear_after_s": 7.5, "history_size": 50,
        "thermal_throttle": {"margin_c": 8, "raise_after_s": 1},
        "imbalance": {"util_spread_pct": 45.5, "enabled": False, "severity": "critical"},
    })
    assert cfg.raise_after("power_cap") == 3 and cfg.clear_after("hw_slowdown") == 7.5
    assert cfg.clear_after("power_cap") == 120  # its own default: the cap binds only at load peaks
    assert cfg.raise_after("thermal_throttle") == 1
    assert cfg.param("thermal_throttle", "margin_c") == 8.0
    assert cfg.param("imbalance", "util_spread_pct") == 45.5
    assert cfg.param("imbalance", "window_s") == 30  # untouched keys keep defaults
    assert not cfg.is_enabled("imbalance") and cfg.is_enabled("power_cap")
    assert cfg.rule("imbalance").severity == "critical"
    assert cfg.history_size == 50


@pytest.mark.parametrize("table, message", [
    ({"imbalance": {"util_spread_pct": "x"}}, "alerts.imbalance.util_spread_pct: expected a number, got 'x'"),
    ({"imbalance": {"util_spread_pct": True}}, "alerts.imbalance.util_spread_pct: expected a number, got True"),
    ({"imbalance": {"spread": 3}}, "alerts.imbalance.spread: unknown key"),
    ({"nosuchrule": {}}, "alerts.nosuchrule: unknown key"),
    ({"raise_after_s": -1}, "alerts.raise_after_s: expected a number >= 0"),
    ({"raise_after_s": "10s"}, "alerts.raise_after_s: expected a number, got '10s'"),
    ({"thermal_throttle": 5}, "alerts.thermal_throttle: expected a table"),
    ({"power_cap": {"severity": "loud"}}, "alerts.power_cap.severity: expected one of info, warning, critical"),
    ({"power_cap": {"enabled": "yes"}}, "alerts.power_cap.enabled: expected true or false"),
    ({"history_size": 2.5}, "alerts.history_size: expected a whole number"),
])
def test_bad_values_name_the_key(table, message):
    with pytest.raises(ValueError) as err:
        AlertConfig.from_toml_dict(table)
    assert str(err.value).startswith(message)


def test_toml_text_round_trip():
    import tomllib
    text = """
[alerts]
raise_after_s = 10
[alerts.thermal_throttle]
margin_c = 5
"""
    cfg = AlertConfig.from_toml_dict(tomllib.loads(text)["alerts"])
    assert cfg.param("thermal_throttle", "margin_c") == 5


def test_engine_keeps_only_what_the_longest_window_needs():
    cfg = AlertConfig.from_toml_dict({"queue_backlog": {"window_s": 400}})
    assert cfg.max_window_s() == 400
