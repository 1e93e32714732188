"""Importing the course's panels must not wait on heavy libraries a panel may never use.

Each notebook's first cell imports ``mmlearn.widgets``; scikit-learn + SciPy took 1.6 s and
``datasets`` (with pyarrow and pandas) 1.3 s of a 4 s import. They are imported where they are
used. Checked by module presence in a fresh interpreter, not by timing (the course benchmark
prints the time).
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sklearn", "scipy", "datasets", "pandas", "pyarrow", "cvxpy")


MODULES = ("mmlearn.data", "mmlearn.fusion", "mmlearn.train", "mmlearn.representation", "mmlearn.alignment",
           "mmlearn.balance", "mmlearn.viz", "mmlearn.widgets")


def test_imports_pull_no_heavy_dependency():
    # one fresh interpreter imports the packages in turn and reports what each one pulled in
    code = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        f"    print(name, ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    pulled = {line.split(" ")[0]: line.partition(" ")[2] for line in out.stdout.strip().splitlines()}
    assert list(pulled) == list(MODULES)
    assert all(v == "" for v in pulled.values()), pulled
