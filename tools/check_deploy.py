"""Check the container files without Docker: ``python tools/check_deploy.py``.

- ``docker-compose.yml`` parses (anchors and merge keys resolved as compose does), its
  ``${...}`` interpolations are well formed, and the api and worker services: share one image
  that is built once, restart on failure, name every variable Canopy needs (each a real
  setting, so a typo fails here and not in production), mount the rules file where
  ``CANOPY_RULES`` points, and use named volumes only; the API's health check port is the
  port it listens on and publishes.
- Every variable the compose file requires is in ``.env.example``.
- The ``Dockerfile`` checks health on the configured port and declares no anonymous volume.

Exit 0, or 1 listing each problem. (The Dockerfile's style is hadolint's job:
``make lint-deploy`` runs both.)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

# what api and worker must be given (a secret may come as NAME_FILE instead)
REQUIRED = (
    "CANOPY_DATABASE_URL",
    "CANOPY_REDIS_URL",
    "CANOPY_JWT_SECRET",
    "CANOPY_ENCRYPTION_KEY",
    "CANOPY_RULES",
)
REQUIRED_API = ("FORWARDED_ALLOW_IPS", "CANOPY_PORT", "CANOPY_HOST")
# read by `canopy serve` itself rather than by the settings class
SERVE_OPTIONS = {"CANOPY_HOST", "CANOPY_PORT", "CANOPY_WORKERS", "CANOPY_GRACEFUL_TIMEOUT"}
RESTART = {"always", "unless-stopped", "on-failure"}
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
_WELL_FORMED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*((:?[-?+]).*)?$", re.S)


def known_variables() -> set[str]:
    sys.path.insert(0, str(ROOT))
    from app.config import ENV_PREFIX, Settings

    names = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    return names | {f"{n}_FILE" for n in names} | SERVE_OPTIONS


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _interpolate(text: str) -> str:
    """Compose's substitution with every variable unset: defaults in, required ones as "X"."""

    def value(match: re.Match[str]) -> str:
        inner = match.group(1)
        default = re.match(r"^\w+:?-(.*)$", inner, re.S)
        return default.group(1) if default else "X"

    return _INTERPOLATION.sub(value, text)


def _mounts(service: dict[str, Any]) -> list[str]:
    return [_interpolate(m) for m in service.get("volumes") or [] if isinstance(m, str)]


def _has(env: dict[str, str], name: str) -> bool:
    return name in env or f"{name}_FILE" in env


def check_compose(path: Path, env_example: Path | None = None) -> list[str]:
    problems: list[str] = []
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        return [f"{path.name}: does not parse: {exc}"]
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        return [f"{path.name}: no services"]
    required_vars: set[str] = set()
    for text in _strings(doc):
        if text.replace("$$", "").count("${") != len(_INTERPOLATION.findall(text)):
            problems.append(f"malformed interpolation in {text!r}")
        for inner in _INTERPOLATION.findall(text):
            if not _WELL_FORMED.match(inner):
                problems.append(f"malformed interpolation ${{{inner}}}")
            elif ":?" in inner or re.match(r"^\w+\?", inner):
                required_vars.add(re.split(r"[:?]", inner, maxsplit=1)[0])
    services: dict[str, dict[str, Any]] = doc["services"]
    declared_volumes = set((doc.get("volumes") or {}).keys())
    for name, service in services.items():
        if service.get("restart") not in RESTART:
            problems.append(f"{name}: no restart policy (one of {sorted(RESTART)})")
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source")
            if isinstance(mount, str) and ":" not in mount:
                problems.append(f"{name}: anonymous volume {mount}")
            elif (
                source
                and not source.startswith(("/", ".", "$", "~"))
                and source not in declared_volumes
            ):
                problems.append(f"{name}: volume {source} is not declared under volumes:")
    api, worker = services.get("api"), services.get("worker")
    if api is None or worker is None:
        return [*problems, "services api and worker are both needed"]
    if api.get("image") is None or api.get("image") != worker.get("image"):
        problems.append("api and worker must run the same image")
    if sum("build" in s for s in (api, worker)) != 1:
        problems.append("exactly one of api and worker builds the image (the other reuses it)")
    if "build" not in worker and worker.get("pull_policy") != "never":
        problems.append("worker: pull_policy: never (else compose tries to pull the local image)")
    known = known_variables()
    for name, service in (("api", api), ("worker", worker)):
        env = _environment(service)
        for var in REQUIRED + (REQUIRED_API if name == "api" else ()):
            if not _has(env, var):
                problems.append(f"{name}: {var} (or {var}_FILE) is not set")
        for var in env:
            if var.startswith("CANOPY_") and var not in known:
                problems.append(f"{name}: {var} is not a Canopy setting")
        rules = env.get("CANOPY_RULES", "")
        targets = [m.split(":")[1] for m in _mounts(service) if ":" in m]
        if rules and rules not in targets:
            problems.append(f"{name}: CANOPY_RULES={rules} but no file is mounted there")
    port = _environment(api).get("CANOPY_PORT", "8000")
    published = [_interpolate(str(p)).rsplit(":", 1)[-1] for p in api.get("ports") or []]
    if published and port not in published:
        problems.append(f"api: listens on CANOPY_PORT={port} but publishes {published}")
    if env_example is not None and env_example.exists():
        listed = {
            line.split("=", 1)[0].strip()
            for line in env_example.read_text(encoding="utf-8").splitlines()
            if "=" in line and not line.lstrip().startswith("#")
        }
        for var in sorted(required_vars - listed):
            problems.append(f"{env_example.name}: required variable {var} is missing")
    return problems


def check_dockerfile(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    problems = []
    health = re.search(r"^HEALTHCHECK\b.*?(?<!\\)$", text, re.M | re.S)
    if health is None:
        problems.append("Dockerfile: no HEALTHCHECK")
    elif re.search(r"\b8000\b", text[health.start() : text.find("\n", health.end())]):
        problems.append("Dockerfile: the HEALTHCHECK hard-codes a port (use CANOPY_PORT)")
    if re.search(r"^VOLUME\b", text, re.M):
        problems.append("Dockerfile: VOLUME gives every container an anonymous volume")
    return problems


def main() -> int:
    problems = check_compose(ROOT / "docker-compose.yml", ROOT / ".env.example")
    problems += check_dockerfile(ROOT / "Dockerfile")
    for problem in problems:
        print(problem)
    print(f"docker-compose.yml, Dockerfile: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
