"""Course-wide benchmark: one command, one table.

    python benchmarks/course.py [--threads N] [--notebooks nb ...] [--skip-notebooks] [--skip-panels]
                                [--json out.json] [--markdown out.md]

Prints, on this machine:

1. per notebook, wall time and peak memory of a top-to-bottom run in a fresh kernel: this is
   ``benchmarks/notebooks.py``, called as is (targets: 60 s, 1.5 GB);
2. per widget panel, the median latency of a control change. Each notebook is executed again in a kernel
   (nbclient); then, in that kernel, every :class:`mmlearn.widgets.Panel` the notebook built is found
   and each of its controls is moved to new values (``control.value = v``, which runs the observers
   synchronously, as a browser's change does minus the network). The panel's result cache (and the
   playground's memo of curves) is cleared before each change, so every change recomputes. One more row:
   the playground with every fusion method ticked (its worst case), built directly. Controls a panel lists in ``training_controls``
   (the playground's dataset and method choices, which train a model once) are reported apart:
   they are not expected to answer at once. Target for evaluation controls: median under 200 ms;
3. :func:`mmlearn.interactions.pid` on five random 10 x 10 x 10 distributions (target: well under a second);
4. the import time of ``mmlearn`` and of each subpackage (median of 5 fresh interpreters).

``--threads 1`` sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` for the kernels (Binder-like).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_SCRIPT = Path(__file__).with_name("notebooks.py")
LATENCY_TARGET_MS = 200.0
SUBPACKAGES = ("mmlearn", "mmlearn.data", "mmlearn.fusion", "mmlearn.models", "mmlearn.train", "mmlearn.viz",
               "mmlearn.widgets")

# Run inside the notebook's kernel after its last cell: finds the panels and times control changes.
PANEL_PROBE = r'''
def __mmlearn_probe(moves_per_control=4):
    import gc, json, statistics, time
    import ipywidgets as W
    from mmlearn.widgets import Panel
    names = {}
    for k, v in sorted(globals().items(), key=lambda kv: kv[0].startswith("_")):  # 'panel' before '_12'
        if isinstance(v, Panel):
            names.setdefault(id(v), k)
    panels, seen = [], set()
    for obj in gc.get_objects():
        if isinstance(obj, Panel) and id(obj) not in seen:
            seen.add(id(obj)); panels.append(obj)

    def new_values(c):
        if getattr(c, "disabled", False):
            return []
        if isinstance(c, W.Checkbox) or isinstance(c, W.ToggleButton):
            return [not c.value, c.value]
        if isinstance(c, (W.FloatSlider, W.IntSlider, W.FloatLogSlider)):
            lo, hi, step = c.min, c.max, c.step or (c.max - c.min) / 10
            fracs = [0.75, 0.25, 1.0, 0.5, 0.0, 0.1, 0.9, 0.6][:moves_per_control]
            vals = []
            for f in fracs:
                v = lo + round(f * (hi - lo) / step) * step
                v = type(c.value)(min(max(v, lo), hi))
                if v != c.value and v not in vals:
                    vals.append(v)
            return vals
        options = getattr(c, "options", None)
        if options is not None and isinstance(c, W.SelectMultiple):  # the value is a tuple of choices
            values = [o[1] if isinstance(o, tuple) else o for o in options]
            subsets = [tuple(values[:k]) for k in (1, 2, len(values))] + [tuple(values[-1:])]
            return list(dict.fromkeys(v for v in subsets if v and v != tuple(c.value)))[:moves_per_control]
        if options is not None:  # Dropdown, SelectionSlider, ToggleButtons, RadioButtons
            values = [o[1] if isinstance(o, tuple) else o for o in options]
            return [v for v in values if v != c.value][:moves_per_control]
        return []

    out = []
    for panel in panels:
        training = set(getattr(panel, "training_controls", ()))
        rows = {}
        for cname, control in panel.controls.items():
            values = new_values(control)
            if not values:
                continue
            if cname in training:
                values = values[:1]  # one new training run is enough to report
            original, times = control.value, []
            for v in values:
                panel._cache.clear()
                if isinstance(getattr(panel, "_memo", None), dict):
                    panel._memo.clear()  # the playground's memo of curves: measure the full recompute
                t = time.perf_counter()
                control.value = v
                times.append(1000 * (time.perf_counter() - t))
            control.value = original
            rows[cname] = {"ms": times, "training": cname in training, "error": panel.error}
        out.append({"panel": type(panel).__name__, "name": names.get(id(panel), ""), "controls": rows})
    print("__PANELS__" + json.dumps(out))

__mmlearn_probe()
'''


def measure_panels(path: Path, env: dict, timeout: int = 900) -> list[dict]:
    """Execute ``path`` in a kernel, then time control changes of every panel it built."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    probe = nbformat.v4.new_code_cell(PANEL_PROBE)
    nb.cells.append(probe)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    old_env = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment (threads)
    try:
        client.execute(stderr=subprocess.DEVNULL)  # the kernel's own log lines are not results
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    line = next((ln for ln in text.splitlines() if ln.startswith("__PANELS__")), None)
    if line is None:
        raise RuntimeError(f"{path.name}: the panel probe printed nothing: {text[-500:]}")
    return json.loads(line[len("__PANELS__"):])


