"""Run every notebook top to bottom and print wall time and peak memory for each.

    python benchmarks/notebooks.py [notebooks/00_tour.ipynb ...] [--threads N]

Each notebook runs in a fresh process with a fresh kernel (nbclient), so no
state leaks between them. Peak memory is the kernel's maximum resident set size
(``getrusage(RUSAGE_CHILDREN)`` in the process that started it). ``--threads 1``
sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` to mimic Binder's single CPU.
Targets (issue 2): under 60 s and under 1.5 GB per notebook on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S, LIMIT_MB = 60.0, 1536.0


def run_one(path: str) -> dict:
    """Execute one notebook in this process (kernel as a child); return time and memory."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(Path(path).parent)}})
    t0 = time.perf_counter()
    error = None
    try:
        client.execute()
    except Exception as exc:  # report, don't hide: the table shows FAILED
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    wall = time.perf_counter() - t0
    kernel_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"notebook": Path(path).name, "wall_s": wall, "peak_mb": kernel_kb / 1024, "error": error}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="default: every notebooks/*.ipynb")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the kernel (1 = Binder-like)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return 0
    paths = args.notebooks or sorted(str(p) for p in (ROOT / "notebooks").glob("*.ipynb"))
    env = dict(os.environ)
    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(args.threads)
    rows = []
    for path in paths:
        out = subprocess.run([sys.executable, __file__, "--one", path], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            rows.append({"notebook": Path(path).name, "wall_s": float("nan"), "peak_mb": float("nan"),
                         "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "crashed"})
        else:
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"# {time.strftime('%Y-%m-%d')} · {platform.machine()} · {os.cpu_count()} CPUs · "
          f"threads={args.threads or 'default'} · python {platform.python_version()}")
    print(f"{'notebook':32s} {'wall s':>8s} {'peak MB':>9s}  status")
    bad = 0
    for r in rows:
        ok = r["error"] is None and r["wall_s"] < LIMIT_S and r["peak_mb"] < LIMIT_MB
        bad += not ok
        status = "ok" if ok else (f"FAILED {r['error']}" if r["error"] else "over budget")
        print(f"{r['notebook']:32s} {r['wall_s']:8.1f} {r['peak_mb']:9.0f}  {status}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
