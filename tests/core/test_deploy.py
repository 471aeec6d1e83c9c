"""The container files, checked without Docker (the same checks `make lint-deploy` runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.healthcheck import healthy
from tests.processes import free_port
from tools.check_deploy import ROOT, check_compose, check_dockerfile

COMPOSE = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")


def compose_with(tmp_path: Path, old: str, new: str) -> list[str]:
    assert old in COMPOSE, old
    path = tmp_path / "docker-compose.yml"
    path.write_text(COMPOSE.replace(old, new, 1), encoding="utf-8")
    return check_compose(path, ROOT / ".env.example")


class TestComposeFile:
    def test_the_shipped_files_pass(self) -> None:
        assert check_compose(ROOT / "docker-compose.yml", ROOT / ".env.example") == []
        assert check_dockerfile(ROOT / "Dockerfile") == []

    @pytest.mark.parametrize(
        ("old", "new", "problem"),
        [
            (
                "    CANOPY_ENCRYPTION_KEY: ${",
                "    CANOPY_ENCRYPTON_KEY: ${",
                "CANOPY_ENCRYPTION_KEY (or",
            ),
            (
                "    CANOPY_ENCRYPTION_KEY: ${",
                "    CANOPY_ENCRYPTON_KEY: ${",
                "CANOPY_ENCRYPTON_KEY is not a",
            ),
            (
                "      FORWARDED_ALLOW_IPS: ",
                "      FORWARDED_ALLOWED_IPS: ",
                "api: FORWARDED_ALLOW_IPS",
            ),
            (
                "  redis:\n    image: redis:7\n    restart: unless-stopped\n",
                "  redis:\n    image: redis:7\n",
                "redis: no restart policy",
            ),
            ("      - redisdata:/data", "      - /data", "redis: anonymous volume /data"),
            ("      - redisdata:/data", "      - cache:/data", "volume cache is not declared"),
            ("    pull_policy: never\n", "    build: .\n", "exactly one of api and worker builds"),
            ("    pull_policy: never\n", "", "pull_policy: never"),
            ("/etc/canopy/rules.toml:ro", "/etc/rules.toml:ro", "no file is mounted there"),
            (
                '      - "${CANOPY_PUBLISH:-127.0.0.1:8000}:8000"',
                '      - "8080:8080"',
                "publishes",
            ),
            (
                "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}@",
                "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD@",
                "malformed",
            ),
            (
                "image: canopy:${CANOPY_IMAGE_TAG:-local}",
                "image: canopy:${CANOPY_IMAGE_TAG:?tag}",
                "CANOPY_IMAGE_TAG is missing",
            ),
        ],
    )
    def test_a_broken_compose_file_is_caught(
        self, tmp_path: Path, old: str, new: str, problem: str
    ) -> None:
        problems = compose_with(tmp_path, old, new)
        assert any(problem in p for p in problems), problems

    def test_a_file_that_does_not_parse_is_caught(self, tmp_path: Path) -> None:
        assert "does not parse" in compose_with(tmp_path, "services:", "services: [")[0]

    def test_a_hard_coded_health_check_port_is_caught(self, tmp_path: Path) -> None:
        dockerfile = tmp_path / "Dockerfile"
        dockerfile.write_text(
            (ROOT / "Dockerfile")
            .read_text()
            .replace(
                'CMD ["python", "-m", "app.core.healthcheck"]',
                "CMD curl -f http://127.0.0.1:8000/healthz",
            )
            + 'VOLUME ["/data"]\n'
        )
        problems = check_dockerfile(dockerfile)
        assert any("hard-codes a port" in p for p in problems)
        assert any("anonymous volume" in p for p in problems)


class TestHealthCheck:
    def test_nothing_listening_is_unhealthy(self) -> None:
        assert healthy(str(free_port()), timeout=0.5) is False


class TestOperationsGuide:
    def test_the_citus_plan_names_every_table(self) -> None:
        import re

        from app.models import metadata

        guide = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
        plan = guide[guide.index("CREATE EXTENSION citus;") :]
        placed = set(
            re.findall(
                r"(?:create_distributed_table|create_reference_table|"
                r"citus_add_local_table_to_metadata)\('(\w+)'",
                plan,
            )
        )
        assert {t.name for t in metadata.sorted_tables} <= placed
