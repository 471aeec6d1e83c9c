"""The rules' [rewards] and [campaigns] tables: checked by `canopy rules check` with key paths,
shown by `canopy rules diff`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from app.rules.cli import rules_app
from app.rules.loader import default_rules_path, load_rules

runner = CliRunner()
DEFAULT = default_rules_path().read_text(encoding="utf-8")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


class TestRewardsRules:
    def test_the_shipped_values(self) -> None:
        rules = load_rules().rules
        assert (rules.rewards.enabled, rules.rewards.daily_limit_g) == (True, 0)
        assert rules.rewards.fulfil_timeout.total_seconds() == 86_400
        assert (rules.campaigns.min_donation_g, rules.campaigns.daily_limit_g) == (1, 0)

    def test_check_names_each_bad_key(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "rules.toml",
            'version = "x"\n[rewards]\ndaily_limit_g = -5\nfulfil_timeout = "0s"\nbonus = 1\n'
            '[campaigns]\nmin_donation_g = 0\nenabled = "yes"\n',
        )
        result = runner.invoke(rules_app, ["check", str(path)])
        assert result.exit_code == 1
        keys = {line.split(":", 1)[0] for line in result.stdout.splitlines()[:-1]}
        assert {
            "rewards.daily_limit_g",
            "rewards.fulfil_timeout",
            "rewards.bonus",
            "campaigns.min_donation_g",
            "campaigns.enabled",
        } <= keys

    def test_diff_shows_a_new_ceiling(self, tmp_path: Path) -> None:
        old = write(tmp_path, "old.toml", DEFAULT)
        new = write(
            tmp_path,
            "new.toml",
            DEFAULT.replace(
                "daily_limit_g = 0                # most energy one user spends",
                "daily_limit_g = 2000             # most energy one user spends",
            ),
        )
        result = runner.invoke(rules_app, ["diff", str(old), str(new)])
        assert result.exit_code == 0, result.output
        assert "rewards.daily_limit_g" in result.stdout and "2000" in result.stdout
