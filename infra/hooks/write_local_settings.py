"""azd post-provision hook: write local.settings.json for running the app against the deployed resources.

The values come from the azd environment (`azd env get-values`), which holds the outputs of
infra/main.bicep. No secret is written: the app reaches Cosmos DB and Azure OpenAI with the
developer's own Entra ID sign-in (`az login` / `azd auth login`), which the deployment granted the
data roles. Values already in local.settings.json that this script does not manage are kept.

Usage: python infra/hooks/write_local_settings.py [--output PATH] [--values-json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

#: azd environment values copied into local.settings.json under the same name.
COPIED = (
    "COSMOS_ENDPOINT",
    "COSMOS_DATABASE",
    "COSMOS_CONTAINER",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
)

#: App settings that are azd variables of the same name (infra/main.parameters.json), copied when set, so
#: the app runs locally as it is configured in Azure. MCP_SERVER_HEADERS is not among them: in Azure it is a
#: Key Vault reference, which only the platform resolves.
COPIED_WHEN_SET = (
    "MODEL_API",
    "DEFAULT_AGENT",
    "AGENTS_PACKAGE",
    "WORKFLOWS_PACKAGE",
    "MAX_TOOL_ROUNDS",
    "MAX_REQUEST_BYTES",
    "MAX_MESSAGE_CHARS",
    "MAX_SESSION_BYTES",
    "MAX_HISTORY_MESSAGES",
    "HISTORY_COMPACTION",
    "MAX_INPUT_TOKENS",
    "TURN_TIMEOUT_SECONDS",
    "TURN_LEASE_SECONDS",
    "SESSION_CACHE_KB",
    "IDEMPOTENCY_TTL_SECONDS",
    "EVENTS_FLUSH_MS",
    "EVENTS_POLL_MS",
    "EVENTS_TTL_SECONDS",
    "BACKGROUND_QUEUE",
    "MULTITASK",
    "ENABLE_SENSITIVE_DATA",
    "LOG_LEVEL",
    "MCP_SERVER_URL",
    "MCP_TOOLS_REQUIRING_APPROVAL",
)

#: Values that must not survive from an earlier local setup: keys would bypass Entra ID (and are
#: rejected by the deployed accounts), and AZURE_CLIENT_ID would make DefaultAzureCredential look
#: for the app's managed identity, which does not exist on a developer machine.
REMOVED = ("COSMOS_KEY", "AZURE_OPENAI_API_KEY", "AZURE_CLIENT_ID", "SESSION_TTL_SECONDS")


class HookError(Exception):
    """The azd environment lacks what local.settings.json needs."""


def build_local_settings(env: Mapping[str, str], existing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the content of local.settings.json for the azd environment values ``env``.

    ``existing`` is the current file content, whose other values and top-level keys are kept.
    """
    missing = [name for name in COPIED if not env.get(name)]
    if missing:
        raise HookError(f"the azd environment lacks {', '.join(missing)}: run `azd provision` first")

    settings: dict[str, Any] = dict(existing or {})
    values = {name: value for name, value in dict(settings.get("Values") or {}).items() if name not in REMOVED}
    values.update(
        {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "MODEL_PROVIDER": "azure_openai",
            "MODEL_API": "responses",
            "HTTP_AUTH_LEVEL": "function",
        }
    )
    values.update({name: env[name] for name in COPIED})
    values.update({name: env[name] for name in COPIED_WHEN_SET if env.get(name, "").strip()})
    if env.get("HISTORY_MODE"):
        values["HISTORY_MODE"] = env["HISTORY_MODE"]
    ttl = env.get("SESSION_TTL_SECONDS", "").strip()
    if ttl.isdigit() and int(ttl) > 0:
        values["SESSION_TTL_SECONDS"] = ttl

    settings["IsEncrypted"] = False
    settings["Values"] = values
    return settings


def azd_env_values() -> dict[str, str]:
    """The current azd environment's values, read with `azd env get-values --output json`."""
    azd = shutil.which("azd")
    if azd is None:
        raise HookError("azd is not on PATH")
    result = subprocess.run(
        [azd, "env", "get-values", "--output", "json"], capture_output=True, text=True, check=False, cwd=REPO_ROOT
    )
    if result.returncode != 0:
        raise HookError(f"`azd env get-values` failed: {result.stderr.strip()}")
    return {str(name): str(value) for name, value in json.loads(result.stdout).items()}


def write_json(path: Path, content: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically, so an interrupted run never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        json.dump(content, tmp, indent=2)
        tmp.write("\n")
    os.replace(tmp.name, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "local.settings.json")
    parser.add_argument(
        "--values-json", type=Path, help="read the environment values from this JSON file instead of azd"
    )
    args = parser.parse_args(argv)
    try:
        if args.values_json:
            env = {str(k): str(v) for k, v in json.loads(args.values_json.read_text(encoding="utf-8")).items()}
        else:
            env = azd_env_values()
        existing = json.loads(args.output.read_text(encoding="utf-8")) if args.output.is_file() else None
        write_json(args.output, build_local_settings(env, existing))
    except (HookError, OSError, ValueError) as error:
        print(f"write_local_settings: {error}", file=sys.stderr)
        return 1
    print(f"write_local_settings: wrote {args.output} (Cosmos DB and Azure OpenAI of the azd environment)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
