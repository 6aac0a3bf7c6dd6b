"""Cold start: what a fresh worker process pays before its first answer, measured the way Azure runs it.

Azure runs the app from a read-only package, so Python never writes bytecode there. Each child runs in
a copy of the deployment package (``infra/hooks/build_package.py``, what ``azd deploy`` zips) made
read-only, with ``PYTHONDONTWRITEBYTECODE=1``; once with the package's unchecked-hash bytecode and
precompiled dataclass methods (as deployed) and once with the sources only (as deployed before: every module
and every dataclass method compiled at every start).

    python -m bench.coldstart measure [--runs 5] [--before DIR]   # build the packages, run the children, print
                                                                  # the table (DIR: another checkout, interleaved)
    python -m bench.coldstart modules   # (child) list what import function_app loads outside the project
    python -m bench.coldstart deps      # (child) import the dependencies only
    python -m bench.coldstart app       # (child) import function_app, then answer one POST message
    python -m bench.coldstart split     # (child) import the dependencies, then function_app on top

Each child prints one JSON line of timings; :func:`measure_cold_start` runs several and takes medians.
``split`` isolates the project's own import cost: the dependencies are already loaded when
``function_app`` is imported, so what remains is the project's modules.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.machinery import SourceFileLoader
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The project's own top-level modules (the package, the agent and workflow modules, the app); everything else is
#: a dependency.
OWN = ("cosmos_history", "agents", "workflows", "function_app")
#: Imported by a deployment only when a real model provider or managed identity is configured.
OPTIONAL_DEPENDENCIES = (("agent_framework_openai", ("OpenAIChatClient",)), ("azure.identity.aio", ()), ("aiohttp", ()))


def project_dependencies() -> list[tuple[str, tuple[str, ...]]]:
    """Every module outside the project that ``import function_app`` loads, in load order, as the
    ``modules`` child recorded it (``BENCH_DEPENDENCIES`` names the file).

    Recorded rather than read from the source: the framework loads much of itself lazily, also while
    the app builds its agents at start-up (``agent_framework._mcp`` from ``Agent()``), and those are
    the dependencies' cost, not the project's.
    """
    path = os.environ.get("BENCH_DEPENDENCIES")
    if not path:
        raise RuntimeError("BENCH_DEPENDENCIES is not set: run the children through measure_cold_start")
    return [(name, ()) for name in json.loads(Path(path).read_text(encoding="utf-8"))]


def _loaded_dependencies() -> list[str]:
    """(child) What ``import function_app`` loads outside the project, in load order."""
    before = set(sys.modules)
    importlib.import_module("function_app")
    return [name for name in sys.modules if name not in before and name.split(".")[0] not in OWN]


def record_dependencies(env: dict[str, str], package: Path, into: Path) -> dict[str, str]:
    """``env`` plus ``BENCH_DEPENDENCIES``: the dependency list of a fresh ``import function_app`` in ``package``."""
    result, _ = _run_child("modules", env, package)
    into.write_text(json.dumps(result["modules"]), encoding="utf-8")
    return {**env, "BENCH_DEPENDENCIES": str(into)}


def _import_all(imports: list[tuple[str, tuple[str, ...]]]) -> float:
    started = time.perf_counter()
    for module_name, names in imports:
        module = importlib.import_module(module_name)
        for name in names:
            if not hasattr(module, name):  # a submodule imported by name
                importlib.import_module(f"{module_name}.{name}")
    return time.perf_counter() - started


def _count_compiles() -> list[str]:
    """Record every module compiled from source from now on (bytecode missing, stale or unusable)."""
    compiled: list[str] = []
    original = SourceFileLoader.source_to_code

    def source_to_code(self: SourceFileLoader, data: bytes, path: str, *, _optimize: int = -1) -> Any:
        compiled.append(path)
        return original(self, data, path, _optimize=_optimize)

    SourceFileLoader.source_to_code = source_to_code  # type: ignore[method-assign]
    return compiled


def _first_request() -> tuple[float, int]:
    """Call the app's registered post-message function once, as the Functions worker would; (seconds, Cosmos requests).

    The app is ``function_app.app`` itself: its runtime is built from the environment on this first request, with
    the agents its start-up built, as in Azure. Only its Cosmos client gets a counting transport in the SDK's
    transport slot (``create_client`` as the runtime module sees it, wrapped).
    """
    import asyncio
    import uuid

    import function_app
    from cosmos_history import runtime

    from .counting import CountingTransport, RequestCounter
    from .inprocess import message_request, registered_function

    counter = RequestCounter()
    create_client = runtime.create_client

    def counted_client(settings: Any, *, transport: Any = None) -> Any:
        return create_client(settings, transport=transport or CountingTransport(counter))

    runtime.create_client = counted_client  # type: ignore[attr-defined]
    post = registered_function(function_app.app, "post_message_route")

    async def call() -> float:
        started = time.perf_counter()
        response = await post(message_request(f"cold-{uuid.uuid4().hex[:10]}", 1, "local"))
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"first request answered {response.status_code}")
        await function_app.app.runtime.close()
        return elapsed

    seconds = asyncio.run(call())
    return seconds, counter.requests


def _dataclass_methods() -> dict[str, int | None]:
    """(child) Dataclass methods served from the package's precompiled file, and compiled (``None``: no file)."""
    from cosmos_history import precompiled

    methods = precompiled.installed()
    return {
        "dataclass_served": methods.served if methods else 0,
        "dataclass_compiled": methods.compiled if methods else None,
    }


