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

The same run writes :data:`BYTECODE`: the bytecode of every module of this package that ``import function_app`` loads,
in one file (:func:`save_bytecode`). Finding and reading a module's ``.pyc`` costs a cold start some 50 µs of file
system calls per module (the folder's and the source's ``stat``, opening and reading the ``.pyc``), about 3.5 ms for
the 70-odd modules of a start-up; :class:`Bytecode` serves them from that one file instead. It holds the very bytes
of the package's unchecked ``.pyc`` files, so a module runs exactly the code it would run from its ``.pyc`` (and is
as valid: the package is read-only, and an unchecked ``.pyc`` is not checked against its source either); every
other module, and any module whose parent package is not where the file says, is found and loaded as before.
"""

from __future__ import annotations

import _imp
import builtins
import dataclasses
import importlib
import importlib.util
import marshal
import os
import sys
from importlib.machinery import ModuleSpec, SourceFileLoader
from pathlib import Path
from types import CodeType
from typing import Any

TAG = f"{sys.implementation.cache_tag}-{importlib.util.MAGIC_NUMBER.hex()}"
"""Which interpreters may read the file: the code objects in it are this bytecode's."""
CACHE = Path(__file__).with_name(f"dataclass_methods.{TAG}.bin")
RECORD_ENV = "COSMOS_HISTORY_RECORD_DATACLASSES"
"""Set (to any value) by the deploy hook's recording run."""
BYTECODE = Path(__file__).with_name(f"bytecode.{TAG}.bin")
"""The start-up modules' bytecode in one file (:class:`Bytecode`)."""
_UNCHECKED_HASH = 0b01
"""A ``.pyc``'s flags (PEP 552) when it is hash-based and never checked against its source."""


class Sections:
    """A read-only file of named byte sections, read as they are asked for: a process reads only what it uses.

    Layout: the index's length (8 bytes, little-endian), the index (marshalled ``{name: (offset, length, *extra)}``),
    then the sections. Reading a whole file (and copying each section out of it) cost a cold start some 2 ms for
    the dataclass methods alone, most of them other modules' (bench/optimisations.md); one ``os.pread`` per section
    costs microseconds. The file stays open for the life of the process (the deployment package never changes).
    """

    def __init__(self, fd: int, base: int, index: dict[str, tuple[Any, ...]]) -> None:
        self.fd = fd
        self.base = base
        self.index = index

    @classmethod
    def open(cls, path: Path) -> Sections | None:
        """The file at ``path``, or ``None`` when it is missing or not such a file."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            size = int.from_bytes(os.pread(fd, 8, 0), "little")
            if size > os.fstat(fd).st_size - 8:
                raise ValueError("not a sections file")
            index = marshal.loads(os.pread(fd, size, 8))
            if not isinstance(index, dict):
                raise ValueError("not a sections file")
        except (OSError, EOFError, ValueError, TypeError):
            os.close(fd)
            return None
        return cls(fd, 8 + size, index)

    def get(self, name: str, default: bytes | None = None) -> bytes | None:
        """The section ``name``'s bytes (``default`` when there is none)."""
        entry = self.index.get(name)
        if entry is None:
            return default
        return os.pread(self.fd, entry[1], self.base + entry[0])

    @staticmethod
    def write(path: Path, sections: dict[str, tuple[bytes, tuple[Any, ...]]]) -> None:
        """Write ``{name: (bytes, extra)}`` to ``path``; the index keeps each section's ``extra`` after its place."""
        index: dict[str, tuple[Any, ...]] = {}
        blob = bytearray()
        for name, (data, extra) in sections.items():
            index[name] = (len(blob), len(data), *extra)
            blob += data
        header = marshal.dumps(index)
        path.write_bytes(len(header).to_bytes(8, "little") + header + blob)


