"""Drive JupyterLab and Voila in headless Chromium and report what a user would see.

Used by the browser tests in this folder (and usable by hand: ``python tests/ui/harness.py NOTEBOOK``).
What worked and what hung on this kind of machine is in the project's platform notes; this module follows them:

- Debian's ``/usr/bin/chromium`` driven by the Python ``playwright`` package (never ``playwright install``),
  with the flags in :data:`CHROMIUM_FLAGS` and a fresh user-data directory;
- servers on 127.0.0.1, a free port, no token, ``--allow-root`` when root (JupyterLab; Voila has no such
  flag), ready when ``/api/status`` answers (Lab) or the log says so (Voila, whose ``/`` would run the
  notebook), and always stopped (SIGTERM then SIGKILL to their whole process group, kernels included);
- the browser page watches the kernel websocket: a traceback sent outside any cell (a widget callback that
  raised) is reported, since it appears in no cell output;
- notebooks are copied to a temporary folder first (JupyterLab autosaves open notebooks);
- JupyterLab's notebook windowing is off (``windowingMode: "none"``) so that off-screen cells render;
- "Run All" (``runmenu:run-all``) only once the kernel reports idle.

Every wait has a bound; a timeout raises :class:`UITimeout` with what was being waited for.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: the window of the review: 1280 x 900 with JupyterLab's file browser open leaves about 880-910 px for outputs
VIEWPORT = {"width": 1280, "height": 900}
#: a plot may pass its output area's right edge by this much (sub-pixel rounding) before it counts as cut off
OVERFLOW_TOLERANCE_PX = 2

#: controls the checker knows how to move, in the order it tries them
CONTROL_SELECTOR = ".widget-slider, .widget-checkbox, .widget-dropdown, .widget-toggle-buttons"


class UITimeout(RuntimeError):
    """A bounded wait ran out."""


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here, or ``None`` if they can."""
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium, or `make system-deps` as root)"
    try:
        import playwright.sync_api
    except ImportError:
        return "the Python package playwright is not installed (pip install -e '.[test]')"
    for tool in ("jupyter-lab", "voila"):
        if shutil.which(tool, path=str(Path(sys.executable).parent)) is None:
            return f"{tool} is not installed next to {sys.executable} (pip install -e '.[test]')"
    return None


def course_notebooks() -> list[Path]:
    """Every notebook of the course (``notebooks/*.ipynb``): a new notebook is covered automatically."""
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------- servers
@dataclass
class Server:
    """A Jupyter server process in its own process group, with its log file."""

    name: str
    url: str
    process: subprocess.Popen
    log: Path

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and every kernel it started (SIGTERM to the group, then SIGKILL)."""
        if self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _root_flags() -> list[str]:
    return ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float, log_marker: str | None = None) -> None:
    """Wait until ``url`` answers 200 (or, with ``log_marker``, until the log says it and the port answers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}:\n"
                               + log.read_text(errors="replace")[-3000:])
        if log_marker is not None:
            if log_marker in log.read_text(errors="replace"):
                return
        else:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
        time.sleep(0.3)
    raise UITimeout(f"no answer from {url} within {timeout:.0f} s:\n" + log.read_text(errors="replace")[-3000:])


def _spawn(name: str, cmd: list[str], workdir: Path, env: dict, ready_url: str, base_url: str,
           timeout: float, log_marker: str | None = None) -> Server:
    log = workdir / f"{name}.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=workdir,
                                start_new_session=True)
    server = Server(name, base_url, proc, log)
    try:
        _wait_http(ready_url, proc, log, timeout, log_marker)
    except BaseException:
        server.stop()
        raise
    return server


def _server_env(workdir: Path) -> dict:
    env = dict(os.environ)
    env.update(
        JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
        JUPYTER_CONFIG_DIR=str(workdir / "config"),  # none of the user's own Jupyter configuration
        JUPYTER_PLATFORM_DIRS="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def lab_settings(settings_dir: Path) -> None:
    """User settings for the test server: no notebook windowing, no news or update checks (offline)."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                            "checkForUpdates": False},
        "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    }
    for rel, value in files.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def start_lab(root_dir: Path, workdir: Path, timeout: float = 90.0) -> Server:
    """JupyterLab on 127.0.0.1, a free port, no token, the app exposed as ``window.jupyterapp``."""
    port = free_port()
    lab_settings(workdir / "lab-user-settings")
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root_dir}",
        f"--LabApp.user_settings_dir={workdir / 'lab-user-settings'}",
        f"--LabApp.workspaces_dir={workdir / 'lab-workspaces'}",
        "--LabApp.expose_app_in_browser=True", "--ServerApp.disable_check_xsrf=True",
        "--ServerApp.jpserver_extensions={'jupyter_lsp': False}",
        *_root_flags(),
    ]
    base = f"http://127.0.0.1:{port}"
    return _spawn("lab", cmd, workdir, _server_env(workdir), f"{base}/api/status", base, timeout)


def start_voila(notebook: Path, workdir: Path, timeout: float = 90.0) -> Server:
    """Voila serving one notebook on 127.0.0.1, a free port, no token, tracebacks shown in the page."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "voila", str(notebook), "--no-browser", "--Voila.ip=127.0.0.1", f"--port={port}",
        "--Voila.token=", "--show_tracebacks=True",  # (Voila has no --allow-root: it runs as root as is)
    ]
    base = f"http://127.0.0.1:{port}"
    # the repository's voila.json (it hides the cells tagged notebook-only): Voila reads it from its working
    # directory, which is the repository root for `voila notebooks/playground.ipynb` and on Binder
    if (ROOT / "voila.json").exists():
        shutil.copy(ROOT / "voila.json", workdir / "voila.json")
    # "/" executes the notebook, so readiness is read from the log instead of polling a page
    return _spawn("voila", cmd, workdir, _server_env(workdir), base, base, timeout, log_marker="is running at")


