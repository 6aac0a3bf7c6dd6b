"""The deployment package (infra/hooks/build_package.py, azd's prepackage hook): what ships, and that
Python runs its bytecode from a read-only folder without compiling anything."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from cosmos_history import precompiled

REPO = Path(__file__).resolve().parents[1]


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_package", REPO / "infra" / "hooks" / "build_package.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


builder = load_builder()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return builder.build_package(REPO, tmp_path_factory.mktemp("deploy") / "package", python=sys.executable)


def files_of(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_every_module_of_the_package_has_unchecked_hash_bytecode(package: Path) -> None:
    sources = sorted(package.rglob("*.py"))
    assert package / "function_app.py" in sources and len(sources) > 40
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        header = cached.read_bytes()[:8]
        assert header[:4] == importlib.util.MAGIC_NUMBER, cached
        # PEP 552 flags: bit 0 hash-based, bit 1 check_source; unchecked is 0b01.
        assert int.from_bytes(header[4:8], "little") == 0b01, cached


def test_the_package_is_the_project_without_what_funcignore_lists(package: Path) -> None:
    top = {p.name for p in package.iterdir()}
    assert {"function_app.py", "host.json", "requirements.txt", "cosmos_history", "agents", "workflows"} <= top
    assert not top & {"tests", "bench", "devtools", "infra", ".venv", "local.settings.json", ".build"}


def test_the_package_keeps_funcignore_so_azd_does_not_drop_the_bytecode(package: Path) -> None:
    # azd zips the dist folder with its .funcignore; without one it applies its Python defaults,
    # which leave out every __pycache__.
    assert (package / ".funcignore").read_bytes() == (REPO / ".funcignore").read_bytes()
    assert "__pycache__" not in (package / ".funcignore").read_text(encoding="utf-8")


def test_python_runs_the_shipped_bytecode_and_writes_nothing(package: Path) -> None:
    # As after Oryx's copy or a zip round trip: the source's mtime and size no longer match. Timestamp
    # bytecode would be recompiled; unchecked-hash bytecode is used as it is, so this line never runs.
    source = package / "function_app.py"
    source.write_text(source.read_text(encoding="utf-8") + "\nraise SystemExit('compiled from source')\n")
    before = files_of(package)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", "import function_app; print(function_app.__file__, len(function_app.ROUTES))"],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    path, routes = done.stdout.split()
    assert Path(path) == source and int(routes) > 10
    assert files_of(package) == before


def test_an_ignore_pattern_the_hook_cannot_read_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported pattern"):
        builder.IgnoreRules("tests/\n!tests/keep.py\n")


def test_ignore_rules_match_names_at_any_depth_and_folders_only_with_a_slash() -> None:
    rules = builder.IgnoreRules("tests/\n*.log\n/Makefile\n")
    assert rules.ignores(Path("tests"), is_dir=True) and rules.ignores(Path("a/tests"), is_dir=True)
    assert not rules.ignores(Path("tests"), is_dir=False)
    assert rules.ignores(Path("a/b/run.log"), is_dir=False)
    assert rules.ignores(Path("Makefile"), is_dir=False) and not rules.ignores(Path("a/Makefile"), is_dir=False)


def test_azd_packages_what_the_hook_builds_before_packaging() -> None:
    service = yaml.safe_load((REPO / "azure.yaml").read_text(encoding="utf-8"))["services"]["api"]
    assert Path(service["dist"]) == builder.DEFAULT_OUTPUT
    for platform in ("posix", "windows"):
        hook = service["hooks"]["prepackage"][platform]
        assert hook["run"].endswith("infra/hooks/build_package.py") and hook["continueOnError"] is False


def test_the_hook_compiles_with_the_python_version_azure_runs_or_refuses() -> None:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert builder.deployed_python_version(REPO) == "3.11"  # infra/app/function-app.bicep
    assert builder.python_for(running) == sys.executable
    with pytest.raises(SystemExit, match=r"install python2\.9"):
        builder.python_for("2.9")


def test_a_cold_import_loads_nothing_the_first_native_request_does_not_need() -> None:
    # Offline model, no telemetry, no MCP server to call: no model SDK, no credential, no exporter, no MCP
    # SDK, and neither the OpenAI-compatible endpoint, the MCP server, AG-UI nor A2A (they load on their first
    # call).
    unused = (
        "openai",
        "agent_framework_openai",
        "mcp",
        "mcp_types",
        "azure.identity",
        "azure.monitor",
        "opentelemetry.sdk",
        "cosmos_history.http.openai",
        "cosmos_history.http.mcp",
        "ag_ui",
        "cosmos_history.http.agui",
        "a2a",
        "agent_framework_a2a",
        "cosmos_history.http.a2a",
    )
    unset = ("PYTHONPATH", "MODEL_", "MCP_", "APPLICATIONINSIGHTS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(unset)} | {"MODEL_PROVIDER": "offline"}
    done = subprocess.run(
        [sys.executable, "-c", "import sys, function_app; print(' '.join(sys.modules))"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert "function_app" in loaded and "cosmos_history.http.handlers" in loaded
    assert [m for m in loaded if any(m == u or m.startswith(u + ".") for u in unused)] == []


def test_a_cold_import_from_the_package_runs_every_dataclass_method_precompiled(package: Path) -> None:
    # @dataclass compiles each class's methods as it is created, which no .pyc holds: the hook recorded them.
    assert (package / "cosmos_history" / f"dataclass_methods.{precompiled.TAG}.bin").is_file()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import function_app, cosmos_history.precompiled as p; m = p.installed(); print(m.served, m.compiled)",
        ],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    served, compiled = map(int, done.stdout.split())
    assert compiled == 0 and served > 200


def test_modules_imported_on_first_use_run_their_dataclass_methods_precompiled_too(package: Path) -> None:
    # The workflow subsystem and the other APIs load at their first request: the hook recorded their classes too.
    lazy = ("cosmos_history.http.workflows", "cosmos_history.workflows.service", "cosmos_history.http.openai.handlers")
    script = (
        "import importlib, function_app, cosmos_history.precompiled as p; m = p.installed(); start = m.served\n"
        f"for name in {lazy!r}: importlib.import_module(name)\n"
        "print(start, m.served, m.compiled)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=package, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    at_start, served, compiled = map(int, done.stdout.split())
    assert compiled == 0 and served > at_start


def test_a_cold_import_from_the_package_reads_its_modules_from_the_bytecode_file(package: Path) -> None:
    # One file instead of a .pyc per module: every module of the package that the start-up imports comes from it,
    # with the same file names (tracebacks, inspect) as from its own .pyc.
    assert (package / "cosmos_history" / f"bytecode.{precompiled.TAG}.bin").is_file()
    script = (
        "import sys, inspect, function_app, cosmos_history.precompiled as p\n"
        "own = [m for n, m in sys.modules.items() if n.startswith('cosmos_history.')]\n"
        "other = [m.__name__ for m in own if type(m.__loader__).__name__ != '_BundledLoader']\n"
        "errors = sys.modules['cosmos_history.domain.errors']\n"
        "code = errors.ProblemError.__init__.__code__.co_filename\n"
        "print(len(own), ' '.join(other), code == errors.__file__, inspect.getsource(errors).startswith('\"\"\"'),\n"
        "      any(isinstance(finder, p.Bytecode) for finder in sys.meta_path))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=package, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded, *rest = done.stdout.split()
    # Once every module it holds is loaded, the file's finder leaves the import system: later imports never ask it.
    assert int(loaded) > 50 and rest == ["cosmos_history.precompiled", "True", "True", "False"]


def test_a_package_whose_app_cannot_be_imported_is_built_without_precompiled_methods(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text("raise ImportError('a requirement is missing here')\n")

    assert builder.record_dataclass_methods(tmp_path, sys.executable) is None
    assert not list(tmp_path.rglob("dataclass_methods.*"))


def test_what_a_cold_start_builds_is_left_out_of_the_garbage_collectors_full_collections() -> None:
    # A full collection over the start-up's objects (imports, agents) stopped whichever request it fell on.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"MODEL_PROVIDER": "offline"}
    done = subprocess.run(
        [sys.executable, "-c", "import gc, function_app; print(gc.get_freeze_count())"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 10_000