def child(kind: str) -> dict[str, Any]:
    if kind == "modules":
        return {"modules": _loaded_dependencies()}
    if kind == "deps":
        extra = list(OPTIONAL_DEPENDENCIES) if os.environ.get("BENCH_ALL_DEPS") else []
        return {"deps": _import_all(project_dependencies() + extra)}
    if kind == "split":
        deps = _import_all(project_dependencies())
        compiled = _count_compiles()
        project = _import_all([("function_app", ())])
        import function_app

        return {
            "deps": deps,
            "project": project,
            "compiled": len(compiled),
            "app_file": function_app.__file__,
            **_dataclass_methods(),
        }
    compiled = _count_compiles()
    imported = _import_all([("function_app", ())])
    dataclass_methods = _dataclass_methods()  # those of the import, not of the first request's lazy imports
    own_modules = sum(1 for name in sys.modules if name.split(".")[0] in OWN)
    all_modules = len(sys.modules)
    first, requests = _first_request()
    # The benchmark's own modules (imported to count the first request's Cosmos DB requests) do not count.
    harness = tuple(f"{ROOT / folder}{os.sep}" for folder in ("bench", "devtools"))
    app_compiled = [path for path in compiled if not path.startswith(harness)]
    return {
        "import": imported,
        "compiled": len(app_compiled),
        "first_request": first,
        "cosmos_requests": requests,
        "own_modules": own_modules,
        "modules": all_modules,
        **dataclass_methods,
    }


@dataclass(frozen=True)
class Before:
    """Another checkout's package (say, the merged code) measured beside this one: the before of a before/after."""

    checkout: str
    project_import: float
    project_share: float
    app_import: float
    first_request: float
    first_request_cosmos_requests: int
    project_modules: int
    modules_loaded: int


@dataclass(frozen=True)
class ColdStart:
    runs: int
    deps_import: float
    all_deps_import: float
    project_import: float
    """The project's own import from the package with its bytecode (as deployed)."""
    project_import_sources_only: float
    """The same from the package without bytecode: every module compiled, as at every cold start before."""
    project_share: float
    """Median over processes of the project's own import over the dependencies' import in the same process."""
    project_share_sources_only: float
    modules_compiled: int
    """Modules compiled from source while a fresh process imports ``function_app`` from the package."""
    modules_compiled_sources_only: int
    app_import: float
    first_request: float
    first_request_cosmos_requests: int
    process_wall: float
    dataclass_methods_compiled: int | None = None
    """Dataclass methods compiled while a fresh process imports ``function_app`` from the package (``None``:
    the package has no precompiled file, as when its hook could not import the app)."""
    dataclass_methods_precompiled: int = 0
    """Dataclass methods the same import ran from the package's precompiled file (``cosmos_history/precompiled.py``);
    without it, each would be compiled."""
    project_modules: int = 0
    """The project's own modules a fresh ``import function_app`` loads."""
    modules_loaded: int = 0
    """Every module loaded after a fresh ``import function_app`` (the interpreter's own included)."""
    before: Before | None = None
    """The same figures for another checkout (``--before``), measured in the same run, interleaved."""

    @property
    def project_overhead_pct(self) -> float:
        return 100 * self.project_share

    @property
    def project_overhead_pct_sources_only(self) -> float:
        return 100 * self.project_share_sources_only


