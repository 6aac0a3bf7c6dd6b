"""The modules an app adds to itself, found the one way for agents and workflows alike.

An app extends itself with a top-level package (``agents``, ``workflows``) whose every public module defines one
factory (``create_agent(client)``, ``create_workflow(agents)``); the module's name is the thing's name, so adding
a file adds it and there is no registry to edit. Anything wrong with a module (a name that is not a name, it does
not import, it has no factory, or the factory fails or returns the wrong kind of object) is a start-up error naming
the file: a typo must never leave the app silently serving something else.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from cosmos_history.domain.errors import SettingsError

T = TypeVar("T")

NAME = re.compile(r"[a-z0-9_-]{1,64}")
"""What an agent's or a workflow's name (its module's or file's name) may be."""


@dataclass(frozen=True)
class Extension:
    """One module of the package: its name, file, the module and its factory (checked to be callable)."""

    name: str
    path: Path
    module: ModuleType
    factory: Callable[..., Any]

    @property
    def description(self) -> str:
        """The first line of the module's docstring."""
        doc = (self.module.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""


@dataclass(frozen=True)
class Package:
    """An app package and its modules, sorted by name."""

    folder: Path
    modules: list[Extension]


def installed(package: str) -> bool:
    """Whether the top-level ``package`` exists (an app without a ``workflows`` package has no workflows)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def find_package(package: str, *, kind: str, factory: str, error: type[SettingsError]) -> Package:
    """The modules of ``package`` that define ``factory`` (e.g. ``"create_agent(client)"``), each imported;
    ``kind`` names what a module is in the messages (``"agent"``).

    Raises:
        SettingsError: ``error``, whose message names the broken file and the cause.
    """
    try:
        root = importlib.import_module(package)
    except Exception as cause:
        raise error(f"The {kind}s package {package!r} cannot be imported: {cause!r}") from cause
    folder = Path(root.__path__[0])
    function = factory.partition("(")[0]
    found: list[Extension] = []
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        path = folder / f"{info.name}.py"
        if not NAME.fullmatch(info.name):
            raise error(f"{path}: {_a(kind)}'s module name must be lower-case letters, digits, '-' or '_'.")
        try:
            module = importlib.import_module(f"{package}.{info.name}")
        except Exception as cause:
            raise error(f"{path}: cannot be imported: {cause!r}") from cause
        create = getattr(module, function, None)
        if not callable(create):
            raise error(f"{path}: defines no {factory} function.")
        found.append(Extension(info.name, path, module, create))
    return Package(folder, found)


def made(
    create: Callable[[Any], Any], given: Any, *, path: Path, call: str, made_type: type[T], error: type[SettingsError]
) -> T:
    """``create(given)``, checked: its failure, or an object that is not a ``made_type``, is ``error`` naming the
    file (``call`` says what was called, e.g. ``"create_agent(client)"``)."""
    try:
        thing = create(given)
    except Exception as cause:
        raise error(f"{path}: {call} failed: {cause!r}") from cause
    if not isinstance(thing, made_type):
        raise error(f"{path}: {call} returned {type(thing).__name__}, not an agent_framework.{made_type.__name__}.")
    return thing


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