def copy_notebooks(paths, dest: Path) -> list[Path]:
    """Copy notebooks into ``dest`` (the server's root), so autosave never touches the originals."""
    dest.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, dest / Path(p).name)) for p in paths]


def launch_browser(playwright, user_data_dir: Path):
    """Headless Debian Chromium with a fresh profile; returns a persistent browser context."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True, viewport=VIEWPORT,
        timeout=60_000,
    )


# --------------------------------------------------------------------------------------------- page checks
@dataclass
class ControlMove:
    kind: str           # slider, checkbox, dropdown, toggle-buttons
    label: str          # the control's description
    changed: bool       # did the panel's figure change?
    detail: str = ""


@dataclass
class PanelReport:
    index: int
    controls: int
    figures: int
    moves: list[ControlMove] = field(default_factory=list)

    @property
    def responds(self) -> bool:
        return any(m.changed for m in self.moves)


@dataclass
class PageReport:
    """What a user sees on one page; :meth:`problems` lists every fault found."""

    name: str
    errors: list[str] = field(default_factory=list)            # error outputs (cells or widget Output areas)
    figures: int = 0                                           # plotly figures found
    blank_figures: list[str] = field(default_factory=list)     # figures with no drawn trace
    overflowing: list[str] = field(default_factory=list)       # figures wider than their output area (cut off)
    undrawn_outputs: list[str] = field(default_factory=list)   # plotly outputs without a drawn plot
    widget_errors: list[str] = field(default_factory=list)     # widgets that failed to render
    panels: list[PanelReport] = field(default_factory=list)
    kernel_errors: list[str] = field(default_factory=list)     # tracebacks the kernel sent outside any cell
    warnings: list[str] = field(default_factory=list)          # stderr warnings in cells (shown, not failed)
    unexecuted: int = 0                                        # code cells that never ran
    screenshot: str | None = None                              # the page
    screenshots: list[str] = field(default_factory=list)       # one per output with a figure or widget
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)                # open / run / panels, seconds
    text: str = ""                                             # the page's visible text (Voila: what the app shows)
    output_width: int = 0                                      # width of the widest output area, px
    console_errors: list[str] = field(default_factory=list)    # browser console errors (printed, for diagnosis)

    def problems(self) -> list[str]:
        out = [f"error output: {e}" for e in self.errors]
        out += [f"figure not drawn: {f}" for f in self.undrawn_outputs]
        out += [f"blank figure (no trace drawn): {f}" for f in self.blank_figures]
        out += [f"figure extends past its output area (cut off): {f}" for f in self.overflowing]
        out += [f"widget failed to render: {w}" for w in self.widget_errors]
        out += [f"kernel error outside a cell: {k}" for k in self.kernel_errors]
        if self.unexecuted:
            out.append(f"{self.unexecuted} code cell(s) did not run")
        for p in self.panels:
            if not p.responds:
                tried = "; ".join(f"{m.kind} {m.label!r}{' (' + m.detail + ')' if m.detail else ''}"
                                  for m in p.moves) or "no control it could move"
                out.append(f"panel {p.index}: moving its controls did not change its figure (tried: {tried})")
        return out


# JavaScript run in the page ---------------------------------------------------------------------
_JS_FIGURES = r"""
(root) => {
  const scope = root || document;
  const plots = Array.from(scope.querySelectorAll('.js-plotly-plot'));
  const describe = (gd) => {
    const t = gd.layout && gd.layout.title;
    const title = t ? (typeof t === 'string' ? t : (t.text || '')) : '';
    return title || '(untitled)';
  };
  // SVG traces (scatter, bar, ...), heatmap images, WebGL canvases (scattergl)
  const MARKS = 'g.trace, g.hm, .heatmaplayer image, .imagelayer image, .pielayer .slice, .gl-container canvas';
  return plots.map(gd => {
    const valid = Array.isArray(gd.data);
    const traces = (gd._fullData || []).filter(t => t.visible !== false).length;
    const marks = gd.querySelectorAll(MARKS).length;
    return {title: describe(gd), valid, traces, drawn: valid && traces > 0 && marks > 0};
  });
}
"""

_JS_OVERFLOW = r"""
(tolerance) => {
  // every plotly plot (its div and its SVG layers) against the right edge of the output area it sits in:
  // a plot wider than the area is cut off (or needs a horizontal scroll nobody sees)
  const out = [];
  document.querySelectorAll('.js-plotly-plot').forEach(gd => {
    const area = gd.closest('.jp-OutputArea-output') || gd.closest('.jp-Cell-outputArea')
                 || gd.closest('.jp-OutputArea');
    if (!area || area.offsetParent === null) return;
    const limit = area.getBoundingClientRect().right;
    const right = Math.max(gd.getBoundingClientRect().right,
                           ...Array.from(gd.querySelectorAll('.main-svg')).map(e => e.getBoundingClientRect().right));
    if (right > limit + tolerance) {
      const t = gd.layout && gd.layout.title;
      const title = (t ? (typeof t === 'string' ? t : (t.text || '')) : '') || '(untitled)';
      out.push(`${title.slice(0, 80)}: right edge ${Math.round(right)} px, output area ends at ${Math.round(limit)} px `
               + `(${Math.round(right - limit)} px cut off)`);
    }
  });
  return out;
}
"""


def overflowing_figures(page, tolerance: float = OVERFLOW_TOLERANCE_PX) -> list[str]:
    """Plotly plots whose right edge (div or ``.main-svg``) passes their output area's right edge."""
    return page.evaluate(_JS_OVERFLOW, tolerance)


