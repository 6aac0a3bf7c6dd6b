"""Dataclass methods precompiled into the deployment package (``cosmos_history/precompiled.py``): a class built
from the file compiles nothing and behaves exactly as one compiled at import; anything the file does not hold
compiles as before; a missing or unreadable file installs nothing. (That the built package carries the file
and a cold import from it compiles no method: tests/test_package.py.)"""

from __future__ import annotations

import dataclasses
import importlib.util
import marshal
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cosmos_history import precompiled
from cosmos_history.precompiled import PrecompiledMethods

SAMPLE = """
from __future__ import annotations
from dataclasses import dataclass, field

@dataclass(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()

@dataclass
class Bag:
    name: str
    items: list[int] = field(default_factory=list)
"""


@contextmanager
def serving(methods: PrecompiledMethods) -> Iterator[PrecompiledMethods]:
    assert precompiled.installed() is None  # a working tree has no file: the test process installed nothing
    dataclasses.exec = methods.exec  # type: ignore[attr-defined]
    try:
        yield methods
    finally:
        precompiled.uninstall()


def sample_module(name: str = "sample_classes") -> types.ModuleType:
    """``SAMPLE`` imported as module ``name`` (dataclasses reads string annotations in the class's module)."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        exec(compile(SAMPLE, f"<{name}>", "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module


def recorded() -> bytes:
    with serving(PrecompiledMethods({}, recording=True)) as methods:
        sample_module()
    assert methods.compiled > 0
    return methods.dump()


def test_classes_built_from_the_file_compile_nothing_and_behave_as_classes_compiled_at_import() -> None:
    plain = sample_module()
    with serving(PrecompiledMethods(marshal.loads(recorded()))) as methods:
        served = sample_module()

    assert methods.compiled == 0 and methods.served > 0
    for module in (plain, served):
        point = module.Point(1, tags=("a",))
        assert point == module.Point(1, 0, ("a",)) and point != module.Point(2)
        assert repr(point) == "Point(x=1, y=0, tags=('a',))"
        assert hash(point) == hash(module.Point(1, 0, ("a",)))
        with pytest.raises(dataclasses.FrozenInstanceError):
            point.x = 2  # type: ignore[misc]
        first, second = module.Bag("a"), module.Bag("b")
        first.items.append(1)
        assert second.items == [] and first == module.Bag("a", [1])
        assert [f.name for f in dataclasses.fields(module.Bag)] == ["name", "items"]


def test_a_class_the_file_does_not_hold_is_compiled_as_before() -> None:
    with serving(PrecompiledMethods(marshal.loads(recorded()))) as methods:
        other = sample_module("another_module")  # the same source in another module: not in the file

    assert methods.served == 0 and methods.compiled > 0
    assert other.Point(1) == other.Point(1, 0)


def test_without_a_readable_file_of_this_python_nothing_is_installed(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.bin"
    damaged.write_bytes(b"\x00not marshal")

    assert precompiled.install(tmp_path / "missing.bin") is None
    assert precompiled.install(damaged) is None
    assert precompiled.installed() is None and not hasattr(dataclasses, "exec")


def test_the_file_is_named_after_this_pythons_bytecode_tag() -> None:
    assert precompiled.CACHE.name == f"dataclass_methods.{precompiled.TAG}.bin"
    assert not precompiled.CACHE.exists()  # only the deployment package carries it


def bytecode_of(tmp_path: Path, source: str) -> precompiled.Bytecode:
    """A bytecode file holding package ``pkg`` (from ``source``) and its module ``pkg.mod``, read back."""
    folder = tmp_path / "app"
    (folder / "pkg").mkdir(parents=True)
    code = marshal.dumps(compile(source, "built-elsewhere.py", "exec"))
    empty = marshal.dumps(compile("", "built-elsewhere.py", "exec"))
    bundle = tmp_path / "bytecode.bin"
    precompiled.Sections.write(
        bundle, {"pkg": (empty, ("pkg/__init__.py", True)), "pkg.mod": (code, ("pkg/mod.py", False))}
    )
    sections = precompiled.Sections.open(bundle)
    assert sections is not None
    finder = precompiled.Bytecode(str(folder), sections)  # served here by hand, not to the test process
    return finder


def test_the_bytecode_file_serves_a_module_where_its_parent_package_is(tmp_path: Path) -> None:
    finder = bytecode_of(tmp_path, "VALUE = 42\ndef where():\n    return where.__code__.co_filename\n")
    folder = tmp_path / "app" / "pkg"

    package = finder.find_spec("pkg", [str(tmp_path / "app")])
    spec = finder.find_spec("pkg.mod", [str(folder)])

    assert package is not None and package.submodule_search_locations == [str(folder)]
    assert spec is not None and spec.origin == str(folder / "mod.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    assert module.VALUE == 42 and module.where() == str(folder / "mod.py")  # named after where it is, as a .pyc's


def test_a_module_whose_parent_is_elsewhere_or_not_in_the_file_is_left_to_the_import_system(tmp_path: Path) -> None:
    finder = bytecode_of(tmp_path, "VALUE = 42\n")

    assert finder.find_spec("pkg.mod", [str(tmp_path / "elsewhere")]) is None
    assert finder.find_spec("pkg.mod", [str(tmp_path / "app" / "pkg"), str(tmp_path / "more")]) is None
    assert finder.find_spec("pkg.other", [str(tmp_path / "app" / "pkg")]) is None
    assert finder.find_spec("pkg.mod", None) is None


def test_without_a_readable_bytecode_file_no_finder_is_added(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.bin"
    damaged.write_bytes((4).to_bytes(8, "little") + b"\x00not marshal")
    before = list(sys.meta_path)

    assert precompiled.serve_bytecode(tmp_path / "missing.bin") is None
    assert precompiled.serve_bytecode(damaged) is None
    assert sys.meta_path == before and not precompiled.BYTECODE.exists()  # only the deployment package has one


def test_a_sections_file_reads_each_section_it_holds_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "sections.bin"
    precompiled.Sections.write(path, {"a": (b"first", ()), "b": (b"", ("x", 1)), "c": (b"third", ())})

    sections = precompiled.Sections.open(path)

    assert sections is not None
    assert [sections.get(name) for name in ("a", "b", "c", "d")] == [b"first", b"", b"third", None]
    assert sections.index["b"][2:] == ("x", 1)
    os.close(sections.fd)
