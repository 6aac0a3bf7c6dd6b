"""Dataclass methods precompiled into the deployment package, so that a cold start compiles none of them.

On Python 3.11 ``@dataclass`` writes the source of each class's ``__init__``, ``__repr__`` and ``__eq__``
(and ``__setattr__``, ``__delattr__`` and ``__hash__`` for a frozen class) and compiles it with ``exec`` as
the class is created. Bytecode files cannot hold these functions: every cold start compiled some 330 of
them for the project's own classes, about half of the project's own import (bench/optimisations.md).

The deploy hook (``infra/hooks/build_package.py``) imports the app once in the built package with
:data:`RECORD_ENV` set, then every other module of this package (:func:`import_all`: what a request imports on
first use, such as the workflow subsystem, the OpenAI-compatible endpoint or A2A): :func:`install` then records each
source ``dataclasses`` executes with its code object, and :func:`save` writes them to :data:`CACHE` beside this
module. In the deployed package
:func:`install` (run by ``cosmos_history/__init__.py``, before any other module of the app) serves those
sources from the file. The file can only save work, never change what a class does: its code objects are
compiled from the same text with the same flags as ``exec`` would compile it, and a text that is not in the
file (another class, a lazily imported dependency) is compiled exactly as before. The file is named after
the interpreter's bytecode tag and its bytecode magic number (:data:`TAG`), so no Python whose bytecode
differs (another version, or a patch release that changed it) ever reads it. Without the file (a working tree, the
tests) nothing is installed.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib
import importlib.util
import marshal
import os
import sys
from pathlib import Path
from types import CodeType
from typing import Any

TAG = f"{sys.implementation.cache_tag}-{importlib.util.MAGIC_NUMBER.hex()}"
"""Which interpreters may read the file: the code objects in it are this bytecode's."""
CACHE = Path(__file__).with_name(f"dataclass_methods.{TAG}.bin")
RECORD_ENV = "COSMOS_HISTORY_RECORD_DATACLASSES"
"""Set (to any value) by the deploy hook's recording run."""


class PrecompiledMethods:
    """``exec`` for the ``dataclasses`` module: known sources run from their code objects.

    The file holds each module's sources apart (marshalled on their own), so a process decodes only those of
    the modules it creates dataclasses in: what a request imports later costs nothing at start-up.
    """

    def __init__(self, modules: dict[str, bytes], *, recording: bool = False) -> None:
        self.modules = modules
        self.recording = recording
        self._codes: dict[str, dict[str, CodeType]] = {}
        self.served = 0
        """Sources run from a precompiled code object."""
        self.compiled = 0
        """Sources compiled here (not in the file, or recording)."""

    def exec(self, source: Any, scope: dict[str, Any] | None = None, names: Any = None, /) -> None:
        if isinstance(source, str):
            codes = self._of((scope or {}).get("__name__", ""))
            code = codes.get(source)
            if code is None:
                # What builtins.exec compiles for a string from dataclasses.py (which has no future imports).
                code = compile(source, "<string>", "exec", dont_inherit=True)
                self.compiled += 1
                if self.recording:
                    codes[source] = code
            else:
                self.served += 1
            source = code
        builtins.exec(source, scope, names)

    def _of(self, module: str) -> dict[str, CodeType]:
        codes = self._codes.get(module)
        if codes is None:
            stored = self.modules.get(module)
            codes = self._codes[module] = marshal.loads(stored) if stored is not None else {}
        return codes

    def dump(self) -> bytes:
        """The file's bytes: ``{module: marshalled {source: code}}``."""
        return marshal.dumps({module: marshal.dumps(codes) for module, codes in self._codes.items() if codes})


def installed() -> PrecompiledMethods | None:
    """The methods :func:`install` put in place, if any."""
    current = getattr(getattr(dataclasses, "exec", None), "__self__", None)
    return current if isinstance(current, PrecompiledMethods) else None


def install(cache: Path = CACHE) -> PrecompiledMethods | None:
    """Serve dataclass methods from ``cache`` (or record them, under :data:`RECORD_ENV`); once per process.

    ``dataclasses`` looks ``exec`` up in its module globals before the builtins, so setting it there
    reaches every class created from now on. Nothing is installed without a readable file of this Python.
    """
    if (current := installed()) is not None:
        return current
    if os.environ.get(RECORD_ENV):
        methods = PrecompiledMethods({}, recording=True)
    else:
        try:
            modules = marshal.loads(cache.read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            return None
        if not isinstance(modules, dict):
            return None
        methods = PrecompiledMethods(modules)
    dataclasses.exec = methods.exec  # type: ignore[attr-defined]
    return methods


def uninstall() -> None:
    """Give ``dataclasses`` the builtin ``exec`` back (tests)."""
    if installed() is not None:
        del dataclasses.exec  # type: ignore[attr-defined]


def import_all(package: str = __package__ or "cosmos_history") -> list[str]:
    """(Recording run) Import every module of ``package``, so that the classes of modules a request imports later
    are recorded too; returns those that could not be imported (a dependency missing here), which then compile
    their methods as before."""
    import pkgutil

    failed: list[str] = []
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, f"{package}.", onerror=failed.append):
        try:
            importlib.import_module(module.name)
        except ImportError:
            failed.append(module.name)
    return failed


def save(cache: Path = CACHE) -> int:
    """Write what the recording run compiled to ``cache``; returns how many sources."""
    methods = installed()
    if methods is None or not methods.recording:
        raise RuntimeError(f"nothing recorded: set {RECORD_ENV} before the first import of cosmos_history")
    cache.write_bytes(methods.dump())
    return methods.compiled