_JS_FIGURE_STATE = r"""
(el) => {
  const gd = el.classList.contains('js-plotly-plot') ? el : el.querySelector('.js-plotly-plot');
  if (!gd) return null;
  const strip = (d) => ({x: d.x, y: d.y, z: d.z, text: d.text, visible: d.visible, name: d.name,
                         marker: d.marker && {color: d.marker.color, size: d.marker.size}});
  const t = gd.layout && gd.layout.title;
  return JSON.stringify({data: (gd.data || []).map(strip), title: t && (t.text || t),
                         annotations: ((gd.layout || {}).annotations || []).map(a => a.text),
                         shapes: ((gd.layout || {}).shapes || []).map(s => [s.x0, s.x1, s.y0, s.y1])});
}
"""


def figure_states(page, panel) -> list[str | None]:
    """Serialized data of every plotly figure inside one panel element (what a redraw changes)."""
    return [page.evaluate(_JS_FIGURE_STATE, gd) for gd in panel.query_selector_all(".js-plotly-plot")]


def find_panels(page, scope_selector: str):
    """Elements that hold at least one movable control and at least one plotly figure: the widget panels.

    ``scope_selector`` picks the candidate containers (JupyterLab: each cell's output; Voila: each output).
    """
    panels = []
    for el in page.query_selector_all(scope_selector):
        if el.query_selector(CONTROL_SELECTOR) and el.query_selector(".js-plotly-plot"):
            panels.append(el)
    return panels


def _label(control) -> str:
    """What the user reads next to a control (its description)."""
    text = control.evaluate("""e => {
        for (const sel of ['.widget-label-basic', '.widget-label']) {
            const l = e.querySelector(sel);
            if (l && l.offsetParent !== null && l.textContent.replace(/\u200b/g, '').trim()) return l.textContent;
        }
        return e.textContent; }""")
    return " ".join(text.replace("\u200b", "").split())[:40]


def move_control(page, control) -> tuple[str, str]:
    """Move one control the way a user would (mouse click or select); returns (kind, label)."""
    cls = control.get_attribute("class") or ""
    label = _label(control)
    if "widget-slider" in cls:
        track = control.query_selector(".noUi-base, .noUi-target, .slider-container")
        handle = control.query_selector(".noUi-handle")
        box = track.bounding_box() if track else None
        if box is None:
            raise RuntimeError(f"slider {label!r} has no visible track")
        # click at 3/4 of the track, or 1/4 if the handle is already on the right half
        hbox = handle.bounding_box() if handle else None
        frac = 0.25 if hbox and hbox["x"] > box["x"] + box["width"] / 2 else 0.75
        page.mouse.click(box["x"] + frac * box["width"], box["y"] + box["height"] / 2)
        return "slider", label
    if "widget-checkbox" in cls:
        control.query_selector("input").click()
        return "checkbox", label
    if "widget-dropdown" in cls:
        select = control.query_selector("select")
        options = select.eval_on_selector_all("option", "os => os.map(o => o.value)")
        current = select.evaluate("s => s.value")
        other = next((o for o in options if o != current), None)
        if other is None:
            raise RuntimeError(f"dropdown {label!r} has a single option")
        select.select_option(other)
        return "dropdown", label
    if "widget-toggle-buttons" in cls:
        buttons = control.query_selector_all("button")
        other = next((b for b in buttons if "mod-active" not in (b.get_attribute("class") or "")), None)
        if other is None:
            raise RuntimeError(f"toggle buttons {label!r} have a single choice")
        other.click()
        return "toggle-buttons", label
    raise RuntimeError(f"unknown control class {cls!r}")


def panel_controls(panel) -> list:
    """The visible, enabled controls of a panel, in page order."""
    return [c for c in panel.query_selector_all(CONTROL_SELECTOR)
            if c.is_visible() and c.evaluate("e => !e.querySelector('input:disabled, select:disabled, [disabled]')")]


def move_and_wait(page, panel, control, timeout: float = 20.0) -> ControlMove:
    """Move ``control`` and wait (bounded) until a figure of ``panel`` changes; ``changed`` says if it did."""
    before = figure_states(page, panel)
    try:
        control.scroll_into_view_if_needed(timeout=5000)
        kind, label = move_control(page, control)
    except Exception as exc:  # a control that can't be moved is reported, not fatal
        return ControlMove("?", _label(control), False, f"could not move: {exc}")
    t0 = time.monotonic()
    limit = timeout
    while True:
        page.wait_for_timeout(200)
        if figure_states(page, panel) != before:
            return ControlMove(kind, label, True, f"redrawn after {time.monotonic() - t0:.1f} s")
        if time.monotonic() - t0 >= limit:
            if limit == timeout and page.evaluate(_JS_KERNEL_STATUS) == "busy":
                limit = 2 * timeout  # the kernel is still working (on this change, or another): wait once more
                continue
            break
    return ControlMove(kind, label, False, f"no change in {limit:.0f} s; {panel_diagnosis(page, panel)}")


_JS_KERNEL_STATUS = """() => { const app = window.jupyterapp; const w = app && app.shell.currentWidget;
    return w && w.sessionContext ? w.sessionContext.kernelDisplayStatus : null; }"""

_JS_PANEL_DRAWN = r"""(el) => {
  const MARKS = 'g.trace, g.hm, .heatmaplayer image, .imagelayer image, .pielayer .slice, .gl-container canvas';
  const plots = Array.from(el.querySelectorAll('.js-plotly-plot'));
  return plots.map(gd => {
    const r = gd.getBoundingClientRect();
    return {drawn: Array.isArray(gd.data) && (gd._fullData || []).some(t => t.visible !== false)
                   && gd.querySelector(MARKS) !== null,
            width: Math.round(r.width), height: Math.round(r.height)};
  });
}"""


