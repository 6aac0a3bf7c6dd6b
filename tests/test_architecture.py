"""The layering the README promises, checked: the domain runs without any Azure SDK."""

from __future__ import annotations

import ast
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


HIGHER_LAYERS = ("http", "runtime", "agents", "adapters", "models", "settings", "app")
"""What the domain may never import: every layer above it (``telemetry`` is cross-cutting and allowed)."""


def higher_layer_imports(source: str) -> list[str]:
    """The ``cosmos_history`` modules above the domain that ``source`` imports (also under TYPE_CHECKING)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            if parts[0] == "cosmos_history" and len(parts) > 1 and parts[1] in HIGHER_LAYERS:
                found.append(name)
    return found


def test_no_domain_module_imports_a_layer_above_the_domain():
    domain = Path(__file__).resolve().parents[1] / "cosmos_history" / "domain"

    violations = {
        path.name: imported
        for path in sorted(domain.rglob("*.py"))
        if (imported := higher_layer_imports(path.read_text(encoding="utf-8")))
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
    ],
)
def test_the_layer_check_catches_an_import_of_a_higher_layer(line):
    assert higher_layer_imports(f"from __future__ import annotations\n{line}\n") != []


def test_the_layer_check_lets_the_domain_import_itself_and_telemetry():
    source = "from cosmos_history.domain.records import SessionRecord\nfrom cosmos_history import telemetry\n"

    assert higher_layer_imports(source) == []


def _subclasses(cls: type) -> list[type]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _subclasses(direct))]


def test_domain_errors_name_a_kind_and_no_http_status():
    errors = _subclasses(ProblemError)

    assert [error.__name__ for error in errors if hasattr(error, "status")] == []
    assert all(isinstance(error.kind, ErrorKind) for error in errors)


def test_every_kind_of_error_has_one_http_status():
    assert set(HTTP_STATUS) == set(ErrorKind)
