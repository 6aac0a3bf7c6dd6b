"""The layering the README promises, checked: the domain runs without any Azure SDK."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cosmos_history.domain.errors import ErrorKind, ProblemError
from cosmos_history.http.responses import HTTP_STATUS


def test_the_domain_and_the_memory_adapter_import_nothing_from_azure():
    probe = (
        "import sys, pkgutil, importlib, cosmos_history.domain as d\n"
        "for m in pkgutil.iter_modules(d.__path__): importlib.import_module(f'cosmos_history.domain.{m.name}')\n"
        "import cosmos_history.adapters.memory\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'azure'))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout

    assert loaded.strip() == "[]"


DOMAIN_MAY_IMPORT = ("domain", "telemetry")
"""The only ``cosmos_history`` modules the domain may import: itself and cross-cutting telemetry. Every other
one is a layer above it (http, runtime, agents, adapters, models, settings, app, workflows, triggers, ...)."""
PACKAGE_ROOT_LOADS = ("precompiled",)
"""What ``cosmos_history/__init__.py`` loads itself, before any other module (the precompiled dataclass methods,
which must be in place before any class is defined): loaded with any module, the domain's included; not a layer."""


def higher_layer_imports(source: str, *, package: str = "cosmos_history.domain") -> list[str]:
    """The ``cosmos_history`` modules above the domain that ``source`` (a module of ``package``) imports, also
    under TYPE_CHECKING and through relative imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            if parts[0] == "cosmos_history" and len(parts) > 1 and parts[1] not in DOMAIN_MAY_IMPORT:
                found.append(name)
    return found


def _package(domain: Path, path: Path) -> str:
    """The dotted package a file of the domain belongs to (relative imports resolve against it)."""
    return ".".join(("cosmos_history", "domain", *path.relative_to(domain).parent.parts))


def test_no_domain_module_imports_a_layer_above_the_domain():
    domain = Path(__file__).resolve().parents[1] / "cosmos_history" / "domain"

    violations = {
        path.name: imported
        for path in sorted(domain.rglob("*.py"))
        if (imported := higher_layer_imports(path.read_text(encoding="utf-8"), package=_package(domain, path)))
    }

    assert violations == {}


@pytest.mark.parametrize(
    "line",
    [
        "from cosmos_history.http.calls import Call",
        "from cosmos_history import runtime",
        "import cosmos_history.agents.catalog",
        "from cosmos_history.adapters.memory import MemorySessions",
        "from cosmos_history.models.errors import model_call_error",
        "if TYPE_CHECKING:\n    from cosmos_history.settings import Settings",
        "from cosmos_history.http import responses",
        "import cosmos_history.runtime as runtime",
        "from cosmos_history.agents import catalog",
        "from cosmos_history.adapters.cosmos.sessions import CosmosSessions",
        "from cosmos_history import settings",
        "from cosmos_history.workflows.service import discover",
        "from cosmos_history import triggers",
        "from ..http.calls import Call",
        "from .. import runtime",
        "from ..settings import Settings",
    ],
)
def test_the_layer_check_catches_an_import_of_a_higher_layer(line):
    assert higher_layer_imports(f"from __future__ import annotations\n{line}\n") != []


def test_the_layer_check_lets_the_domain_import_itself_and_telemetry():
    source = (
        "from cosmos_history.domain.records import SessionRecord\nfrom cosmos_history import telemetry\n"
        "from .records import SessionRecord\nfrom . import budget\nfrom ..domain import modes\n"
    )

    assert higher_layer_imports(source) == []


def test_importing_the_whole_domain_loads_nothing_above_it():
    """Not even through a module it may import (telemetry reads its settings type only when type checking)."""
    probe = (
        "import sys, pkgutil, importlib, cosmos_history.domain as d\n"
        "for m in pkgutil.iter_modules(d.__path__): importlib.import_module(f'cosmos_history.domain.{m.name}')\n"
        "print(json.dumps(sorted(n for n in sys.modules if n.startswith('cosmos_history.'))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", "import json\n" + probe], capture_output=True, text=True, check=True)

    allowed = DOMAIN_MAY_IMPORT + PACKAGE_ROOT_LOADS
    assert [name for name in json.loads(loaded.stdout) if name.split(".")[1] not in allowed] == []


def _subclasses(cls: type) -> list[type]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _subclasses(direct))]


def test_domain_errors_name_a_kind_and_no_http_status():
    errors = _subclasses(ProblemError)

    assert [error.__name__ for error in errors if hasattr(error, "status")] == []
    assert all(isinstance(error.kind, ErrorKind) for error in errors)


def test_every_kind_of_error_has_one_http_status():
    assert set(HTTP_STATUS) == set(ErrorKind)