def panel_diagnosis(page, panel) -> str:
    """Why a panel might not have redrawn: its figures' state on the page and the kernel's status."""
    try:
        figs = page.evaluate(_JS_PANEL_DRAWN, panel)
        kernel = page.evaluate(_JS_KERNEL_STATUS)
    except Exception as exc:
        return f"no diagnosis ({exc})"
    shown = ", ".join(f"{'drawn' if f['drawn'] else 'NOT drawn'} {f['width']}x{f['height']}" for f in figs)
    return f"figures: {shown or 'none'}; kernel {kernel or 'n/a'}"


def wait_panel_drawn(page, panel, timeout: float = 15.0) -> bool:
    """Scroll a panel into view and wait (bounded) until each of its figures has drawn a trace."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            panel.scroll_into_view_if_needed(timeout=2000)
        except Exception:
            pass
        figs = page.evaluate(_JS_PANEL_DRAWN, panel)
        if figs and all(f["drawn"] for f in figs):
            return True
        if time.monotonic() > deadline:
            return False
        page.wait_for_timeout(500)


def exercise_panel(page, panel, index: int, *, max_moves: int = 3, timeout: float = 20.0,
                   prefer: str | None = None) -> PanelReport:
    """Move up to ``max_moves`` controls of one panel; after each, wait (bounded) for its figure to change.

    Sliders come first, then checkboxes, dropdowns and toggle buttons; stops at the first control that
    changes the figure. ``prefer`` (a substring of a control's label) puts matching controls first.
    """
    controls = panel_controls(panel)
    order = {"widget-slider": 0, "widget-checkbox": 1, "widget-dropdown": 2, "widget-toggle-buttons": 3}

    def rank(c):
        cls = c.get_attribute("class") or ""
        first = 0 if prefer and prefer in _label(c) else 1
        return first, min((v for k, v in order.items() if k in cls), default=9)

    controls.sort(key=rank)
    report = PanelReport(index, len(controls), len(panel.query_selector_all(".js-plotly-plot")))
    # a figure view may still be rendering (under load): a move made before it draws is compared against
    # an empty state and can be missed, so wait for it first; one that never draws stays a reported problem
    drawn = wait_panel_drawn(page, panel)
    for control in controls[:max_moves]:
        move = move_and_wait(page, panel, control, timeout)
        if not move.changed and not drawn and wait_panel_drawn(page, panel):
            # the figure drew only after the first move: move again once, and say so in the report
            drawn = True
            again = move_and_wait(page, panel, control, timeout)
            move = ControlMove(again.kind, again.label, again.changed,
                               f"second try, after the figure drew late ({move.detail}): {again.detail}")
        report.moves.append(move)
        if move.changed:
            break
    return report


def inspect_figures(page, report: PageReport, root=None) -> None:
    figs = page.evaluate(_JS_FIGURES, root)
    report.figures = len(figs)
    report.undrawn_outputs = [f["title"] + " (its data is not a list of traces)" for f in figs if not f["valid"]]
    report.blank_figures = [f["title"] for f in figs if f["valid"] and not f["drawn"]]


_ANSI = re.compile(r"(\x1b|\\u001b)\[[0-9;]*m")
_ERROR_LINE = re.compile(r"\b([A-Z]\w*(?:Error|Exception|Warning)): ([^\"\\\n]{1,200})")


def _collect_ws_errors(frames: list) -> list[str]:
    """Errors in kernel messages seen by the page: tracebacks sent outside any cell, e.g. by a widget
    callback that raised (they land in the kernel's iopub stream, not in a cell's outputs)."""
    found: list[str] = []
    for payload in frames:
        text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
        if "Traceback" not in text and '"ename"' not in text:
            continue
        text = _ANSI.sub("", text)
        named = re.search(r'"ename":\s*"([^"]+)",\s*"evalue":\s*"([^"]{0,200})"', text)
        hit = f"{named.group(1)}: {named.group(2)}" if named else None
        if hit is None:
            lines = _ERROR_LINE.findall(text)
            hit = f"{lines[-1][0]}: {lines[-1][1]}" if lines else text[:200]
        if hit not in found:
            found.append(hit)
    return found


# --------------------------------------------------------------------------------------------- JupyterLab
_JS_KERNEL_IDLE = """() => {
  const app = window.jupyterapp; if (!app) return false;
  const w = app.shell.currentWidget; if (!w || !w.sessionContext) return false;
  const s = w.sessionContext; return s.isReady && s.session && s.session.kernel
         && s.session.kernel.connectionStatus === 'connected' && s.kernelDisplayStatus === 'idle';
}"""

_JS_RUN_STATE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const cells = w.content.widgets.filter(c => c.model.type === 'code');
  const busy = cells.filter(c => (c.promptNode && c.promptNode.textContent.includes('*'))).length;
  const ran = cells.filter(c => c.model.executionCount !== null).length;
  const errored = cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
  return {cells: cells.length, busy, ran, errored, status: w.sessionContext.kernelDisplayStatus};
}"""

_JS_CELL_ERRORS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const out = [];
  w.content.widgets.forEach((c, i) => {
    if (c.model.type !== 'code') return;
    c.model.outputs.toJSON().forEach(o => {
      if (o.output_type === 'error') out.push(`cell ${i + 1}: ${o.ename}: ${o.evalue}`.slice(0, 300));
    });
  });
  // error outputs inside widget Output areas (e.g. interact callbacks) and widgets that failed to render
  document.querySelectorAll('.jp-OutputArea-output .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"],'
      + ' .widget-output .jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]').forEach(e => {
    const t = e.textContent; if (/Error|Traceback/.test(t)) out.push('widget output: ' + t.trim().slice(0, 300));
  });
  return out;
}"""

_JS_CELL_WARNINGS = r"""() => {
  const w = window.jupyterapp.shell.currentWidget;
  const out = [];
  w.content.widgets.forEach((c, i) => {
    if (c.model.type !== 'code') return;
    c.model.outputs.toJSON().forEach(o => {
      const t = o.output_type === 'stream' && o.name === 'stderr' ? [].concat(o.text).join('') : '';
      if (/Warning|warn/.test(t) && !/%\|/.test(t)) out.push(`cell ${i + 1}: ${t.trim().replace(/\s+/g, ' ').slice(0, 300)}`);
    });
  });
  return out;
}"""

_JS_WIDGET_ERRORS = """() => Array.from(document.querySelectorAll(
    '.jupyter-widgets-error-widget, .jp-RenderedText[data-mime-type="application/vnd.jupyter.widget-view+json"]'))
  .map(e => e.textContent.trim().slice(0, 200))
  .concat(Array.from(document.querySelectorAll('.jp-OutputArea-output')).filter(
     e => /Error displaying widget|Loading widget\\.\\.\\./.test(e.textContent)).map(e => e.textContent.trim().slice(0, 200)))
