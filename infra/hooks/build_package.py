"""azd pre-package hook: the deployment package, with bytecode that stays valid in a read-only app.

Azure runs the function app from a read-only package, so Python can never write ``__pycache__``
there: without shipped bytecode every cold start compiles every module of the project again. And
ordinary (timestamp) ``.pyc`` files would not help: they are valid only while each source keeps its
modification time, which the remote build (Oryx copies the sources with ``rsync`` without ``-t``)
and zip archives (2-second resolution) do not preserve. This hook therefore copies what azd deploys
(the project minus ``.funcignore``) to ``.build/package`` (``dist`` in azure.yaml) and compiles it
with ``--invalidation-mode unchecked-hash``: Python uses those files without looking at the source.

The hook then imports the app once in the copy, and every other module of ``cosmos_history`` (those a request
imports on first use), to record the methods ``@dataclass`` generates, which no ``.pyc`` can hold
(``cosmos_history/precompiled.py``): neither a cold start nor a first use then compiles any of those. The same run
puts the bytecode of the modules a start-up imports into one file, which a cold start reads instead of finding
and reading 70-odd ``.pyc`` files one by one.
That needs the app's requirements in the hook's interpreter (the project's virtual environment); without
them the package is built without that file, as before, and the hook says so.

Built in a copy, not in place: an unchecked ``.pyc`` in the working tree would keep running stale
code after an edit. ``.funcignore`` is copied too: azd applies it to the ``dist`` folder, and without
it azd's Python defaults would drop every ``__pycache__`` from the zip.

Usage: python infra/hooks/build_package.py [--output DIR]   (standard library only)
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = Path(".build") / "package"
#: What azd leaves out of a function app's zip whatever the ignore file says (besides the ignore file).
AZD_EXCLUDED = (".azure", "local.settings.json")
PYTHON_VERSION_PARAM = re.compile(r"param pythonVersion string = '(\d+\.\d+)'")


def deployed_python_version(root: Path = REPO_ROOT) -> str:
    """The Python version the function app runs (infra/app/function-app.bicep): the ``.pyc`` must match it."""
    bicep = (root / "infra" / "app" / "function-app.bicep").read_text(encoding="utf-8")
    found = PYTHON_VERSION_PARAM.search(bicep)
    if found is None:
        raise SystemExit("build_package: no pythonVersion default in infra/app/function-app.bicep")
    return found.group(1)


def python_for(version: str) -> str:
    """An interpreter of ``version``: bytecode of another version would be ignored in Azure."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if found is None:
        raise SystemExit(
            f"build_package: the app runs Python {version} in Azure; install python{version} (or run this "
            f"hook with it) so the package carries bytecode that Python {version} uses"
        )
    return found


class IgnoreRules:
    """The subset of gitignore syntax that ``.funcignore`` uses: names and globs, ``/`` for folders only
    (at the end) or for the root (at the start). Anything else is refused rather than misread."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[str, bool, bool]] = []  # (pattern, directories only, anchored at the root)
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("!") or "**" in line or "/" in line.strip("/"):
                raise ValueError(f".funcignore: unsupported pattern {line!r} (names and globs only)")
            self.rules.append((line.strip("/"), line.endswith("/"), line.startswith("/")))

    def ignores(self, relative: Path, is_dir: bool) -> bool:
        return any(
            fnmatch.fnmatchcase(relative.name, pattern)
            and (is_dir or not dirs_only)
            and (len(relative.parts) == 1 or not anchored)
            for pattern, dirs_only, anchored in self.rules
        )


def copy_sources(root: Path, output: Path) -> None:
    """Copy ``root`` to ``output`` as azd would zip it (``.funcignore`` applied), without any ``__pycache__``."""
    ignore_file = root / ".funcignore"
    rules = IgnoreRules(ignore_file.read_text(encoding="utf-8") if ignore_file.is_file() else "")
    output_resolved = output.resolve()

    def skip(directory: str, names: list[str]) -> set[str]:
        skipped = set()
        for name in names:
            path = Path(directory, name)
            relative = path.relative_to(root)
            is_dir = path.is_dir()
            if (
                name == "__pycache__"
                or name in AZD_EXCLUDED
                or rules.ignores(relative, is_dir)
                or path.resolve() == output_resolved
            ):
                skipped.add(name)
        return skipped

    if output.exists():
        shutil.rmtree(output)
    shutil.copytree(root, output, ignore=skip, symlinks=False)


#: Run in the package: import the app as the worker does (writing the bytecode of the modules it loaded into one file),
#: then the modules it imports on first use, recording every dataclass method source.
RECORD_DATACLASSES = (
    "import sys, function_app, cosmos_history.precompiled as p; "
    "p.save_bytecode([m for m in sys.modules if m.startswith('cosmos_history.')]); p.import_all(); print(p.save())"
)
RECORD_ENV = "COSMOS_HISTORY_RECORD_DATACLASSES"  # cosmos_history.precompiled.RECORD_ENV


def build_package(root: Path = REPO_ROOT, output: Path | None = None, *, python: str | None = None) -> Path:
    """Build the deployment folder; returns it. ``python`` defaults to one of the deployed version."""
    output = output if output is not None else root / DEFAULT_OUTPUT
    interpreter = python or python_for(deployed_python_version(root))
    copy_sources(root, output)
    subprocess.run(
        [interpreter, "-m", "compileall", "-q", "-f", "--invalidation-mode", "unchecked-hash", str(output)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    record_dataclass_methods(output, interpreter)
    return output


def record_dataclass_methods(output: Path, interpreter: str) -> int | None:
    """Write the package's precompiled dataclass methods (see the module docstring); returns how many, or
    ``None`` when the app cannot be imported here (the package then works as before, compiling them)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {RECORD_ENV: "1", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [interpreter, "-c", RECORD_DATACLASSES], cwd=output, env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"build_package: dataclass methods not precompiled (the app did not import here: {reason})")
        return None
    return int(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    built = build_package(REPO_ROOT, args.output)
    compiled = sum(1 for _ in built.rglob("*.pyc"))
    print(f"build_package: {built} ({compiled} .pyc files, unchecked-hash)")


if __name__ == "__main__":
    main()
