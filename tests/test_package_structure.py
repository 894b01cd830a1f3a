"""Package structure: every module imports on its own in any order (no cycle held by import order), and no module
imports another module's private names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "spikeinterface_dic"


def _module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("order_seed", [0, 1, 2])
def test_every_module_imports_in_random_order(order_seed):
    # A fresh interpreter per order: a cycle that only works when one side is imported first fails here.
    script = (
        "import importlib, random, sys\n"
        f"names = {_module_names()!r}\n"
        f"random.Random({order_seed}).shuffle(names)\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_no_private_names_imported_across_modules():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith(PACKAGE.name)):
                private = [
                    alias.name for alias in node.names if alias.name.startswith("_") and alias.name != "__version__"
                ]
                if private:
                    offences.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {', '.join(private)}")
    assert not offences, "\n".join(offences)