class PrecompiledMethods:
    """``exec`` for the ``dataclasses`` module: known sources run from their code objects.

    The file holds each module's sources apart (marshalled on their own), so a process decodes only those of
    the modules it creates dataclasses in: what a request imports later costs nothing at start-up.
    """

    def __init__(self, modules: dict[str, bytes] | Sections, *, recording: bool = False) -> None:
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

    def by_module(self) -> dict[str, bytes]:
        """What was recorded: ``{module: marshalled {source: code}}`` (the file holds each as a section)."""
        return {module: marshal.dumps(codes) for module, codes in self._codes.items() if codes}

    def dump(self) -> bytes:
        """:meth:`by_module`, marshalled."""
        return marshal.dumps(self.by_module())


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
        modules = Sections.open(cache)
        if modules is None:
            return None
        methods = PrecompiledMethods(modules)
    dataclasses.exec = methods.exec  # type: ignore[attr-defined]
    return methods


class _BundledLoader(SourceFileLoader):
    """A source file's loader whose code comes from :data:`BYTECODE`, not from a ``.pyc`` next to it."""

    def __init__(self, fullname: str, path: str, sections: Sections) -> None:
        super().__init__(fullname, path)
        self._sections = sections

    def get_code(self, fullname: str) -> CodeType:
        stored = self._sections.get(fullname)
        if stored is None:
            raise ImportError(f"{fullname} is not in {BYTECODE.name}", name=fullname)
        code = marshal.loads(stored)
        _imp._fix_co_filename(code, self.path)  # as a .pyc's code is given the path it is loaded from
        return code  # type: ignore[no-any-return]


class Bytecode:
    """A meta path finder for the modules of this package held in :data:`BYTECODE` (see the module docstring)."""

    def __init__(self, folder: str, sections: Sections) -> None:
        self.folder = folder
        self.sections = sections
        """By module name: its bytecode's place, its file relative to ``folder``, whether it is a package."""
        self.served: list[str] = []

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        entry = self.sections.index.get(name)
        if entry is None or path is None:
            return None
        relative, package = entry[2:]
        origin = os.path.join(self.folder, relative)
        folder = os.path.dirname(origin)  # a package's own folder, or a module's parent's
        if len(path) != 1 or path[0] != (os.path.dirname(folder) if package else folder):
            return None  # the parent package is not where it was built: the import system decides, as before
        self.served.append(name)
        if len(self.served) == len(self.sections.index) and self in sys.meta_path:
            # Every module it holds is loaded: later imports (the dependencies' lazy ones) need not ask it.
            sys.meta_path.remove(self)
        return importlib.util.spec_from_file_location(
            name,
            origin,
            loader=_BundledLoader(name, origin, self.sections),
            submodule_search_locations=[folder] if package else None,
        )


def serve_bytecode(bundle: Path = BYTECODE) -> Bytecode | None:
    """Find the start-up modules in ``bundle`` from now on (once per process; nothing without a readable file). The
    finder leaves ``sys.meta_path`` once it has served every module it holds."""
    global _serving
    if _serving is not None:
        return _serving
    if os.environ.get(RECORD_ENV):
        return None  # the deploy hook's run reads every module as it is on disk
    sections = Sections.open(bundle)
    if sections is None:
        return None
    finder = _serving = Bytecode(os.path.dirname(__file__), sections)
    sys.meta_path.insert(0, finder)
    return finder


_serving: Bytecode | None = None


def save_bytecode(names: list[str], bundle: Path = BYTECODE) -> int:
    """(Recording run) Write the bytecode of the modules ``names`` of this package, as their unchecked ``.pyc`` files
    hold it, to ``bundle``; returns how many (a module without such a ``.pyc`` is left out: it loads as before)."""
    folder = os.path.dirname(__file__)
    modules: dict[str, tuple[bytes, tuple[Any, ...]]] = {}
    for name in names:
        module = sys.modules.get(name)
        origin = getattr(getattr(module, "__spec__", None), "origin", None)
        if name == __name__:
            continue  # loaded before the file is read
        if module is None or not isinstance(origin, str) or not origin.endswith(".py"):
            continue
        try:
            pyc = Path(importlib.util.cache_from_source(origin)).read_bytes()
        except OSError:
            continue
        if int.from_bytes(pyc[4:8], "little") != _UNCHECKED_HASH:
            continue
        modules[name] = (pyc[16:], (os.path.relpath(origin, folder), hasattr(module, "__path__")))
    Sections.write(bundle, modules)
    return len(modules)


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
    Sections.write(cache, {module: (codes, ()) for module, codes in methods.by_module().items()})
    return methods.compiled
