"""Robustness metrics: MultiBench's relative and effective robustness, checked on closed forms."""

import numpy as np
import pandas as pd
import pytest

from mmlearn.evaluation import effective_robustness, minmax_normalize, relative_robustness, robustness_table

LEVELS = [i / 10 for i in range(10)]  # MultiBench's 0, 0.1, ..., 0.9


def _multibench_relative(curve):
    """MultiBench's definition, written out: trapezoids of width 0.1 between consecutive points."""
    return sum((a + b) * 0.1 / 2 for a, b in zip(curve[:-1], curve[1:]))


def _multibench_effective(curve, lf):
    """MultiBench's definition, written out: sum of f_i - (LF_i + f_0 - LF_0)."""
    return sum(f - (r + curve[0] - lf[0]) for f, r in zip(curve, lf))


def test_relative_robustness_of_a_constant_curve_is_the_constant_times_the_level_range():
    assert relative_robustness(LEVELS, [0.779] * 10) == pytest.approx(0.7011, abs=1e-12)  # method-notes [RUN]
    assert relative_robustness([0.0, 0.5, 1.0], [0.6] * 3) == pytest.approx(0.6)
    assert relative_robustness([0.2, 0.4], [0.5, 0.5]) == pytest.approx(0.5 * 0.2)
    # normalised by the range: the mean accuracy, the constant itself
    assert relative_robustness(LEVELS, [0.779] * 10, normalize=True) == pytest.approx(0.779)


def test_relative_robustness_matches_multibench_on_its_level_grid_and_the_trapezoid_rule_elsewhere():
    rng = np.random.default_rng(0)
    curve = np.sort(rng.uniform(0.3, 0.9, 10))[::-1]
    assert relative_robustness(LEVELS, curve) == pytest.approx(_multibench_relative(list(curve)), rel=1e-12)
    # uneven levels: a linear curve's area is exact under the trapezoid rule
    x = np.array([0.0, 0.1, 0.35, 0.7, 1.0])
    f = 0.9 - 0.4 * x
    assert relative_robustness(x, f) == pytest.approx(0.9 - 0.2, rel=1e-12)
    assert relative_robustness(x, f, normalize=True) == pytest.approx(0.7, rel=1e-12)


def test_effective_robustness_of_the_reference_and_of_shifted_copies():
    lf = np.array([0.8, 0.78, 0.74, 0.7, 0.63, 0.55, 0.5, 0.44, 0.4, 0.35])
    assert effective_robustness(LEVELS, lf, lf) == 0.0
    shifted = lf + 0.05
    # MultiBench equalises clean accuracy: a constant shift is not robustness
    assert effective_robustness(LEVELS, shifted, lf) == pytest.approx(0.0, abs=1e-12)
    # without equalising, the shift itself comes out: c per point, c on average, c times the level range
    assert effective_robustness(LEVELS, shifted, lf, equalize_clean=False, reduce="mean") == pytest.approx(0.05)
    assert effective_robustness(LEVELS, shifted, lf, equalize_clean=False, reduce="sum") == pytest.approx(0.5)
    assert effective_robustness(LEVELS, shifted, lf, equalize_clean=False, reduce="trapezoid") == pytest.approx(
        0.05 * 0.9)
    # a curve that decays more slowly than the reference from the same start scores above 0, equal to MultiBench's
    flatter = lf[0] - 0.5 * (lf[0] - lf)
    value = effective_robustness(LEVELS, flatter, lf)
    assert value > 0
    assert value == pytest.approx(_multibench_effective(list(flatter), list(lf)), rel=1e-12)


def test_minmax_normalize_as_multibench_and_errors():
    assert minmax_normalize({"a": 1.0, "b": 3.0, "me": 2.5}) == {"a": 0.0, "b": 1.0, "me": 0.75}
    assert minmax_normalize({"a": 1.0, "b": 3.0}, negate=True) == {"a": 1.0, "b": 0.0}
    with pytest.raises(ValueError, match="equal"):
        minmax_normalize({"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError, match="strictly increasing"):
        relative_robustness([0.0, 0.2, 0.1], [1, 1, 1])
    with pytest.raises(ValueError, match="3 points but the curve has 2"):
        relative_robustness([0.0, 0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="reduce"):
        effective_robustness(LEVELS, [1] * 10, [1] * 10, reduce="max")
    with pytest.raises(ValueError, match="finite"):
        relative_robustness([0.0, 0.1], [float("nan"), 1.0])


def test_robustness_table_scores_every_curve_of_a_sweep_table():
    rows = []
    for model, curve in (("late", [0.9, 0.8, 0.6]), ("robust", [0.85, 0.8, 0.75])):
        for lv, acc in zip([0.0, 0.5, 1.0], curve):
            rows.append({"model": model, "kind": "gaussian_noise", "modality": "all", "level": lv, "accuracy": acc})
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter
    scores = robustness_table(table, reference="late").set_index("model")
    assert scores.loc["late", "effective_robustness"] == 0.0
    assert scores.loc["robust", "relative_robustness"] == pytest.approx((0.85 + 0.8) / 4 + (0.8 + 0.75) / 4)
    assert scores.loc["robust", "effective_robustness"] == pytest.approx(0.0 + 0.05 + 0.2)
    assert scores.loc["robust", "clean_accuracy"] == pytest.approx(0.85)
    with pytest.raises(ValueError, match="reference model 'lf'"):
        robustness_table(table, reference="lf")
    with pytest.raises(ValueError, match="columns"):
        robustness_table(table.drop(columns="level"))