"""

def run_in_lab(context, server: Server, notebook_name: str, *, run_timeout: float = 300.0,
               artifacts: Path | None = None, exercise: bool = True) -> PageReport:
    """Open a notebook in JupyterLab, run all cells, check outputs, figures and widgets, move every panel.

    With ``artifacts``, saves ``lab-<name>.png`` (the top of the page after the run) and one
    ``lab-<name>-out<k>.png`` per output that holds a figure or a widget, for a person to look at.
    """
    t0 = time.monotonic()
    report = PageReport(notebook_name)
    page = context.new_page()
    page.on("console", lambda m: report.console_errors.append(m.text[:300]) if m.type == "error" else None)
    page.on("pageerror", lambda e: report.console_errors.append(f"page error: {str(e)[:300]}"))
    frames: list = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
    try:
        open_in_lab(page, server, notebook_name)
        report.timings["open"] = time.monotonic() - t0
        _run_all(page, notebook_name)
        deadline = time.monotonic() + run_timeout
        while True:
            state = page.evaluate(_JS_RUN_STATE)
            if state["busy"] == 0 and state["status"] == "idle" and (state["ran"] == state["cells"] or state["errored"]):
                break
            if time.monotonic() > deadline:
                raise UITimeout(f"{notebook_name}: still running after {run_timeout:.0f} s ({state})")
            page.wait_for_timeout(500)
        report.timings["run"] = time.monotonic() - t0 - report.timings["open"]
        report.unexecuted = state["cells"] - state["ran"]
        page.wait_for_timeout(1500)  # let the last figures and widget views draw
        _check_page(page, report, frames)
        if artifacts is not None:  # before the controls move: what a student sees after "Run All"
            report.screenshots += _output_screenshots(page, ".jp-Cell-outputArea", artifacts, f"lab-{Path(notebook_name).stem}")
        t1 = time.monotonic()
        if exercise:
            for i, panel in enumerate(find_panels(page, ".jp-Cell-outputArea"), 1):
                report.panels.append(exercise_panel(page, panel, i))
        report.timings["panels"] = time.monotonic() - t1
        report.errors = page.evaluate(_JS_CELL_ERRORS)
        report.warnings = page.evaluate(_JS_CELL_WARNINGS)
        report.kernel_errors = [e for e in _collect_ws_errors(frames) if not any(e[:60] in r for r in report.errors)]
        if artifacts is not None:
            path = artifacts / f"lab-{Path(notebook_name).stem}.png"
            page.screenshot(path=str(path))
            report.screenshot = str(path)
    finally:
        shutdown_kernel(page)
        page.close()
    report.seconds = time.monotonic() - t0
    return report


def open_in_lab(page, server: Server, notebook_name: str) -> None:
    """Open a notebook (a fresh workspace) in the review's layout and wait (bounded) until its kernel is idle."""
    # ?reset: a fresh workspace, so only this notebook is open (Run All acts on the tracker's notebook)
    page.goto(f"{server.url}/lab/tree/{notebook_name}?reset", timeout=60_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # the layout of the review: the file browser open in the left sidebar (JupyterLab's default), which
    # leaves about 880-910 px for outputs in a 1280 px window
    page.evaluate("""() => { const s = window.jupyterapp.shell;
        if (s.expandLeft) s.expandLeft(); s.activateById('filebrowser'); }""")
    try:  # Run All before the kernel is ready hung once in three (platform notes)
        page.wait_for_function(_JS_KERNEL_IDLE, timeout=90_000, polling=250)
    except Exception as exc:
        raise UITimeout(f"{notebook_name}: kernel not idle after 90 s ({exc}); server log:\n{server.log_tail()}")
    # windowed rendering leaves off-screen cells unrendered (their figures blank): the settings turn it off;
    # make sure they were read, or every check below the first screen would be a gamble
    mode = page.evaluate("""() => { const c = window.jupyterapp.shell.currentWidget.content;
        return c.notebookConfig ? c.notebookConfig.windowingMode : null; }""")
    if mode not in (None, "none"):
        raise RuntimeError(f"{notebook_name}: notebook windowingMode is {mode!r}, not 'none' (lab_settings not read?)")


def shutdown_kernel(page, timeout_ms: int = 15_000) -> None:
    """Shut down the open notebook's kernel and session and wait (bounded) for it, so no kernel of an earlier
    test (a training thread, memory) competes with the next notebook for the machine."""
    try:
        page.evaluate("""async (ms) => {
            const app = window.jupyterapp; const w = app && app.shell.currentWidget;
            if (!w || !w.sessionContext) return;
            await Promise.race([w.sessionContext.shutdown(), new Promise(r => setTimeout(r, ms))]);
        }""", timeout_ms)
    except Exception:  # the page or kernel may already be gone: nothing left to stop
        pass


# ---------------------------------------------------------------------- the decision surface while training
@dataclass
class SurfaceSample:
    t: float            # seconds since Train was clicked
    title: str          # the figure's title ("late on XOR: step 125, loss ...")
    step: int | None    # the step count read from the title
    surface: int        # a hash of the heatmap's z (the decision surface drawn)
    button: str         # the toggle's text: "Train" or "Pause"
    active: bool        # the toggle is pressed (training)


@dataclass
class SurfaceReport:
    """What :func:`check_surface_training` saw: samples while training, and the state after a new dataset."""

    name: str
    before: SurfaceSample | None = None
    samples: list[SurfaceSample] = field(default_factory=list)   # while the toggle was pressed
    after_reset: list[SurfaceSample] = field(default_factory=list)  # after the dataset changed
    errors: list[str] = field(default_factory=list)
    kernel_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)

    @property
    def changes_while_training(self) -> int:
        """Redraws seen between two samples both taken while the toggle was pressed (not the final redraw)."""
        pairs = zip([self.before, *self.samples], self.samples)
        return sum(1 for a, b in pairs if a is not None and a.active and b.active
                   and (a.surface, a.title) != (b.surface, b.title))


