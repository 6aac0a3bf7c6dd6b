"""The layering the README promises, checked: the domain runs without any Azure SDK."""

from __future__ import annotations

import subprocess
import sys


def test_the_domain_and_the_memory_adapter_import_nothing_from_azure():
    probe = (
        "import sys, pkgutil, importlib, cosmos_history.domain as d\n"
        "for m in pkgutil.iter_modules(d.__path__): importlib.import_module(f'cosmos_history.domain.{m.name}')\n"
        "import cosmos_history.adapters.memory\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'azure'))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout

    assert loaded.strip() == "[]"
