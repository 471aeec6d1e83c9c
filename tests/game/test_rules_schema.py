"""The rules file: schema, semantic checks, the shipped default and loading."""

from __future__ import annotations

import hashlib
from datetime import time, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.rules.loader import (
    LoadedRules,
    RuleIssue,
    RulesInvalid,
    default_rules_path,
    load_rules,
    parse_rules_text,
    validate_rules_text,
)
from app.rules.schema import ActivityRules, Rules

MINIMAL = 'version = "test"\n'

# A valid kind to append to, so that each case below breaks exactly one thing.
METRO = """
[activities.metro]
energy_per_event_g = 52
sources = ["partner"]
"""


def issues(text: str) -> list[tuple[str, str]]:
    return [(i.loc, i.msg) for i in validate_rules_text(text)]


@pytest.fixture(scope="module")
def default() -> LoadedRules:
    return load_rules()


class TestDefaultRules:
    def test_default_path_is_the_shipped_file(self) -> None:
        path = default_rules_path()
        assert path.is_file()
        assert path.parts[-2:] == ("rules", "default.toml")

    def test_default_file_is_valid(self) -> None:
        assert validate_rules_text(default_rules_path().read_text(encoding="utf-8")) == []

    def test_loaded_rules_carry_text_and_sha256(self, default: LoadedRules) -> None:
        raw = default_rules_path().read_bytes()
        assert default.text.encode("utf-8") == raw
        assert default.sha256 == hashlib.sha256(raw).hexdigest()
        assert default.rules.version == "ant-forest-classic"
        assert default.rules.timezone == "Asia/Shanghai"

    # kind → (energy_per_event_g, unit, energy_per_unit_g, daily_cap_g, daily_cap_count,
    #         monthly_cap_count): the brief's table.
    TABLE = {
        "walking": (None, "step", 0.0165, 296, None, None),
        "offline_payment": (5, None, None, None, 10, None),
        "e_invoice": (5, None, None, None, 5, None),
        "metro": (52, None, None, None, 5, None),
        "bus": (80, None, None, None, 5, None),
        "utility_bill": (262, None, None, None, None, 10),
        "train_ticket": (136, None, None, None, None, 10),
        "movie_ticket": (180, None, None, None, None, 10),
        "hospital_booking": (277, None, None, None, None, 5),
        "etc_toll": (23, None, None, None, None, None),
        "cycling": (None, "km", 50.0, None, None, None),
    }

    def test_exactly_the_briefs_kinds(self, default: LoadedRules) -> None:
        assert set(default.rules.activities) == set(self.TABLE)

    @pytest.mark.parametrize("kind", sorted(TABLE))
    def test_kind_reproduces_the_briefs_table(self, default: LoadedRules, kind: str) -> None:
        a = default.rules.activity(kind)
        got = (
            a.energy_per_event_g,
            a.unit,
            a.energy_per_unit_g,
            a.daily_cap_g,
            a.daily_cap_count,
            a.monthly_cap_count,
        )
        assert got == self.TABLE[kind]

    @pytest.mark.parametrize("kind", sorted(TABLE))
    def test_every_kind_documents_method_and_source(self, default: LoadedRules, kind: str) -> None:
        a = default.rules.activity(kind)
        assert len(a.method) > 20
        assert len(a.source) > 10
        for region in a.regions:
            assert a.for_region(region).source

    def test_walking(self, default: LoadedRules) -> None:
        walking = default.rules.activity("walking")
        assert walking.max_units_per_day == 100000
        assert walking.ripen_at_local == time(7, 0)
        assert set(walking.sources) == {"client", "partner"}
        assert walking.for_region(None).energy_g(10_000) == 165
        assert walking.for_region(None).energy_g(17_940) == 296

    @pytest.mark.parametrize(
        ("kind", "region", "unit", "per_unit"),
        [("metro", "shenzhen", "km", 46.8), ("bus", "shenzhen", "km", 26.9)],
    )
    def test_shenzhen_counts_transit_per_km(
        self, default: LoadedRules, kind: str, region: str, unit: str, per_unit: float
    ) -> None:
        factor = default.rules.activity(kind).for_region(region)
        assert (factor.energy_per_event_g, factor.unit, factor.energy_per_unit_g) == (
            None,
            unit,
            per_unit,
        )
        assert factor.region == region
        assert "Shenzhen" in factor.source

    def test_wuhan_cycling_keeps_the_km_unit(self, default: LoadedRules) -> None:
        factor = default.rules.activity("cycling").for_region("wuhan")
        assert (factor.unit, factor.energy_per_unit_g) == ("km", 93.3)
        assert factor.energy_g(10) == 933
        assert "Wuhan" in factor.source
        assert factor.method == default.rules.activity("cycling").method  # inherited

    def test_cycling_default_is_documented_as_a_placeholder(self, default: LoadedRules) -> None:
        assert "placeholder" in default.rules.activity("cycling").source.lower()

    def test_unknown_region_uses_the_kinds_defaults(self, default: LoadedRules) -> None:
        factor = default.rules.activity("metro").for_region("beijing")
        assert factor.energy_per_event_g == 52
        assert factor.region is None
        assert factor.energy_g() == 52

    @pytest.mark.parametrize(
        "kind",
        [
            "offline_payment",
            "e_invoice",
            "utility_bill",
            "train_ticket",
            "movie_ticket",
            "hospital_booking",
            "etc_toll",
        ],
    )
    def test_payments_tickets_bills_tolls_are_partner_only(
        self, default: LoadedRules, kind: str
    ) -> None:
        assert default.rules.activity(kind).sources == ("partner",)

    @pytest.mark.parametrize("kind", ["walking", "cycling", "metro", "bus"])
    def test_movement_accepts_clients_and_partners(self, default: LoadedRules, kind: str) -> None:
        assert set(default.rules.activity(kind).sources) == {"client", "partner"}

    def test_sections_have_the_contracts_values(self, default: LoadedRules) -> None:
        r = default.rules
        assert (r.ingest.max_age, r.ingest.max_future_skew) == (
            timedelta(days=7),
            timedelta(minutes=5),
        )
        assert (r.balls.ripen_after, r.balls.expire_after) == (
            timedelta(hours=24),
            timedelta(hours=72),
        )
        assert (r.stealing.enabled, r.stealing.mode) == (True, "random")
        assert (r.stealing.max_share, r.stealing.owner_floor) == (0.1, 0.5)
        assert r.watering.amounts_g == [10, 18, 33, 66]
        assert r.watering.per_friend_daily_limit == 3
        assert r.props["shield"].duration == timedelta(hours=24)
        assert r.props["double_collect"].duration == timedelta(minutes=5)
        assert r.props["shield"].cost_g == r.props["double_collect"].cost_g == 0
        assert (r.planting.batch_size, r.planting.batch_max_wait) == (100, timedelta(hours=24))
        assert r.limits.register == "20/minute"
        assert r.limits.login == "10/minute"
        assert r.limits.collect == "120/minute"
        assert r.limits.friend_requests == "30/minute"
        assert r.limits.activities == "600/minute"

    def test_unknown_kind_is_a_key_error(self, default: LoadedRules) -> None:
        with pytest.raises(KeyError, match="skydiving"):
            default.rules.activity("skydiving")