_JS_SURFACE_SAMPLE = r"""(el) => {
  const gd = el.querySelector('.js-plotly-plot');
  const b = el.querySelector('.widget-toggle-button');
  const t = gd && gd.layout && gd.layout.title;
  const title = t ? (typeof t === 'string' ? t : (t.text || '')) : '';
  const z = gd && Array.isArray(gd.data) && gd.data[0] ? JSON.stringify(gd.data[0].z) : '';
  let h = 0; for (let i = 0; i < z.length; i++) h = (Math.imul(h, 31) + z.charCodeAt(i)) | 0;
  return {title, surface: h, button: b ? b.textContent.trim() : '',
          active: b ? b.classList.contains('mod-active') : false};
}"""

_JS_RUN_UP_TO = """(needle) => {
  // mark the first code cell whose source contains `needle`, then run every cell from the top down to it
  const app = window.jupyterapp, w = app.shell.currentWidget, nb = w.content;
  const k = nb.widgets.findIndex(c => c.model.type === 'code' && c.model.sharedModel.getSource().includes(needle));
  if (k < 0) return -1;
  nb.widgets[k].node.setAttribute('data-mmlearn-cell', 'target');
  app.shell.activateById(w.id);
  nb.activeCellIndex = 0; nb.deselectAll(); nb.extendContiguousSelectionTo(k);
  app.commands.execute('notebook:run-cell');  // runs the selected cells; not awaited (watched below)
  return k;
}"""

_JS_RAN_UP_TO = """(k) => {
  const w = window.jupyterapp.shell.currentWidget;
  const cells = w.content.widgets.slice(0, k + 1).filter(c => c.model.type === 'code');
  const errors = [];
  cells.forEach(c => c.model.outputs.toJSON().forEach(o => {
    if (o.output_type === 'error') errors.push(`${o.ename}: ${o.evalue}`.slice(0, 300)); }));
  const done = cells.every(c => c.model.executionCount !== null)
               && w.sessionContext.kernelDisplayStatus === 'idle';
  return {done, errors, ran: cells.filter(c => c.model.executionCount !== null).length, cells: cells.length};
}"""


def _surface_sample(page, panel, t0: float) -> SurfaceSample:
    d = page.evaluate(_JS_SURFACE_SAMPLE, panel)
    m = re.search(r"step (\d+)", d["title"])
    return SurfaceSample(round(time.monotonic() - t0, 2), d["title"], int(m.group(1)) if m else None,
                         d["surface"], d["button"], d["active"])


def check_surface_training(context, server: Server, notebook_name: str, *, needle: str = "SurfacePanel(",
                           run_timeout: float = 240.0, train_seconds: float = 30.0, changes: int = 3,
                           dataset: str = "and", artifacts: Path | None = None) -> SurfaceReport:
    """The decision-surface panel in JupyterLab: the surface and its title change *while* it trains.

    Runs the notebook's cells from the top down to the first one whose source contains ``needle`` (the
    panel), clicks the Train toggle, samples the figure's heatmap (``data[0].z``) and title every ~0.3 s
    until ``changes`` redraws were seen with the toggle pressed (or ``train_seconds`` passed), then selects
    ``dataset`` in the panel's "data" dropdown (while it trains) and samples until the title shows step 0
    and the toggle reads "Train" again, then 2 s more (the run must have stopped, not restarted).
    """
    t_start = time.monotonic()
    report = SurfaceReport(notebook_name)
    page = context.new_page()
    frames: list = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
    try:
        open_in_lab(page, server, notebook_name)
        k = page.evaluate(_JS_RUN_UP_TO, needle)
        if k < 0:
            raise RuntimeError(f"{notebook_name}: no code cell contains {needle!r}")
        deadline = time.monotonic() + run_timeout
        while not (state := page.evaluate(_JS_RAN_UP_TO, k))["done"] and not state["errors"]:
            if time.monotonic() > deadline:
                raise UITimeout(f"{notebook_name}: cells 1-{k + 1} still running after {run_timeout:.0f} s ({state})")
            page.wait_for_timeout(500)
        report.timings["run"] = time.monotonic() - t_start
        report.errors = state["errors"]
        if report.errors:
            return report
        panel = page.wait_for_selector("[data-mmlearn-cell=target] .jp-Cell-outputArea", timeout=30_000)
        page.wait_for_selector("[data-mmlearn-cell=target] .widget-toggle-button", timeout=30_000)
        if not wait_panel_drawn(page, panel, timeout=30.0):
            report.errors.append(f"the surface figure did not draw ({panel_diagnosis(page, panel)})")
            return report
        t0 = time.monotonic()
        report.before = _surface_sample(page, panel, t0)
        panel.query_selector(".widget-toggle-button").click()
        # sample while it trains, until enough redraws were seen with the toggle pressed
        while time.monotonic() - t0 < train_seconds and report.changes_while_training < changes:
            page.wait_for_timeout(300)
            sample = _surface_sample(page, panel, t0)
            if not sample.active and report.samples and report.samples[-1].active:
                report.samples.append(sample)  # the run ended by itself (max_steps): nothing more to see
                break
            report.samples.append(sample)
        report.timings["train"] = time.monotonic() - t0
        if artifacts is not None:
            artifacts.mkdir(parents=True, exist_ok=True)
            panel.screenshot(path=str(artifacts / f"lab-{Path(notebook_name).stem}-training.png"), timeout=20_000)
        # a new dataset: the run stops, the toggle reads "Train", a fresh model (step 0) is drawn
        data = next((c for c in panel.query_selector_all(".widget-dropdown") if _label(c) == "data"), None)
        if data is None:
            report.errors.append("the panel has no dropdown labelled 'data'")
            return report
        t1 = time.monotonic()
        data.query_selector("select").select_option(dataset)
        while time.monotonic() - t1 < 30:
            page.wait_for_timeout(300)
            report.after_reset.append(_surface_sample(page, panel, t0))
            last = report.after_reset[-1]
            if last.step == 0 and last.button == "Train" and not last.active:
                break
        page.wait_for_timeout(2000)  # had the run gone on, the step count would have moved by now
        report.after_reset.append(_surface_sample(page, panel, t0))
        report.timings["reset"] = time.monotonic() - t1
        report.kernel_errors = _collect_ws_errors(frames)
    finally:
        shutdown_kernel(page)
        page.close()
        report.seconds = time.monotonic() - t_start
    return report


