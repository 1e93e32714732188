"""Every notebook in a real browser: run all cells in JupyterLab, then look at what a student would see.

For each notebook: no cell shows an error, every plotly figure drew its traces, every widget rendered,
and in every panel (controls + figure) moving a control changes the figure. The playground is also served
by Voila, with more of its controls moved and a screenshot kept in test-artifacts/ui/. A deliberately
broken notebook (tests/ui/fixtures/broken.ipynb) proves the checker sees what nbmake cannot.
"""

from __future__ import annotations

import shutil
import warnings

import harness
import pytest
from harness import ROOT, course_notebooks

pytestmark = [pytest.mark.ui, pytest.mark.slow]


@pytest.mark.timeout(300)
def test_checker_reports_every_fault_of_the_broken_notebook(browser, lab, artifacts):
    report = harness.run_in_lab(browser, lab, "broken.ipynb", artifacts=artifacts / "fixture")
    problems = report.problems()
    # nbmake passes this notebook (no cell errors) ...
    assert report.errors == [] and report.unexecuted == 0, problems
    # ... yet the checker reports the raising callback twice over: the traceback the kernel sent, and a
    # panel whose figure does not follow its slider,
    assert report.kernel_errors == ["RuntimeError: deliberate failure in a widget callback"], problems
    assert [p.responds for p in report.panels] == [True, False], problems
    assert any("panel 2: moving its controls did not change its figure" in p and "'broken'" in p for p in problems)
    # the figure that cannot be drawn, and the blank one
    assert len(report.undrawn_outputs) == 1, problems
    assert report.blank_figures == ["blank figure"], problems
    # the figure wider than its output area (1600 px against about 880-910 px): cut off, and only that one
    assert [f.split(":")[0] for f in report.overflowing] == ["too wide figure"], problems
    assert 800 < report.output_width < 950, report.output_width  # the review's layout: 1280 px, file browser open
    # and nothing about the healthy panel
    assert report.figures == 5 and not any("healthy" in p for p in problems), problems
    assert len(problems) == 5, problems


@pytest.mark.timeout(600)
@pytest.mark.parametrize("notebook", [p.name for p in course_notebooks()])
def test_notebook_in_jupyterlab(browser, lab, artifacts, notebook):
    report = harness.run_in_lab(browser, lab, notebook, artifacts=artifacts)
    for shown in report.warnings:  # visible to students, worth fixing, but not an error
        warnings.warn(f"{notebook} shows a warning: {shown}", stacklevel=1)
    assert report.problems() == [], f"{notebook}: {report.problems()} (screenshots in {artifacts})"
    assert report.figures > 0, f"{notebook} shows no figure"
    assert report.panels, f"{notebook} has no widget panel (controls + figure)"
    assert all(p.responds for p in report.panels)


@pytest.mark.timeout(420)
def test_surface_changes_while_training_in_jupyterlab(browser, lab, ui_tmp, artifacts):
    """Notebook 03's decision-surface panel: Train redraws the surface as it trains; a new dataset stops it."""
    # a copy (of the module's snapshot) under another name: its own kernel and session
    shutil.copy(ui_tmp / "notebooks" / "03_fusion.ipynb", ui_tmp / "notebooks" / "surface-03_fusion.ipynb")
    report = harness.check_surface_training(browser, lab, "surface-03_fusion.ipynb", artifacts=artifacts)
    seen = [(s.t, s.step, s.button, s.surface) for s in report.samples]
    print(f"surface: {report.seconds:.0f} s {report.timings}; before {report.before}; while training {seen}; "
          f"after the new dataset {[(s.t, s.title, s.button) for s in report.after_reset]}")
    assert report.errors == [] and report.kernel_errors == [], (report.errors, report.kernel_errors)
    assert report.before is not None and report.before.button == "Train" and not report.before.active
    # the surface and its title were redrawn at least twice while the toggle was pressed (not only at the end)
    assert report.changes_while_training >= 2, seen
    training = [s for s in report.samples if s.active]
    assert training and all(s.button == "Pause" for s in training), seen
    steps = [s.step for s in training if s.step is not None]
    assert len(set(steps)) >= 2 and steps == sorted(steps), seen
    assert len({s.surface for s in training}) >= 2, seen
    # a new dataset stopped the run: the toggle reads "Train", a fresh model at step 0, and it stays there
    after = [(s.t, s.title, s.button, s.active) for s in report.after_reset]
    final, held = report.after_reset[-2:]
    assert final.step == 0 and final.button == "Train" and not final.active, after
    assert "AND" in final.title, after
    assert (held.step, held.surface, held.button, held.active) == (0, final.surface, "Train", False), after


@pytest.mark.timeout(600)
def test_playground_in_voila(browser, ui_tmp, artifacts):
    (copy,) = harness.copy_notebooks([ROOT / "notebooks" / "playground.ipynb"], ui_tmp / "voila")
    server = harness.start_voila(copy, ui_tmp / "voila")
    try:
        report = harness.run_in_voila(browser, server, name="playground.ipynb", artifacts=artifacts,
                                      prefer="x1 noise", extra_moves=("x2 missing", "curve", "low_rank"))
    finally:
        server.stop()
    assert report.problems() == [], report.problems()
    # one panel, and every figure of the page is in it (its plot and the interaction meter beside the sliders)
    assert len(report.panels) == 1 and report.figures == report.panels[0].figures >= 1, report.panels
    # the app shows the panel and its explanations, not the notebook-only cells (voila.json drops the cells
    # tagged notebook-only): no note about Voila itself, no check cell's output, no exercises needing code
    for notebook_only in ("standalone app", "plain functions you can call", "Exercises", "'late':", "pid_from_samples"):
        assert notebook_only not in report.text, notebook_only
    assert "Things to try" in report.text and "Noise is worse than absence" in report.text
    moves = {m.label: m for m in report.panels[0].moves}
    # an evaluation control, a missing-rate control, the curve choice, and a method that must be trained
    for label in ("x1 noise", "x2 missing", "curve", "low_rank"):
        assert any(label in k and m.changed for k, m in moves.items()), moves
    assert report.screenshot and (artifacts / "voila-playground.png").stat().st_size > 10_000