class TestDefaults:
    def test_minimal_file_gets_the_contracts_defaults(self) -> None:
        rules = parse_rules_text(MINIMAL)
        assert rules.timezone == "Asia/Shanghai"
        assert rules.ingest.max_age == timedelta(days=7)
        assert rules.balls.expire_after == timedelta(hours=72)
        assert rules.stealing.max_share == 0.1
        assert rules.watering.amounts_g == [10, 18, 33, 66]
        assert set(rules.props) == {"shield", "double_collect"}
        assert rules.planting.batch_size == 100
        assert rules.limits.collect == "120/minute"
        assert rules.limits.item("login").amount == 10
        assert rules.activities == {}

    def test_restating_one_prop_key_keeps_the_others(self) -> None:
        text = MINIMAL + '[props.shield]\ncost_g = 500\n[props.rain]\nduration = "1m"\n'
        rules = parse_rules_text(text)
        assert rules.props["shield"].cost_g == 500
        assert rules.props["shield"].duration == timedelta(hours=24)
        assert rules.props["double_collect"].duration == timedelta(minutes=5)
        assert rules.props["rain"].duration == timedelta(minutes=1)

    def test_kind_sources_default_to_partner_only(self) -> None:
        rules = parse_rules_text(MINIMAL + "[activities.x]\nenergy_per_event_g = 1\n")
        assert rules.activity("x").sources == ("partner",)


