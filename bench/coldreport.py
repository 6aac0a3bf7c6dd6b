"""The cold start's section of the report (``python -m bench.coldstart measure`` and ``make bench``)."""

from __future__ import annotations

from .coldstart import ColdStart
from .markdown import ms as _ms
from .markdown import table as _table


def cold_start_lines(cold: ColdStart) -> list[str]:
    rows = [
        ["Import the dependencies the app imports (baseline)", _ms(cold.deps_import)],
        [
            "Import `function_app` with those already loaded (the project's own import), package with its bytecode",
            _ms(cold.project_import),
        ],
        [
            "Project import overhead, package with its bytecode (median of each process's own ratio)",
            f"{cold.project_overhead_pct:.1f}% of the dependencies' import",
        ],
        [
            "The same from the package without bytecode (every module compiled at every cold start)",
            f"{_ms(cold.project_import_sources_only)} ({cold.project_overhead_pct_sources_only:.1f}% of the "
            "dependencies' import)",
        ],
        ["Import `function_app` in a fresh process (all of it)", _ms(cold.app_import)],
        [
            "Dataclass methods compiled by that import (run precompiled from the package's file)",
            "no precompiled file"
            if cold.dataclass_methods_compiled is None
            else f"{cold.dataclass_methods_compiled} ({cold.dataclass_methods_precompiled} precompiled)",
        ],
        [
            f"First `POST message` after that (runtime build + turn, "
            f"{cold.first_request_cosmos_requests} Cosmos requests)",
            _ms(cold.first_request),
        ],
        [
            "Whole child process, spawn to exit (interpreter start, import, first request, shutdown)",
            _ms(cold.process_wall),
        ],
        [
            "For reference: also importing `agent_framework_openai`, `azure.identity.aio`, `aiohttp`",
            _ms(cold.all_deps_import),
        ],
    ]
    return [
        "## Cold start",
        "",
        f"Medians over {cold.runs} fresh processes of each kind, interleaved (`bench/coldstart.py`), after one "
        "discarded run that warms the file cache, each in a read-only copy of the deployment package "
        "(`infra/hooks/build_package.py`, what `azd deploy` zips, with its unchecked-hash bytecode) and with "
        "`PYTHONDONTWRITEBYTECODE=1`, as Azure runs the app; once more without the package's bytecode, as "
        "deployments were before. The baseline imports every module outside the project that a fresh "
        "`import function_app` loads (recorded by a first process, in load order), so the framework's lazily "
        "loaded parts, also those loaded while the app builds its agents at start-up, count as dependencies; "
        "what remains is the project's own code: its modules and what they run at import (the route table, "
        "the agents). The dependencies' own bytecode is this virtual environment's (pip compiles it at install).",
        "",
        *_table(["Step", "ms"], rows),
        "",
        f"Modules compiled from source while a fresh process imports `function_app`: {cold.modules_compiled} "
        f"with the package's bytecode, {cold.modules_compiled_sources_only} without. Modules loaded by it: "
        f"{cold.modules_loaded:,}, {cold.project_modules} of them the project's.",
        *_cold_before(cold),
    ]


def _cold_before(cold: ColdStart) -> list[str]:
    """Another checkout's package measured in the same run (``--before``), beside this one."""
    old = cold.before
    if old is None:
        return []
    rows = [
        ["Project's own import (ms)", _ms(old.project_import), _ms(cold.project_import)],
        ["... as a share of its dependencies'", f"{100 * old.project_share:.1f}%", f"{cold.project_overhead_pct:.1f}%"],
        ["Fresh `import function_app`, all of it (ms)", _ms(old.app_import), _ms(cold.app_import)],
        [
            "Modules loaded (the project's)",
            f"{old.modules_loaded:,} ({old.project_modules})",
            f"{cold.modules_loaded:,} ({cold.project_modules})",
        ],
        [
            "First `POST message` (ms; Cosmos requests)",
            f"{_ms(old.first_request)} ({old.first_request_cosmos_requests})",
            f"{_ms(cold.first_request)} ({cold.first_request_cosmos_requests})",
        ],
    ]
    return [
        "",
        f"Before (`{old.checkout}`) and after, same run, interleaved:",
        "",
        *_table(["", "Before", "After"], rows),
    ]
