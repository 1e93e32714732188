"""Binder-sized check: a fresh environment from ``binder/`` alone, every notebook on one CPU, against 2 GB.

    python benchmarks/binder_check.py [--venv DIR] [--keep-index-urls] [--reuse] [--json out.json]

Steps, as Binder does them (repo2docker: ``requirements.txt`` then ``postBuild``):

1. a new virtual environment (``--venv``, default a temporary folder) from this machine's Python;
2. ``pip install -r binder/requirements.txt``. The file points pip at the PyTorch CPU index
   (``--extra-index-url https://download.pytorch.org/whl/cpu``) so that Binder gets the CPU build of
   torch. That index is unreachable from machines without internet (like the one the course is developed
   on, which reaches only the package registries), and pip would retry it for minutes: by default this
   script drops ``--index-url``/``--extra-index-url`` lines and lets the configured indexes serve
   ``torch==2.13.0`` (here a local CPU wheel). ``--keep-index-urls`` keeps them, with a 10 s pip timeout;
3. ``bash binder/postBuild`` with the environment's ``bin`` first on ``PATH`` (it installs mmlearn);
4. every ``notebooks/*.ipynb`` through ``benchmarks/notebooks.py --threads 1`` run by the new
   environment's Python under ``taskset -c 0`` (one CPU, one BLAS/OpenMP thread), in a fresh kernel each,
   with no user-level Jupyter kernels or configuration visible.

Prints wall time and the kernel's peak resident memory per notebook against Binder's 2 GB (the limit
is for the whole container; a Jupyter server adds about 100 MB, hence the margin column), the install
times and the environment's size. Exit status 1 if a notebook fails or peaks over 1.5 GB (the margin).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
NOTEBOOKS_SCRIPT = Path(__file__).with_name("notebooks.py")
BINDER_MB = 2048.0
MARGIN_MB = 1536.0  # what a notebook may use and still leave room for the server and the browser's widgets


def filtered_requirements(text: str, keep_index_urls: bool) -> tuple[str, list[str]]:
    """Requirements without index-URL lines (unless kept); returns (text, dropped lines)."""
    kept, dropped = [], []
    for line in text.splitlines():
        opt = line.strip().split()[0] if line.strip() else ""
        if not keep_index_urls and opt in ("--extra-index-url", "--index-url", "-i"):
            dropped.append(line.strip())
            continue
        kept.append(line)
    return "\n".join(kept) + "\n", dropped


def run(cmd, *, env=None, cwd=ROOT, what="") -> float:
    t0 = time.perf_counter()
    print(f"$ {' '.join(map(str, cmd))}", flush=True)
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        raise SystemExit(f"{what or cmd[0]} failed with exit status {proc.returncode}")
    return time.perf_counter() - t0


def du_mb(path: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            fp = Path(dirpath) / f
            if not fp.is_symlink():
                total += fp.stat().st_size
    return total / 2**20


def base_python() -> str:
    """The interpreter to build the venv from: the one Binder's runtime.txt names if present, else this one."""
    runtime = (BINDER / "runtime.txt").read_text().strip() if (BINDER / "runtime.txt").exists() else ""
    if runtime.startswith("python-"):
        found = shutil.which(f"python{runtime.split('-', 1)[1]}")
        if found:
            return found
    return getattr(sys, "_base_executable", sys.executable)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", help="where to build the environment (default: a temporary folder, removed after)")
    parser.add_argument("--reuse", action="store_true", help="skip building if --venv already has mmlearn")
    parser.add_argument("--keep-index-urls", action="store_true", help="keep requirements.txt's index URLs")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("notebooks", nargs="*", help="default: every notebooks/*.ipynb")
    args = parser.parse_args()

    tmp = None
    if args.venv:
        venv = Path(args.venv).resolve()
    else:
        tmp = tempfile.mkdtemp(prefix="mmlearn-binder-")
        venv = Path(tmp) / "venv"
    python = venv / "bin" / "python"
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    times: dict[str, float] = {}
    try:
        if not (args.reuse and python.exists()):
            if venv.exists():
                shutil.rmtree(venv)
            times["venv"] = run([base_python(), "-m", "venv", str(venv)], what="venv")
            req, dropped = filtered_requirements((BINDER / "requirements.txt").read_text(), args.keep_index_urls)
            req_file = venv / "binder-requirements.txt"
            req_file.write_text(req)
            if dropped:
                print(f"note: dropped {dropped} (unreachable offline; the configured indexes serve torch)")
            pip = [str(python), "-m", "pip", "install", "--quiet"]
            if args.keep_index_urls:
                pip += ["--timeout", "10", "--retries", "1"]
            times["requirements"] = run([*pip, "-r", str(req_file)], env=env, what="pip install -r requirements.txt")
            times["postBuild"] = run(["bash", str(BINDER / "postBuild")], env=env, what="postBuild")
        versions = subprocess.run([str(python), "-c", "import torch, mmlearn, plotly, ipywidgets; "
                                   "print(torch.__version__, plotly.__version__, ipywidgets.__version__, mmlearn.__file__)"],
                                  env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
        print("environment:", versions.stdout.strip() or versions.stderr.strip()[-500:])
        size_mb = du_mb(venv)

        # one CPU, one thread; no user-level Jupyter kernels or config (the kernel must be this venv's Python)
        jupyter_home = Path(tempfile.mkdtemp(prefix="mmlearn-binder-jupyter-"))
        run_env = dict(env, JUPYTER_DATA_DIR=str(jupyter_home / "data"), JUPYTER_CONFIG_DIR=str(jupyter_home / "config"),
                       JUPYTER_PATH="", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
        out_json = jupyter_home / "rows.json"
        cmd = [str(python), str(NOTEBOOKS_SCRIPT), "--threads", "1", "--json", str(out_json), *args.notebooks]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "0", *cmd]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=run_env, cwd=ROOT)
        times["notebooks"] = time.perf_counter() - t0
        rows = json.loads(out_json.read_text()) if out_json.exists() else []
        shutil.rmtree(jupyter_home, ignore_errors=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(f"# Binder-sized check · {time.strftime('%Y-%m-%d %H:%M')} · {platform.machine()} · "
          f"1 CPU (taskset -c 0), 1 thread · fresh venv from binder/ ({size_mb:.0f} MB)")
    print("install: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print(f"{'notebook':28s} {'wall s':>7s} {'peak MB':>8s} {'of 2 GB':>8s}  status")
    bad = 0
    for r in rows:
        ok = r["error"] is None and r["peak_mb"] < MARGIN_MB
        bad += not ok
        status = "ok" if ok else (f"FAILED {r['error']}" if r["error"] else f"over {MARGIN_MB:.0f} MB margin")
        print(f"{r['notebook']:28s} {r['wall_s']:7.1f} {r['peak_mb']:8.0f} {r['peak_mb'] / BINDER_MB:8.0%}  {status}")
    if not rows:
        print("no notebook ran")
        bad = 1
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "times": times, "venv_mb": size_mb}, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