PLAYGROUND_ALL = r'''
import json, statistics, time
from mmlearn.fusion import FUSIONS
from mmlearn.widgets import PlaygroundPanel
panel = PlaygroundPanel(methods=tuple(FUSIONS))
times = []
for name, values in [("noise_0", (0.3, 0.7, 1.0, 0.0)), ("noise_1", (0.3, 0.7, 1.0, 0.0)),
                     ("missing_0", (0.3, 0.7, 1.0, 0.0)), ("missing_1", (0.3, 0.7, 1.0, 0.0)),
                     ("curve", ("noise:1", "missing:0", "missing:1", "noise:0"))]:
    for v in values:
        panel._cache.clear(); panel._memo.clear()
        t = time.perf_counter(); panel.controls[name].value = v; times.append(1000 * (time.perf_counter() - t))
print(json.dumps({"ms": times, "methods": len(FUSIONS)}))
'''


def playground_all_methods(env: dict) -> dict:
    """The playground with every registered method ticked (the worst case), built directly in a fresh process."""
    out = subprocess.run([sys.executable, "-c", PLAYGROUND_ALL], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}, cwd=ROOT)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {"notebook": "(direct)", "panel": f"PlaygroundPanel, all {data['methods']} methods ticked",
            "changes": len(data["ms"]), "median_ms": statistics.median(data["ms"]), "max_ms": max(data["ms"]),
            "slowest": "", "training_s": {}}


PID_TIMING = r"""
import json, statistics, time
import numpy as np
from mmlearn.interactions import pid
t = time.perf_counter(); import cvxpy; first_import = time.perf_counter() - t
rng = np.random.default_rng(0)
times = []
for k in range(5):
    p = rng.dirichlet(np.ones(1000)).reshape(10, 10, 10)
    t = time.perf_counter(); pid(p); times.append(time.perf_counter() - t)
print(json.dumps({"median_s": statistics.median(times), "max_s": max(times), "cvxpy_import_s": first_import}))
"""