def _run_child(
    kind: str, env: dict[str, str], package: Path, extra: dict[str, str] | None = None
) -> tuple[dict[str, Any], float]:
    """One fresh process in ``package`` (first on ``sys.path``; ``bench`` comes from the repository)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.coldstart", kind],
        cwd=package,
        env={**os.environ, **env, **(extra or {}), "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if "app_file" in result and Path(result["app_file"]).parent != package:
        raise RuntimeError(f"function_app came from {result['app_file']}, not from the package {package}")
    return result, time.perf_counter() - started


def _load_builder(root: Path = ROOT) -> Any:
    spec = importlib.util.spec_from_file_location("build_package", root / "infra" / "hooks" / "build_package.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def _set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | 0o200 if writable else mode & ~0o222)


@contextmanager
def read_only_packages(other: Path | None = None) -> Iterator[tuple[Path, ...]]:
    """(package with its bytecode, the same without[, ``other`` checkout's package built by its own hook]), built
    by the deploy hook and made read-only.

    Raises if a child wrote anything there (root may write to a read-only folder; nothing else stops it).
    """
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        compiled = _load_builder().build_package(ROOT, Path(tmp) / "package", python=sys.executable)
        sources_only = Path(tmp) / "sources-only"
        # As deployed before: no bytecode (no .pyc, no bytecode file), no precompiled dataclass methods.
        unbuilt = shutil.ignore_patterns("__pycache__", "dataclass_methods.*", "bytecode.*")
        shutil.copytree(compiled, sources_only, ignore=unbuilt)
        packages = [compiled, sources_only]
        if other is not None:
            packages.append(_load_builder(other).build_package(other, Path(tmp) / "before", python=sys.executable))
        before = {p: _snapshot(p) for p in packages}
        for package in before:
            _set_writable(package, False)
        try:
            yield tuple(packages)
        finally:
            for package in before:
                _set_writable(package, True)
        for package, files in before.items():
            if _snapshot(package) != files:
                raise RuntimeError(f"a cold start wrote to the read-only package {package}")


def measure_cold_start(env: dict[str, str], runs: int, before: Path | None = None) -> ColdStart:
    """Medians over ``runs`` fresh processes of each kind (after one discarded run that warms the file cache);
    with ``before`` (another checkout) its package's children run too, interleaved with these."""
    deps: list[float] = []
    all_deps: list[float] = []
    split: list[dict[str, Any]] = []
    uncompiled: list[dict[str, Any]] = []
    app: list[tuple[dict[str, Any], float]] = []
    old: dict[str, list[Any]] = {"split": [], "app": []}
    with read_only_packages(before) as (package, sources_only, *other), tempfile.TemporaryDirectory() as tmp:
        env_before = record_dependencies(env, other[0], Path(tmp) / "before.json") if other else env
        env = record_dependencies(env, package, Path(tmp) / "dependencies.json")
        for kind in ("deps", "split", "app"):
            _run_child(kind, env, package)
            if other:
                _run_child(kind, env_before, other[0])
        for _ in range(runs):  # interleaved, so that a change of load on the machine hits every kind alike
            deps.append(_run_child("deps", env, package)[0]["deps"])
            all_deps.append(_run_child("deps", env, package, {"BENCH_ALL_DEPS": "1"})[0]["deps"])
            split.append(_run_child("split", env, package)[0])
            uncompiled.append(_run_child("split", env, sources_only)[0])
            app.append(_run_child("app", env, package))
            if other:
                for kind in old:
                    old[kind].append(_run_child(kind, env_before, other[0])[0])
    return ColdStart(
        runs=runs,
        deps_import=statistics.median(deps),
        all_deps_import=statistics.median(all_deps),
        project_import=statistics.median(s["project"] for s in split),
        project_import_sources_only=statistics.median(s["project"] for s in uncompiled),
        project_share=statistics.median(s["project"] / s["deps"] for s in split),
        project_share_sources_only=statistics.median(s["project"] / s["deps"] for s in uncompiled),
        modules_compiled=max(a[0]["compiled"] for a in app),
        modules_compiled_sources_only=max(s["compiled"] for s in uncompiled),
        app_import=statistics.median(a[0]["import"] for a in app),
        first_request=statistics.median(a[0]["first_request"] for a in app),
        first_request_cosmos_requests=int(statistics.median(a[0]["cosmos_requests"] for a in app)),
        process_wall=statistics.median(a[1] for a in app),
        dataclass_methods_compiled=_most(a[0]["dataclass_compiled"] for a in app),
        dataclass_methods_precompiled=min(a[0]["dataclass_served"] for a in app),
        project_modules=max(a[0]["own_modules"] for a in app),
        modules_loaded=max(a[0]["modules"] for a in app),
        before=_before(before, old) if before is not None else None,
    )


def _before(checkout: Path, runs: dict[str, list[Any]]) -> Before:
    app = runs["app"]
    return Before(
        checkout=str(checkout),
        project_import=statistics.median(s["project"] for s in runs["split"]),
        project_share=statistics.median(s["project"] / s["deps"] for s in runs["split"]),
        app_import=statistics.median(a["import"] for a in app),
        first_request=statistics.median(a["first_request"] for a in app),
        first_request_cosmos_requests=int(statistics.median(a["cosmos_requests"] for a in app)),
        project_modules=max(a.get("own_modules", 0) for a in app),
        modules_loaded=max(a.get("modules", 0) for a in app),
    )


def _most(counts: Any) -> int | None:
    """The largest count, or ``None`` when any process had no precompiled file."""
    values = list(counts)
    return None if any(v is None for v in values) else max(values)


def main(argv: list[str] | None = None) -> None:
    """``measure``: only the cold start, against a Cosmos DB of its own; prints the table and the targets."""
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart", description=__doc__)
    parser.add_argument("kind", choices=["measure", "modules", "deps", "split", "app"])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes of each kind (measure)")
    parser.add_argument("--before", type=Path, help="another checkout (say, the merged code) measured in the same run")
    args = parser.parse_args(argv)
    if args.kind != "measure":
        print(json.dumps(child(args.kind)))
        return
    from .coldreport import cold_start_lines
    from .hosts import bench_cosmos
    from .targets import cold_start_targets

    with bench_cosmos() as bench:
        cold = measure_cold_start(bench.env, args.runs, args.before)
    print("\n".join([*cold_start_targets(cold), "", *cold_start_lines(cold)]))


if __name__ == "__main__":
    main()
