"""docs/api.md stays true: every error code is listed, and the webhook test vector and both
verification snippets agree with what the service signs."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook

import app
from app.core.errors import CanopyError

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _vector() -> dict[str, str]:
    block = re.search(r"```text\n(.*?)```", _text(), re.S)
    assert block, "the test vector block is missing"
    return dict(line.split(None, 1) for line in block.group(1).strip().splitlines())


def _codes() -> set[str]:
    for module in pkgutil.walk_packages(app.__path__, "app."):
        importlib.import_module(module.name)
    found: set[str] = set()
    todo = [CanopyError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo.extend(cls.__subclasses__())
    return found


class TestApiReference:
    def test_every_error_code_is_documented(self) -> None:
        listed = set(re.findall(r"^\| \d{3} \| `([a-z_]+)` \|", _text(), re.M))
        missing = _codes() - listed
        assert not missing, f"error codes missing from docs/api.md: {sorted(missing)}"

    def test_the_vector_is_what_the_service_signs(self) -> None:
        v = _vector()
        at = datetime.fromtimestamp(int(v["webhook-timestamp"]), UTC)
        signed = Webhook(v["secret"]).sign(v["webhook-id"], at, v["body"])
        assert signed == v["webhook-signature"]

    @pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
    def test_the_javascript_verifier_accepts_the_vector_and_nothing_else(
        self, tmp_path: Path
    ) -> None:
        code = re.search(r"```javascript\n(.*?)```", _text(), re.S)
        assert code
        (tmp_path / "verify.js").write_text(code.group(1))
        v = _vector()
        headers = {k: v[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        harness = f"""
        const {{ verify }} = require("./verify.js");
        const v = {json.dumps({"secret": v["secret"], "headers": headers, "body": v["body"]})};
        const now = Number(v.headers["webhook-timestamp"]);
        console.log(JSON.stringify([
          verify(v.secret, v.headers, v.body, now),
          verify(v.secret, v.headers, v.body + " ", now),
          verify(v.secret, v.headers, v.body, now + 3600),
        ]));
        """
        (tmp_path / "run.js").write_text(harness)
        out = subprocess.run(
            ["node", "run.js"], cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == [True, False, False]