class TestDurations:
    @pytest.mark.parametrize(
        ("written", "expected"),
        [
            ('"90s"', timedelta(seconds=90)),
            ('"15m"', timedelta(minutes=15)),
            ('"24h"', timedelta(hours=24)),
            ('"7d"', timedelta(days=7)),
            ("3600", timedelta(hours=1)),
        ],
    )
    def test_duration_forms(self, written: str, expected: timedelta) -> None:
        rules = parse_rules_text(MINIMAL + f"[balls]\nripen_after = {written}\n")
        assert rules.balls.ripen_after == expected

    def test_kind_ripening_is_parsed(self) -> None:
        text = MINIMAL + METRO + 'ripen_after = "2h"\nripen_at_local = "06:30"\n'
        metro = parse_rules_text(text).activity("metro")
        assert metro.ripen_after == timedelta(hours=2)
        assert metro.ripen_at_local == time(6, 30)

    def test_json_dump_writes_durations_back_as_text_and_round_trips(
        self, default: LoadedRules
    ) -> None:
        dumped = default.rules.model_dump(mode="json")
        assert dumped["balls"]["expire_after"] == "3d"
        assert dumped["props"]["double_collect"]["duration"] == "5m"
        assert dumped["activities"]["walking"]["ripen_at_local"] == "07:00"
        assert Rules.model_validate(dumped) == default.rules


