"""``canopy rules check FILE`` (tested on the ``rules`` sub-app directly)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from app.rules.cli import rules_app
from app.rules.loader import default_rules_path, load_rules

runner = CliRunner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


class TestRulesCheck:
    def test_default_rules_pass_with_a_summary(self) -> None:
        result = runner.invoke(rules_app, ["check", str(default_rules_path())])
        assert result.exit_code == 0, result.output
        assert "ant-forest-classic" in result.stdout
        assert load_rules().sha256[:12] in result.stdout
        assert "11 activity kinds" in result.stdout
        assert "0.0165 g/step" in result.stdout
        assert "46.8 g/km" in result.stdout
        assert "warning" not in result.stdout

    def test_broken_file_lists_each_error_and_exits_1(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            'version = "x"\n[stealing]\nmax_share = 2\n'
            "[activities.metro]\nenergy_per_event_g = 52\ndaily_cap_count = -1\n",
        )
        result = runner.invoke(rules_app, ["check", str(path)])
        assert result.exit_code == 1
        lines = result.stdout.splitlines()
        assert "activities.metro.daily_cap_count: must be ≥ 0" in lines
        assert "stealing.max_share: must be ≤ 1" in lines
        assert lines[-1].endswith("2 errors, not valid")

    def test_syntax_error_exits_1(self, tmp_path: Path) -> None:
        path = write(tmp_path, 'version = "x\n')
        result = runner.invoke(rules_app, ["check", str(path)])
        assert result.exit_code == 1
        assert result.stdout.startswith("(file): TOML syntax error:")
        assert "line 1" in result.stdout

    def test_missing_file_exits_1(self, tmp_path: Path) -> None:
        result = runner.invoke(rules_app, ["check", str(tmp_path / "nope.toml")])
        assert result.exit_code == 1
        assert result.stdout.startswith("(file): cannot read")

    def test_undocumented_kind_is_valid_with_a_warning(self, tmp_path: Path) -> None:
        path = write(tmp_path, 'version = "x"\n[activities.k]\nenergy_per_event_g = 3\n')
        result = runner.invoke(rules_app, ["check", str(path)])
        assert result.exit_code == 0, result.output
        assert "1 activity kinds" in result.stdout
        assert "warning: activities.k.method: is not documented" in result.stdout
