"""The rules of playing together: ``[revive]``, ``[groves]`` and ``[energy_rain]`` ship with Ant
Forest's values, are checked by key path and shown by ``canopy rules diff``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from app.rules.cli import rules_app
from app.rules.loader import default_rules_path, load_rules

runner = CliRunner()


class TestShippedValues:
    def test_ant_forest_values(self) -> None:
        rules = load_rules().rules
        assert rules.revive.enabled and rules.revive.window == timedelta(days=2)
        assert rules.revive.per_day_limit == 6 and rules.revive.reviver_share == 0.5
        assert rules.groves.max_members == 10
        rain = rules.energy_rain
        assert rain.enabled and rain.plays_per_day == 1 and rain.duration == timedelta(seconds=15)
        assert rain.max_g_per_play == 120 and rain.balls <= rain.max_g_per_play


class TestChecks:
    def test_each_bad_key_is_named_by_its_path(self, tmp_path: Path) -> None:
        path = tmp_path / "rules.toml"
        path.write_text(
            'version = "x"\n[revive]\nreviver_share = 1.0\nwindow = "0s"\nper_day_limit = -1\n'
            "[groves]\nmax_members = 1\n[energy_rain]\nballs = 50\nmax_g_per_play = 10\n"
            "plays_per_day = -1\nsurprise = true\n",
            encoding="utf-8",
        )
        result = runner.invoke(rules_app, ["check", str(path)])
        assert result.exit_code == 1
        lines = result.stdout.splitlines()
        for key in (
            "revive.reviver_share",
            "revive.window",
            "revive.per_day_limit",
            "groves.max_members",
            "energy_rain.max_g_per_play",
            "energy_rain.plays_per_day",
            "energy_rain.surprise",
        ):
            assert any(line.startswith(f"{key}: ") for line in lines), (key, lines)

    def test_diff_says_what_changed_in_designers_words(self, tmp_path: Path) -> None:
        text = default_rules_path().read_text(encoding="utf-8")
        changed = text.replace("reviver_share = 0.5 ", "reviver_share = 0.4 ").replace(
            "plays_per_day = 1 ", "plays_per_day = 2 "
        )
        assert changed != text
        new = tmp_path / "new.toml"
        new.write_text(changed, encoding="utf-8")
        result = runner.invoke(rules_app, ["diff", str(default_rules_path()), str(new)])
        assert result.exit_code == 0, result.output
        assert "revive.reviver_share: 50% → 40%" in result.stdout
        assert "energy_rain.plays_per_day: 1 → 2" in result.stdout
