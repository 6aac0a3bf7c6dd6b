"""Bad input found by a machine: schemathesis fuzzes the local host from the published OpenAPI document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .apphost import ROOT, app_host
from .conftest import ARTIFACTS

pytestmark = pytest.mark.integration

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_fuzzed_requests_get_no_5xx_and_every_response_matches_the_document(cosmos_env, storage_env):
    schemathesis = Path(sys.executable).with_name("st")
    # With the local queues: background turns (202) are fuzzed too.
    env = {**cosmos_env, **storage_env, "MODEL_PROVIDER": "offline", "BACKGROUND_QUEUE": "fuzzed-turns"}
    with app_host(env, log_path=ARTIFACTS / "apphost.log") as base:
        run = subprocess.run(
            [
                str(schemathesis),
                "run",
                str(ROOT / "cosmos_history" / "http" / "openapi.json"),
                "--url",
                base,
                "--checks",
                CHECKS,
                "--max-examples",
                "25",
                "--generation-deterministic",
                "--request-timeout",
                "20",
                "--no-color",
                "--warnings",
                "off",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=ARTIFACTS,  # schemathesis keeps a cache folder in its working directory
        )
    (ARTIFACTS / "schemathesis.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-4000:]
    assert "No issues found" in run.stdout and " passed" in run.stdout