def _run_all(page, notebook_name: str, attempts: int = 2) -> None:
    """``runmenu:run-all`` on the open notebook; check that a cell started, else try once more."""
    for _ in range(attempts):
        page.evaluate("""async () => {
            const app = window.jupyterapp, w = app.shell.currentWidget;
            app.shell.activateById(w.id);
            await app.commands.execute('runmenu:run-all');
        }""")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            state = page.evaluate(_JS_RUN_STATE)
            if state["busy"] or state["ran"]:
                return
            page.wait_for_timeout(250)
    raise UITimeout(f"{notebook_name}: Run All started no cell within 20 s, {attempts} attempts ({state})")


_JS_UNSETTLED = r"""() => {
  // plotly figures with nothing drawn yet and widget views still loading; marks them for scrolling into view
  const MARKS = 'g.trace, g.hm, .heatmaplayer image, .imagelayer image, .pielayer .slice, .gl-container canvas';
  document.querySelectorAll('[data-mmlearn-unsettled]').forEach(e => e.removeAttribute('data-mmlearn-unsettled'));
  const blank = Array.from(document.querySelectorAll('.js-plotly-plot')).filter(gd =>
      !(Array.isArray(gd.data) && (gd._fullData || []).some(t => t.visible !== false) && gd.querySelector(MARKS)));
  const loading = Array.from(document.querySelectorAll('.jp-OutputArea-output')).filter(e =>
      !e.querySelector('.jp-OutputArea-output') && /Loading widget\.\.\./.test(e.textContent));
  const all = blank.concat(loading);
  all.forEach(e => e.setAttribute('data-mmlearn-unsettled', '1'));
  return all.length;
}"""


def settle_outputs(page, timeout: float = 30.0) -> int:
    """Wait (bounded) until every plotly figure has drawn a trace and no widget view says "Loading widget...",
    scrolling each one that has not into view (a view can render late under load, or only once visible).

    Returns how many are still unsettled at the end; the checks that follow report them, so a figure that
    really is blank or undrawable (the broken fixture) is still reported, only ``timeout`` seconds later.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = page.evaluate(_JS_UNSETTLED)
        if not left or time.monotonic() > deadline:
            return left
        for el in page.query_selector_all("[data-mmlearn-unsettled]")[:20]:
            try:
                el.scroll_into_view_if_needed(timeout=2000)
            except Exception:
                pass
        page.wait_for_timeout(1000)


def _check_page(page, report: PageReport, frames) -> None:
    t0 = time.monotonic()
    settle_outputs(page)
    report.timings["settle"] = time.monotonic() - t0  # seconds waited for figures and widget views to draw
    inspect_figures(page, report)
    report.widget_errors = page.evaluate(_JS_WIDGET_ERRORS)
    report.overflowing = overflowing_figures(page)
    report.output_width = page.evaluate("""() => Math.round(Math.max(0, ...Array.from(
        document.querySelectorAll('.jp-OutputArea-output')).map(e => e.getBoundingClientRect().width)))""")


def page_screenshot(page, path: Path, max_height: int = 8000) -> str:
    """The whole page from the top: Voila and Lab scroll inside an element, so grow the viewport to fit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("""() => Math.max(document.body.scrollHeight,
        ...Array.from(document.querySelectorAll('*')).filter(e => e.scrollHeight > e.clientHeight + 5
              && /(auto|scroll)/.test(getComputedStyle(e).overflowY)).map(e => e.scrollHeight))""")
    page.evaluate("""() => { window.scrollTo(0, 0); document.querySelectorAll('*').forEach(e => {
        if (e.scrollTop) e.scrollTop = 0; }); }""")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], min(int(height) + 40, max_height))})
    page.wait_for_timeout(1500)  # plotly relayouts on resize
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(VIEWPORT)
    return str(path)