class TestSemanticChecks:
    @pytest.mark.parametrize(
        ("extra", "loc", "msg"),
        [
            ('timezone = "Mars/Olympus"', "timezone", "IANA time zone"),
            ('[ingest]\nmax_age = "soon"', "ingest.max_age", "must be a duration"),
            ("[ingest]\nmax_age = 0", "ingest.max_age", "longer than 0s"),
            ("[balls]\nexpire_after = 0", "balls.expire_after", "longer than 0s"),
            ("[balls]\nripen_after = -5", "balls.ripen_after", "must not be negative"),
            ("[stealing]\nmax_share = 1.5", "stealing.max_share", "must be ≤ 1"),
            ("[stealing]\nowner_floor = -0.1", "stealing.owner_floor", "must be ≥ 0"),
            ('[stealing]\nmode = "greedy"', "stealing.mode", "'random' or 'fixed'"),
            ('[stealing]\nenabled = "yes"', "stealing.enabled", "true or false"),
            ("[watering]\namounts_g = [10, 0]", "watering.amounts_g[1]", "must be > 0"),
            ("[watering]\namounts_g = []", "watering.amounts_g", "must not be empty"),
            (
                "[watering]\nper_friend_daily_limit = -1",
                "watering.per_friend_daily_limit",
                "must be ≥ 0",
            ),
            ("[props.shield]\ncost_g = -1", "props.shield.cost_g", "must be ≥ 0"),
            ("[props.rain]\ncost_g = 5", "props.rain.duration", "is required"),
            ("[planting]\nbatch_size = 0", "planting.batch_size", "must be ≥ 1"),
            ('[limits]\nlogin = "0/minute"', "limits.login", "at least 1"),
            ('[limits]\nlogin = "10/fortnight"', "limits.login", "N/minute"),
            ('[limits]\nlogin = "10 per minute"', "limits.login", "N/minute"),
            ('[limits]\nuploads = "1/second"', "limits.uploads", "unknown key"),
            ("versoin = 2", "versoin", "unknown key; did you mean version?"),
        ],
    )
    def test_section_value_rejected(self, extra: str, loc: str, msg: str) -> None:
        found = issues(MINIMAL + extra + "\n")
        assert len(found) == 1, found
        assert found[0][0] == loc
        assert msg in found[0][1]

    @pytest.mark.parametrize(
        ("extra", "loc", "msg"),
        [
            ("daily_cap_count = -1", "activities.metro.daily_cap_count", "must be ≥ 0"),
            ("daily_cap_g = -1", "activities.metro.daily_cap_g", "must be ≥ 0"),
            ("monthly_cap_count = -2", "activities.metro.monthly_cap_count", "must be ≥ 0"),
            ("max_units_per_day = -1", "activities.metro.max_units_per_day", "must be ≥ 0"),
            ('monthly_cap_count = "5"', "activities.metro.monthly_cap_count", "whole number"),
            ('ripen_at_local = "25:00"', "activities.metro.ripen_at_local", '"HH:MM"'),
            ('ripen_at_local = "7:00"', "activities.metro.ripen_at_local", '"HH:MM"'),
            ('ripen_after = "later"', "activities.metro.ripen_after", "must be a duration"),
            ("daily_cap = 3", "activities.metro.daily_cap", "unknown key; did you mean"),
        ],
    )
    def test_kind_value_rejected(self, extra: str, loc: str, msg: str) -> None:
        found = issues(MINIMAL + METRO + extra + "\n")
        assert len(found) == 1, found
        assert found[0][0] == loc
        assert msg in found[0][1]

    @pytest.mark.parametrize(
        ("kind", "loc", "msg"),
        [
            (
                "energy_per_event_g = 5\nunit = 'km'\nenergy_per_unit_g = 1.0",
                "activities.k.energy_per_event_g",
                "use either",
            ),
            ("unit = 'km'", "activities.k.energy_per_unit_g", "required when unit is set"),
            ("energy_per_unit_g = 0.5", "activities.k.unit", "required when energy_per_unit_g"),
            ("daily_cap_count = 1", "activities.k", "needs energy_per_event_g"),
            ("energy_per_event_g = 0", "activities.k.energy_per_event_g", "must be > 0"),
            ("energy_per_event_g = 1.5", "activities.k.energy_per_event_g", "whole number"),
            ("unit = 'km'\nenergy_per_unit_g = 0", "activities.k.energy_per_unit_g", "> 0"),
            ("energy_per_event_g = 1\nsources = []", "activities.k.sources", "not be empty"),
            (
                "energy_per_event_g = 1\nsources = ['client', 'friend']",
                "activities.k.sources[1]",
                "'client' or 'partner'",
            ),
        ],
    )
    def test_kind_energy_and_sources_rejected(self, kind: str, loc: str, msg: str) -> None:
        found = issues(MINIMAL + "[activities.k]\n" + kind + "\n")
        assert len(found) == 1, found
        assert found[0][0] == loc
        assert msg in found[0][1]

    @pytest.mark.parametrize(
        ("region", "loc", "msg"),
        [
            ("unit = 'km'", "activities.metro.regions.sz.energy_per_unit_g", "required"),
            (
                "energy_per_unit_g = 46.8",
                "activities.metro.regions.sz.unit",
                "the kind has no unit",
            ),
            (
                "energy_per_event_g = 40\nunit = 'km'\nenergy_per_unit_g = 1.0",
                "activities.metro.regions.sz.energy_per_event_g",
                "use either",
            ),
            ("energy_per_event_g = -4", "activities.metro.regions.sz.energy_per_event_g", "> 0"),
            ("daily_cap_count = 2", "activities.metro.regions.sz.daily_cap_count", "unknown"),
        ],
    )
    def test_region_override_rejected(self, region: str, loc: str, msg: str) -> None:
        found = issues(MINIMAL + METRO + "[activities.metro.regions.sz]\n" + region + "\n")
        assert len(found) == 1, found
        assert found[0][0] == loc
        assert msg in found[0][1]

    def test_region_override_may_replace_per_event_with_per_km(self) -> None:
        text = MINIMAL + METRO + "[activities.metro.regions.sz]\nunit = 'km'\n"
        text += "energy_per_unit_g = 46.8\nmax_units_per_day = 90\nmethod = 'per km'\n"
        metro = parse_rules_text(text).activity("metro")
        factor = metro.for_region("sz")
        assert (factor.energy_per_event_g, factor.unit, factor.energy_per_unit_g) == (
            None,
            "km",
            46.8,
        )
        assert factor.method == "per km"
        assert factor.energy_g(2.5) == 117  # floor(117.0)

    def test_region_override_may_replace_per_km_with_per_event(self) -> None:
        text = MINIMAL + "[activities.bike]\nunit = 'km'\nenergy_per_unit_g = 50\n"
        text += "[activities.bike.regions.x]\nenergy_per_event_g = 30\n"
        factor = parse_rules_text(text).activity("bike").for_region("x")
        assert factor.energy_per_event_g == 30
        assert (factor.unit, factor.energy_per_unit_g) == (None, None)

    @pytest.mark.parametrize(
        ("toml_key", "loc"),
        [
            ("[activities.Metro]", "activities.Metro"),
            ('[activities."car-free"]', "activities.car-free"),
            ('[activities."new york"]', 'activities."new york"'),
            ("[activities.metro.regions.ShenZhen]", "activities.metro.regions.ShenZhen"),
            ("[props.Turbo]", "props.Turbo"),
        ],
    )
    def test_names_must_be_lowercase_words(self, toml_key: str, loc: str) -> None:
        body = "energy_per_event_g = 1" if "activities" in toml_key else 'duration = "1m"'
        text = MINIMAL + (METRO if "regions" in toml_key else "") + f"{toml_key}\n{body}\n"
        found = issues(text)
        assert (loc, "name must use only a-z, 0-9 and _") in found

    def test_every_error_is_reported_at_once(self) -> None:
        text = (
            'timezone = "Nowhere"\n[stealing]\nmax_share = 2\n'
            "[activities.metro]\nenergy_per_event_g = 52\ndaily_cap_count = -1\n"
            "monthly_cap_count = -1\nunit = 'km'\n"
            "[activities.metro.regions.sz]\nunit = 'km'\n"
        )
        assert set(issues(text)) == {
            ("version", "is required"),
            ("timezone", 'must be an IANA time zone such as "Asia/Shanghai"'),
            ("stealing.max_share", "must be ≤ 1"),
            ("activities.metro.daily_cap_count", "must be ≥ 0"),
            ("activities.metro.monthly_cap_count", "must be ≥ 0"),
            (
                "activities.metro.energy_per_event_g",
                "use either energy_per_event_g or unit + energy_per_unit_g",
            ),
            ("activities.metro.regions.sz.energy_per_unit_g", "is required when unit is set"),
        }

    def test_wrong_table_shapes(self) -> None:
        assert issues(MINIMAL + "activities = 3\n") == [("activities", "must be a table")]
        assert issues(MINIMAL + "balls = 3\n") == [("balls", "must be a table")]
        assert issues(MINIMAL + "[activities]\nmetro = 3\n") == [
            ("activities.metro", "must be a table")
        ]

    def test_toml_syntax_error_gives_line_and_column(self) -> None:
        found = validate_rules_text(MINIMAL + "[balls]\nripen_after = \n")
        assert len(found) == 1
        assert found[0].loc == "(file)"
        assert "line 3" in found[0].msg
        assert "column" in found[0].msg

    def test_parse_raises_rules_invalid_with_every_error(self) -> None:
        with pytest.raises(RulesInvalid) as caught:
            parse_rules_text("[planting]\nbatch_size = 0\n")
        assert caught.value.errors == [
            RuleIssue(loc="planting.batch_size", msg="must be ≥ 1"),
            RuleIssue(loc="version", msg="is required"),
        ]

    def test_models_enforce_the_energy_rule_when_built_in_python(self) -> None:
        with pytest.raises(ValidationError, match="use either"):
            ActivityRules(energy_per_event_g=5, unit="km", energy_per_unit_g=1.0)
        with pytest.raises(ValidationError, match="needs energy_per_event_g"):
            ActivityRules()