def pid_timing(env: dict) -> dict:
    """``mmlearn.interactions.pid`` on five random 10 x 10 x 10 distributions, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", PID_TIMING], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def import_times(repeats: int = 5) -> dict[str, float]:
    """Median seconds to import each subpackage in a fresh interpreter (with what it imports)."""
    out = {}
    for name in SUBPACKAGES:
        code = f"import time; t = time.perf_counter(); import {name}; print(time.perf_counter() - t)"
        runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                     cwd=ROOT).stdout) for _ in range(repeats)]
        out[name] = statistics.median(runs)
    return out


def machine_line(threads) -> str:
    try:
        load = "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = ""
    return (f"{time.strftime('%Y-%m-%d %H:%M')} · {platform.machine()} · {os.cpu_count()} CPUs · "
            f"threads={threads or 'default'} · python {platform.python_version()} · {load}")


def summarize_panels(notebook: str, panels: list[dict]) -> list[dict]:
    rows = []
    for p in panels:
        evaluation = [t for c in p["controls"].values() if not c["training"] for t in c["ms"]]
        training = {k: max(c["ms"]) for k, c in p["controls"].items() if c["training"]}
        per_control = {k: statistics.median(c["ms"]) for k, c in p["controls"].items() if not c["training"]}
        slowest = max(per_control, key=per_control.get) if per_control else ""
        rows.append({
            "notebook": notebook, "panel": p["panel"] + (f" ({p['name']})" if p["name"] else ""),
            "changes": len(evaluation), "median_ms": statistics.median(evaluation) if evaluation else float("nan"),
            "max_ms": max(evaluation) if evaluation else float("nan"),
            "slowest": f"{slowest} {per_control[slowest]:.0f} ms" if slowest else "",
            "training_s": {k: v / 1000 for k, v in training.items()},
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebooks", nargs="*", help="default: every notebooks/*.ipynb")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the kernels (1 = Binder-like)")
    parser.add_argument("--skip-notebooks", action="store_true", help="no wall time / memory run")
    parser.add_argument("--skip-panels", action="store_true", help="no panel latency run")
    parser.add_argument("--json", help="write all numbers to this file")
    parser.add_argument("--markdown", help="write the tables as Markdown to this file")
    args = parser.parse_args()
    paths = [Path(p).resolve() for p in args.notebooks] if args.notebooks else sorted((ROOT / "notebooks").glob("*.ipynb"))
    env = {}
    if args.threads:
        env = {v: str(args.threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    results: dict = {"machine": machine_line(args.threads)}
    print("#", results["machine"], flush=True)
    status = 0

    # 1. notebooks: benchmarks/notebooks.py, unchanged
    if not args.skip_notebooks:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "notebooks.json"
            cmd = [sys.executable, str(NOTEBOOKS_SCRIPT), *map(str, paths), "--json", str(out)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            print("\n## notebooks (benchmarks/notebooks.py)", flush=True)
            proc = subprocess.run(cmd, cwd=ROOT)
            status |= proc.returncode != 0
            results["notebooks"] = json.loads(out.read_text()) if out.exists() else []

    # 2. panels
    if not args.skip_panels:
        print("\n## widget panels: latency of a control change (cache cleared before each change)", flush=True)
        rows = []
        for path in paths:
            try:
                rows += summarize_panels(path.name, measure_panels(path, env))
            except Exception as exc:  # report and go on
                status = 1
                rows.append({"notebook": path.name, "panel": f"FAILED: {type(exc).__name__}: {str(exc)[:200]}",
                             "changes": 0, "median_ms": float("nan"), "max_ms": float("nan"), "slowest": "",
                             "training_s": {}})
        if any(p.name == "playground.ipynb" for p in paths):
            try:
                rows.append(playground_all_methods(env))
            except Exception as exc:  # report and go on
                status = 1
                rows.append({"notebook": "(direct)", "panel": f"FAILED: {exc}"[:200], "changes": 0,
                             "median_ms": float("nan"), "max_ms": float("nan"), "slowest": "", "training_s": {}})
        results["panels"] = rows
        print(f"{'notebook':24s} {'panel':34s} {'changes':>7s} {'median ms':>9s} {'max ms':>8s}  slowest control")
        for r in rows:
            over = r["median_ms"] == r["median_ms"] and r["median_ms"] >= LATENCY_TARGET_MS  # (NaN: no change measured)
            flag = "  OVER 200 ms" if over else ""
            print(f"{r['notebook']:24s} {r['panel']:34s} {r['changes']:7d} {r['median_ms']:9.1f} {r['max_ms']:8.1f}  "
                  f"{r['slowest']}{flag}")
            if r["training_s"]:
                print(f"{'':24s}   training controls (one new choice each): "
                      + ", ".join(f"{k} {v:.1f} s" for k, v in r["training_s"].items()))

    # 3. the PID solver (issue target: a 10 x 10 x 10 distribution in well under a second)
    print("\n## pid on a 10 x 10 x 10 distribution (5 random tables, fresh process)", flush=True)
    results["pid"] = pid_timing(env)
    print(f"median {results['pid']['median_s']:.3f} s, max {results['pid']['max_s']:.3f} s "
          f"(first import of cvxpy {results['pid']['cvxpy_import_s']:.2f} s)")

    # 4. imports
    print("\n## import time (median of 5 fresh interpreters)", flush=True)
    results["imports"] = import_times()
    for name, seconds in results["imports"].items():
        print(f"import {name:20s} {seconds:6.2f} s")

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(results))
    return status


def to_markdown(results: dict) -> str:
    lines = [f"Measured {results['machine']}.", ""]
    if results.get("notebooks"):
        lines += ["| notebook | wall time | peak memory | status |", "|---|---:|---:|---|"]
        for r in results["notebooks"]:
            lines.append(f"| {r['notebook']} | {r['wall_s']:.1f} s | {r['peak_mb']:.0f} MB | "
                         f"{'ok' if not r['error'] else 'FAILED: ' + r['error']} |")
        lines.append("")
    if results.get("panels"):
        lines += ["| notebook | panel | control changes | median | max | slowest control (median) |",
                  "|---|---|---:|---:|---:|---|"]
        for r in results["panels"]:
            lines.append(f"| {r['notebook']} | {r['panel']} | {r['changes']} | {r['median_ms']:.1f} ms | "
                         f"{r['max_ms']:.1f} ms | {r['slowest']} |")
            if r["training_s"]:
                lines.append("| | training controls | | | | " + ", ".join(
                    f"{k}: {v:.1f} s" for k, v in r["training_s"].items()) + " |")
        lines.append("")
    if results.get("imports"):
        lines += ["| import | time |", "|---|---:|"]
        lines += [f"| `import {k}` | {v:.2f} s |" for k, v in results["imports"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