def _output_screenshots(page, selector: str, folder: Path, stem: str) -> list[str]:
    """One PNG per output element that holds a plotly figure or a widget (element screenshots scroll to it)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    k = 0
    for el in page.query_selector_all(selector):
        if not el.query_selector(".js-plotly-plot, .jupyter-widgets, .widget-box"):
            continue
        k += 1
        path = folder / f"{stem}-out{k:02d}.png"
        try:
            el.scroll_into_view_if_needed(timeout=5000)
            page.wait_for_timeout(300)
            el.screenshot(path=str(path), timeout=20_000)
            paths.append(str(path))
        except Exception as exc:  # a screenshot is evidence, not a check: note and go on
            print(f"screenshot {path.name} failed: {exc}", file=sys.stderr)
    return paths


# --------------------------------------------------------------------------------------------- Voila
def run_in_voila(context, server: Server, *, load_timeout: float = 300.0, artifacts: Path | None = None,
                 prefer: str | None = None, name: str = "voila", max_moves: int = 4,
                 extra_moves: tuple[str, ...] = ()) -> PageReport:
    """Load the Voila page (it runs the notebook), check it like :func:`run_in_lab`, move every panel.

    ``extra_moves``: labels (substrings) of more controls to move in the first panel, each checked for a
    redraw. With ``artifacts``: ``voila-<name>.png`` (the whole page after the controls moved) and
    per-output PNGs (before).
    """
    t0 = time.monotonic()
    report = PageReport(name)
    page = context.new_page()
    frames: list = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
    try:
        page.goto(server.url, timeout=int(load_timeout * 1000), wait_until="domcontentloaded")
        # Voila 0.5 streams cells as they run and says so in the page; wait until it is done
        page.wait_for_function("""() => {
            const body = document.body ? document.body.innerText : '';
            return document.querySelector('.jp-OutputArea-output') !== null
                   && !/Executing|Reading notebook|Loading/i.test(body.slice(0, 2000))
                   && document.querySelectorAll('.js-plotly-plot').length > 0;
        }""", timeout=int(load_timeout * 1000), polling=500)
        report.timings["run"] = time.monotonic() - t0
        page.wait_for_timeout(2000)
        _check_page(page, report, frames)
        stem = f"voila-{Path(name).stem}"
        if artifacts is not None:
            report.screenshots += _output_screenshots(page, ".jp-OutputArea-output", artifacts, stem)
        report.text = page.evaluate("() => document.body ? document.body.innerText : ''")
        report.errors = page.evaluate("""() => Array.from(document.querySelectorAll(
              '.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"], .jp-OutputArea-output pre'))
            .map(e => e.textContent).filter(t => /Traceback|Error:|Exception/.test(t)).map(t => t.trim().slice(0, 300))""")
        t1 = time.monotonic()
        panels = find_panels(page, ".jp-OutputArea-output")
        for i, panel in enumerate(panels, 1):
            report.panels.append(exercise_panel(page, panel, i, prefer=prefer, max_moves=max_moves))
        for label in extra_moves if panels else ():
            control = next((c for c in panel_controls(panels[0]) if label in _label(c)), None)
            if control is None:
                report.panels[0].moves.append(ControlMove("?", label, False, "no such control"))
            else:
                report.panels[0].moves.append(move_and_wait(page, panels[0], control, timeout=60))
        report.timings["panels"] = time.monotonic() - t1
        report.kernel_errors = _collect_ws_errors(frames)
        if artifacts is not None:
            report.screenshot = page_screenshot(page, artifacts / f"{stem}.png")
    finally:
        page.close()
    report.seconds = time.monotonic() - t0
    return report


# --------------------------------------------------------------------------------------------- by hand
def main(argv=None) -> int:
    """``python tests/ui/harness.py NOTEBOOK... [--out DIR] [--voila | --surface]``: run notebooks in JupyterLab
    (or Voila) and print the reports."""
    import argparse

    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--out", default="test-artifacts/ui", help="where screenshots go")
    parser.add_argument("--voila", action="store_true", help="serve each notebook with Voila instead")
    parser.add_argument("--surface", action="store_true",
                        help="run each notebook down to its SurfacePanel, train it and print what the figure showed")
    args = parser.parse_args(argv)
    why = missing_requirements()
    if why:
        print("cannot run:", why)
        return 2
    out = Path(args.out)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="mmlearn-ui-") as tmp:
        tmp = Path(tmp)
        copies = copy_notebooks(args.notebooks, tmp / "notebooks")
        with sync_playwright() as p:
            context = launch_browser(p, tmp / "chromium-profile")
            try:
                if args.voila:
                    for nb in copies:
                        server = start_voila(nb, tmp)
                        try:
                            r = run_in_voila(context, server, artifacts=out, name=nb.name)
                        finally:
                            server.stop()
                        bad += _print(r)
                else:
                    server = start_lab(tmp / "notebooks", tmp)
                    try:
                        for nb in copies:
                            if args.surface:
                                r = check_surface_training(context, server, nb.name, artifacts=out)
                                times = {k: round(v, 1) for k, v in r.timings.items()}
                                print(f"{r.name}: {r.seconds:.0f} s {times}, {r.changes_while_training} redraws "
                                      f"while training, errors {r.errors + r.kernel_errors}")
                                for sample in [r.before, *r.samples, *r.after_reset]:
                                    print("  ", sample)
                                bad += bool(r.errors or r.kernel_errors or r.changes_while_training < 2)
                            else:
                                bad += _print(run_in_lab(context, server, nb.name, artifacts=out))
                    finally:
                        server.stop()
            finally:
                context.close()
    return 1 if bad else 0


def _print(r: PageReport) -> int:
    print(f"{r.name}: {r.figures} figures, {len(r.panels)} panels "
          f"({', '.join(f'{m.kind} {m.label!r} changed={m.changed}' for p in r.panels for m in p.moves)}), "
          f"{r.seconds:.0f} s {({k: round(v) for k, v in r.timings.items()})}, output area {r.output_width} px, "
          f"screenshot {r.screenshot}, "
          f"{len(r.screenshots)} output screenshots")
    for p in r.problems():
        print("   PROBLEM:", p)
    for w in r.warnings:
        print("   warning shown:", w)
    for e in r.console_errors:
        print("   browser console:", e)
    return bool(r.problems())


if __name__ == "__main__":
    sys.exit(main())