class TestEnergy:
    def test_fractions_are_floored_exactly(self) -> None:
        text = MINIMAL + "[activities.k]\nunit = 'km'\nenergy_per_unit_g = 0.29\n"
        rules = parse_rules_text(text)
        factor = rules.activity("k").for_region(None)
        assert factor.energy_g(100) == 29  # 0.29 * 100 is 28.999… in binary floating point
        assert factor.energy_g(3.9) == 1

    def test_per_unit_energy_needs_a_quantity(self) -> None:
        factor = parse_rules_text(
            MINIMAL + "[activities.k]\nunit = 'km'\nenergy_per_unit_g = 1\n"
        ).activity("k")
        with pytest.raises(ValueError, match="quantity"):
            factor.for_region(None).energy_g(None)
        with pytest.raises(ValueError, match="quantity"):
            factor.for_region(None).energy_g(-1)


class TestLoadRules:
    def test_loads_a_given_path(self, tmp_path: Path) -> None:
        path = tmp_path / "r.toml"
        path.write_bytes(b'version = "crlf"\r\n[stealing]\r\nenabled = false\r\n')
        loaded = load_rules(path)
        assert loaded.rules.stealing.enabled is False
        assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    def test_missing_file_is_a_clear_error(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError, match="rules file not found"):
            load_rules(tmp_path / "nope.toml")

    def test_invalid_file_raises_rules_invalid(self, tmp_path: Path) -> None:
        path = tmp_path / "r.toml"
        path.write_text(MINIMAL + "[planting]\nbatch_size = 0\n", encoding="utf-8")
        with pytest.raises(RulesInvalid) as caught:
            load_rules(path)
        assert [(e.loc, e.msg) for e in caught.value.errors] == [
            ("planting.batch_size", "must be ≥ 1")
        ]

    def test_non_utf8_file(self, tmp_path: Path) -> None:
        path = tmp_path / "r.toml"
        path.write_bytes(b'version = "\xff"\n')
        with pytest.raises(RulesInvalid) as caught:
            load_rules(path)
        assert caught.value.errors[0].loc == "(file)"
