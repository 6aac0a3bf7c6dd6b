"""Cold start: what a fresh worker process pays before its first answer, in fresh subprocesses.

    python -m bench.coldstart deps      # import the dependencies only
    python -m bench.coldstart app       # import function_app, then answer one POST message
    python -m bench.coldstart split     # import the dependencies, then function_app on top

Each child prints one JSON line of timings; :func:`measure_cold_start` runs several and takes medians.
``split`` isolates the project's own import cost: the dependencies are already loaded when
``function_app`` is imported, so what remains is the project's modules.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Modules of the package that the function app never imports (local host, local Cosmos DB).
#: Imported by a deployment only when a real model provider or managed identity is configured.
OPTIONAL_DEPENDENCIES = (("agent_framework_openai", ("OpenAIChatClient",)), ("azure.identity.aio", ()), ("aiohttp", ()))


def project_dependencies() -> list[tuple[str, tuple[str, ...]]]:
    """The ``import``/``from ... import`` statements (third-party and standard library) at module
    level of the code ``function_app`` loads: everything it imports that is not the project's own.

    Read from the source, so the baseline follows the code as it changes. Names matter:
    ``agent_framework`` loads most of itself lazily, on first access to a name.
    """
    found: list[tuple[str, tuple[str, ...]]] = []
    modules = sorted((ROOT / "cosmos_history").rglob("*.py"))
    for path in [ROOT / "function_app.py", *modules]:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                found += [(alias.name, ()) for alias in node.names if not alias.name.startswith("cosmos_history")]
            elif (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and node.module
                and node.module.split(".")[0] not in ("cosmos_history", "__future__")
            ):
                found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


def _import_all(imports: list[tuple[str, tuple[str, ...]]]) -> float:
    started = time.perf_counter()
    for module_name, names in imports:
        module = importlib.import_module(module_name)
        for name in names:
            if not hasattr(module, name):  # a submodule imported by name
                importlib.import_module(f"{module_name}.{name}")
    return time.perf_counter() - started


def _first_request() -> tuple[float, int]:
    """Call the registered post-message function once, as the Functions worker would; (seconds, Cosmos requests).

    The app is the project's route table on a runtime built from the environment on the first request,
    as in Azure, with a counting transport in the SDK's transport slot.
    """
    import asyncio
    import uuid

    import function_app
    from cosmos_history import Runtime, Settings, build_runtime, create_app, load_settings
    from cosmos_history.runtime import LazyRuntime

    from .counting import CountingTransport, RequestCounter
    from .inprocess import message_request, registered_function

    counter = RequestCounter()

    async def build(settings: Settings) -> Runtime:
        return await build_runtime(settings, transport=CountingTransport(counter))

    source = LazyRuntime(load_settings(), build=build)
    post = registered_function(create_app(function_app.ROUTES, runtime=source), "post_message_route")

    async def call() -> float:
        started = time.perf_counter()
        response = await post(message_request(f"cold-{uuid.uuid4().hex[:10]}", 1, "local"))
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"first request answered {response.status_code}")
        await source.close()
        return elapsed

    seconds = asyncio.run(call())
    return seconds, counter.requests


def child(kind: str) -> dict[str, float]:
    if kind == "deps":
        extra = list(OPTIONAL_DEPENDENCIES) if os.environ.get("BENCH_ALL_DEPS") else []
        return {"deps": _import_all(project_dependencies() + extra)}
    if kind == "split":
        deps = _import_all(project_dependencies())
        return {"deps": deps, "project": _import_all([("function_app", ())])}
    imported = _import_all([("function_app", ())])
    first, requests = _first_request()
    return {"import": imported, "first_request": first, "cosmos_requests": requests}


@dataclass(frozen=True)
class ColdStart:
    runs: int
    deps_import: float
    all_deps_import: float
    project_import: float
    app_import: float
    first_request: float
    first_request_cosmos_requests: int
    process_wall: float

    @property
    def project_overhead_pct(self) -> float:
        return 100 * self.project_import / self.deps_import


def _run_child(kind: str, env: dict[str, str], extra: dict[str, str] | None = None) -> tuple[dict[str, float], float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.coldstart", kind],
        env={**os.environ, **env, **(extra or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), time.perf_counter() - started


def measure_cold_start(env: dict[str, str], runs: int) -> ColdStart:
    """Medians over ``runs`` fresh processes of each kind (after one discarded run that warms .pyc files)."""
    for kind in ("deps", "split", "app"):
        _run_child(kind, env)
    deps = [_run_child("deps", env)[0]["deps"] for _ in range(runs)]
    all_deps = [_run_child("deps", env, {"BENCH_ALL_DEPS": "1"})[0]["deps"] for _ in range(runs)]
    split = [_run_child("split", env)[0] for _ in range(runs)]
    app = [_run_child("app", env) for _ in range(runs)]
    return ColdStart(
        runs=runs,
        deps_import=statistics.median(deps),
        all_deps_import=statistics.median(all_deps),
        project_import=statistics.median(s["project"] for s in split),
        app_import=statistics.median(a[0]["import"] for a in app),
        first_request=statistics.median(a[0]["first_request"] for a in app),
        first_request_cosmos_requests=int(statistics.median(a[0]["cosmos_requests"] for a in app)),
        process_wall=statistics.median(a[1] for a in app),
    )


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1])))
