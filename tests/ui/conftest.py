"""Fixtures of the browser tests: one headless Chromium and one JupyterLab server per module, always stopped.

The tests are skipped with the reason when Chromium or playwright is missing (``harness.missing_requirements``),
unless ``MMLEARN_REQUIRE_UI=1``, which turns the skip into a failure (for CI, where they must run).

Time: each test has its own timeout, and the browser tests together have a budget (``MMLEARN_UI_BUDGET_S``,
default 1800 s): once it is spent, every further browser test fails at once with the reason, so a hanging or
very slow machine costs at most the budget plus one test's timeout (30 + 10 min). The whole suite took about 7.5 min
(13 tests) on a shared 2-core machine.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import harness

# the broken notebook is a fixture for the checker, not a notebook for nbmake to run
collect_ignore_glob = ["fixtures/*"]

FIXTURES = Path(__file__).parent / "fixtures"
ARTIFACTS = harness.ROOT / "test-artifacts" / "ui"


#: seconds all browser tests together may take before the rest fail fast (CI has 90 min for everything)
UI_BUDGET_S = float(os.environ.get("MMLEARN_UI_BUDGET_S", "1800"))
_started: list[float] = []


@pytest.fixture(autouse=True)
def ui_budget():
    """Fail a browser test at once when the browser tests have already used up their time budget."""
    if not _started:
        _started.append(time.monotonic())
    spent = time.monotonic() - _started[0]
    if spent > UI_BUDGET_S:
        pytest.fail(f"the browser tests' budget of {UI_BUDGET_S:.0f} s is spent ({spent:.0f} s so far; "
                    "MMLEARN_UI_BUDGET_S raises it): this machine is far slower than expected, or a test hung")
    yield


@pytest.fixture(scope="module")
def ui_ready():
    why = harness.missing_requirements()
    if why:
        if os.environ.get("MMLEARN_REQUIRE_UI") == "1":
            pytest.fail(f"browser tests required (MMLEARN_REQUIRE_UI=1) but cannot run: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def ui_tmp(tmp_path_factory, ui_ready) -> Path:
    return tmp_path_factory.mktemp("ui")


@pytest.fixture(scope="module")
def browser(ui_tmp):
    """A persistent Chromium context with a fresh profile; stopped after the module."""
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        context = harness.launch_browser(playwright, ui_tmp / "chromium-profile")
    except BaseException:
        playwright.stop()
        raise
    yield context
    try:
        context.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="module")
def lab(ui_tmp):
    """JupyterLab serving COPIES of every course notebook and the broken fixture (autosave-safe)."""
    harness.copy_notebooks([*harness.course_notebooks(), *FIXTURES.glob("*.ipynb")], ui_tmp / "notebooks")
    server = harness.start_lab(ui_tmp / "notebooks", ui_tmp)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
