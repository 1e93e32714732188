"""Efficiency: greedy modality selection against brute force, and model cost profiles.

Greedy selection is checked on exactly conditionally independent modalities
(the empirical distribution *is* the product form, given as weighted support),
on random weighted-coverage functions against the (1 - 1/e) bound, and on the
XOR synergy case where greedy provably misses the optimum. FLOPs and parameter
counts are checked against closed forms; the Pareto front against a hand-made set.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from mmlearn.data import make_latent_views, to_batch
from mmlearn.efficiency import (
    accuracy_utility,
    brute_force_selection,
    count_flops,
    count_parameters,
    efficiency_profile,
    greedy_modality_selection,
    mutual_information_utility,
    pareto_front,
)
from mmlearn.models import build_classifier


def h2(p):
    return 0.0 if p in (0.0, 1.0) else -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def noisy_copies(flips):
    """Y ~ Bern(1/2), X_i = Y xor N_i, N_i ~ Bern(flips[i]) independent: the exact distribution as weighted rows."""
    rows, weights = [], []
    for y in (0, 1):
        for noise in itertools.product((0, 1), repeat=len(flips)):
            w = 0.5 * math.prod(p if n else 1 - p for p, n in zip(flips, noise))
            rows.append([y ^ n for n in noise] + [y])
            weights.append(w)
    a = np.array(rows)
    return {f"x{i + 1}": a[:, i] for i in range(len(flips))}, a[:, -1], np.array(weights)


# ------------------------------------------------------------------ greedy selection


def test_mi_utility_of_conditionally_independent_modalities_is_submodular_and_greedy_is_optimal():
    x, y, w = noisy_copies((0.1, 0.2, 0.3, 0.45))
    f = mutual_information_utility(x, y, weights=w)
    mods = list(x)
    # single modality: I(X;Y) = 1 - H2(flip), written independently
    for m, p in zip(mods, (0.1, 0.2, 0.3, 0.45)):
        assert f(frozenset([m])) == pytest.approx(1 - h2(p), abs=1e-12)
    # submodular: f(A + e) - f(A) >= f(B + e) - f(B) for every A subset of B, e not in B
    subsets = [frozenset(c) for k in range(5) for c in itertools.combinations(mods, k)]
    checked = 0
    for a in subsets:
        for b in subsets:
            if not a <= b:
                continue
            for e in mods:
                if e in b:
                    continue
                assert f(a | {e}) - f(a) >= f(b | {e}) - f(b) - 1e-12
                checked += 1
    assert checked == 108  # sum over |B| of C(4, |B|) * 2^|B| * (4 - |B|) = 4 + 24 + 48 + 32
    # monotone, and greedy equals brute force for every budget
    for k in range(1, 5):
        g = greedy_modality_selection(f, mods, k)
        best, value = brute_force_selection(f, mods, k)
        assert g.utility == pytest.approx(value, abs=1e-12)
        assert set(g.selected) == set(best)
    g = greedy_modality_selection(f, mods, 3)
    assert g.selected == ("x1", "x2", "x3")
    np.testing.assert_allclose(g.utilities, [0.5310, 0.6358, 0.6717], atol=1e-4)  # method-notes Sec. 4
    assert g.costs == [1.0, 2.0, 3.0]
    np.testing.assert_allclose(np.diff([0.0, *g.utilities]), g.gains, atol=1e-12)


def test_plug_in_mi_from_samples_matches_the_exact_value_within_the_sampling_error():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 20000)
    x = {"a": y ^ (rng.random(20000) < 0.1), "b": rng.integers(0, 2, 20000)}
    f = mutual_information_utility(x, y)
    assert f(frozenset(["a"])) == pytest.approx(1 - h2(0.1), abs=0.01)
    assert f(frozenset(["b"])) < 0.005
    assert f(frozenset()) == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_greedy_reaches_one_minus_one_over_e_of_the_optimum_on_weighted_coverage(seed):
    rng = np.random.default_rng(seed)
    n_items, n_sets = 30, 8
    weights = rng.exponential(size=n_items)
    covers = {f"m{i}": set(np.flatnonzero(rng.random(n_items) < rng.uniform(0.1, 0.4)).tolist())
              for i in range(n_sets)}

    def coverage(s):
        items = set().union(*(covers[m] for m in s)) if s else set()
        return float(sum(weights[list(items)]))

    ratios = []
    for k in (1, 2, 3, 4):
        g = greedy_modality_selection(coverage, list(covers), k)
        _, opt = brute_force_selection(coverage, list(covers), k)
        assert g.utility >= (1 - 1 / math.e) * opt - 1e-9
        assert g.utility <= opt + 1e-9
        ratios.append(g.utility / opt)
    assert ratios[0] == pytest.approx(1.0)  # k = 1: greedy is exact


def test_xor_synergy_defeats_greedy_which_picks_the_weak_modality_first():
    # x1, x2 fair bits, y = x1 xor x2, x3 = y flipped with probability 0.3 (exact distribution)
    rows, w = [], []
    for x1, x2, flip in itertools.product((0, 1), (0, 1), (0, 1)):
        y = x1 ^ x2
        rows.append((x1, x2, y ^ flip, y))
        w.append(0.25 * (0.3 if flip else 0.7))
    a = np.array(rows)
    f = mutual_information_utility({"x1": a[:, 0], "x2": a[:, 1], "x3": a[:, 2]}, a[:, 3], weights=w)
    assert f(frozenset(["x1"])) == pytest.approx(0.0, abs=1e-12)
    assert f(frozenset(["x1", "x2"])) == pytest.approx(1.0, abs=1e-12)
    g = greedy_modality_selection(f, ["x1", "x2", "x3"], 2)
    assert g.order[0] == "x3"
    assert g.gains[0] == pytest.approx(1 - h2(0.3), abs=1e-12)
    assert g.gains[1] == pytest.approx(0.0, abs=1e-12)  # x1 (or x2) next to x3 gains nothing
    best, value = brute_force_selection(f, ["x1", "x2", "x3"], 2)
    assert set(best) == {"x1", "x2"} and value == pytest.approx(1.0)
    assert g.utility < 0.2 < (1 - 1 / math.e) * value  # the bound fails without submodularity


def test_costs_pick_by_gain_per_cost_within_the_budget():
    values = {"a": 3.0, "b": 2.0, "c": 1.5}
    costs = {"a": 3.0, "b": 1.0, "c": 1.0}
    f = lambda s: sum(values[m] for m in s)  # noqa: E731  (modular)
    g = greedy_modality_selection(f, list(values), 2.0, costs=costs)
    assert g.selected == ("b", "c") and g.costs == [1.0, 2.0] and g.utility == 3.5
    g = greedy_modality_selection(f, list(values), 4.5, costs=costs)
    assert g.selected == ("b", "c") and g.utility == 3.5  # "a" no longer fits after b, c (cost 5 > 4.5)
    g = greedy_modality_selection(f, list(values), 5.0, costs=costs)
    assert g.selected == ("b", "c", "a") and g.costs == [1.0, 2.0, 5.0] and g.utility == 6.5
    # the cost-benefit rule can miss the optimum: with budget 4, b then c (ratios 2, 1.5) leave no room for a
    g = greedy_modality_selection(f, list(values), 4.0, costs=costs)
    assert g.selected == ("b", "c") and g.utility == 3.5
    assert brute_force_selection(f, list(values), 4.0, costs=costs) == (("a", "b"), 5.0)


def test_selection_rejects_bad_input_with_clear_messages():
    f = lambda s: float(len(s))  # noqa: E731
    with pytest.raises(ValueError, match="budget must be finite"):
        greedy_modality_selection(f, ["a", "b"], float("nan"), costs={"a": 1, "b": 1})
    with pytest.raises(TypeError, match="budget must be a whole number"):
        greedy_modality_selection(f, ["a", "b"], 1.5)
    with pytest.raises(ValueError, match=r"costs\['b'\] must be > 0"):
        greedy_modality_selection(f, ["a", "b"], 2, costs={"a": 1, "b": 0})
    with pytest.raises(ValueError, match="no cost given"):
        greedy_modality_selection(f, ["a", "b"], 2, costs={"a": 1})
    with pytest.raises(ValueError, match="duplicates"):
        greedy_modality_selection(f, ["a", "a"], 1)
    with pytest.raises(TypeError, match="utility must be a callable"):
        greedy_modality_selection(3, ["a"], 1)
    with pytest.raises(ValueError, match="must be finite"):
        greedy_modality_selection(lambda s: float("nan"), ["a"], 1)
    with pytest.raises(ValueError, match="non-integer"):
        mutual_information_utility({"a": np.array([0.5, 1.0])}, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"x_dict\['a'\] has 3 rows but y has 2"):
        mutual_information_utility({"a": np.array([0, 1, 1])}, np.array([0, 1]))


def test_accuracy_utility_trains_each_subset_once_and_prefers_informative_modalities():
    data = make_latent_views(600, dim=6, modalities=("a", "b", "c"), redundancy=0.0, uniqueness=1.0,
                             unique_to="a", noise={"a": 0.1, "b": 0.1, "c": 0.1}, seed=0)
    train, val = to_batch(data, rows=slice(0, 400)), to_batch(data, rows=slice(400, 600))
    f = accuracy_utility(train, val, epochs=6, batch_size=100)
    g = greedy_modality_selection(f, ["a", "b", "c"], 1)
    assert g.selected == ("a",)  # the label is unique to a
    assert f(frozenset(["a"])) > 0.75  # measured 0.85
    assert max(f(frozenset(["b"])), f(frozenset(["c"]))) < 0.65  # measured 0.485, 0.50 (chance)
    assert len(f.cache) == 4  # {}, {a}, {b}, {c}: each trained once
    assert f(frozenset()) == pytest.approx(float((val.y == int(train.y.mode().values)).float().mean()))


# ------------------------------------------------------------------ cost profiles


@pytest.mark.parametrize("b,d_in,d_out", [(1, 3, 2), (8, 16, 5), (33, 7, 64)])
def test_flops_of_a_linear_layer_are_2_b_din_dout(b, d_in, d_out):
    assert count_flops(nn.Linear(d_in, d_out), torch.randn(b, d_in)) == 2 * b * d_in * d_out


def test_parameter_counts_and_profile_of_a_classifier():
    data = make_latent_views(300, dim=8, seed=0)
    model = build_classifier({"x1": (8,), "x2": (8,)}, 2, "concat", feature_dim=16)
    total, trainable = count_parameters(model)
    assert total == sum(p.numel() for p in model.parameters())
    for p in model.encoders["x1"].parameters():
        p.requires_grad_(False)
    frozen = sum(p.numel() for p in model.encoders["x1"].parameters())
    prof = efficiency_profile(model, data, batch_size=50, repeats=3, warmup=1)
    assert prof.parameters == total and prof.trainable_parameters == total - frozen
    # MLP encoders 8 -> 64 -> 16, concat 32 -> 64, head 64 -> 2: multiply-adds per sample, x2
    assert prof.flops_per_sample == 2 * (2 * (8 * 64 + 64 * 16) + 32 * 64 + 64 * 2)
    assert prof.batch_size == 50
    assert 0.0 <= prof.accuracy <= 1.0
    assert prof.latency_per_sample_s > 0
    # the widest activation alive, (50, 64) float32, is a lower bound on the peak
    assert prof.peak_activation_bytes is None or prof.peak_activation_bytes >= 50 * 64 * 4
    assert model.training  # restored


def test_pareto_front_of_a_hand_made_set():
    pts = [
        {"name": "a", "accuracy": 0.70, "flops_per_sample": 10},
        {"name": "b", "accuracy": 0.80, "flops_per_sample": 20},
        {"name": "c", "accuracy": 0.75, "flops_per_sample": 30},  # dominated by b
        {"name": "d", "accuracy": 0.90, "flops_per_sample": 100},
        {"name": "e", "accuracy": 0.70, "flops_per_sample": 15},  # dominated by a (same accuracy, costlier)
        {"name": "f", "accuracy": 0.60, "flops_per_sample": 5},
        {"name": "g", "accuracy": 0.90, "flops_per_sample": 100},  # identical to d: both kept
    ]
    assert [p["name"] for p in pareto_front(pts)] == ["f", "a", "b", "d", "g"]
    assert pareto_front([(0.5, 1.0), (0.4, 2.0)]) == [(0.5, 1.0)]
    with pytest.raises(ValueError, match="must be finite"):
        pareto_front([(float("nan"), 1.0)])
    with pytest.raises(ValueError, match="lacks"):
        pareto_front([{"accuracy": 1.0}])


# ------------------------------------------------------------------ MFAS architecture search

from mmlearn.efficiency.search import (  # noqa: E402
    MFASFusion,
    fusion_architecture_search,
    mfas_temperature,
    pretrain_layered_encoders,
    search_space_size,
)
from mmlearn.train import evaluate, fit  # noqa: E402


@pytest.fixture(scope="module")
def mfas_data():
    data = make_latent_views(600, dim=8, redundancy=0.5, synergy=1.5, seed=0)
    tr, va = to_batch(data, rows=slice(0, 400)), to_batch(data, rows=slice(400, 600))
    encoders = pretrain_layered_encoders(tr, widths=(16, 12, 8), epochs=4, seed=0)
    return tr, va, encoders


SMALL = dict(activations=("relu", "sigmoid"), max_layers=2, budget=14, samples_per_step=3, epochs=2, width=8)


def test_mfas_temperature_schedule_follows_its_formula():
    for step in range(8):
        want = (10.0 - 0.2) * math.exp(-((step + 1) ** 2) / 16.0) + 0.2
        assert mfas_temperature(step) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose([mfas_temperature(s) for s in range(4)], [9.406, 7.832, 5.784, 3.805], atol=1e-3)
    assert mfas_temperature(50) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="decay must be > 0"):
        mfas_temperature(0, decay=0.0)


def test_mfas_search_space_size_is_the_product_of_the_choices_and_the_run_is_reproducible(mfas_data):
    tr, va, encoders = mfas_data
    assert search_space_size(3, 5, 2, 4) == 30**4 == 810_000  # AV-MNIST's max_labels (3, 5, 2), method-notes Sec. 13
    r1 = fusion_architecture_search(tr, va, encoders=encoders, seed=0, **SMALL)
    assert r1.choices_per_layer == (3, 3, 2)
    assert r1.search_space_size == (3 * 3 * 2) ** 2 == 324
    # the first step trains all 18 single-layer choices, but the budget stops it at 14
    assert r1.n_trained == len(r1.leaderboard) == 14
    assert len({a for a, _ in r1.leaderboard}) == 14
    accs = [acc for _, acc in r1.leaderboard]
    assert accs == sorted(accs, reverse=True) and 0.0 <= accs[-1] <= accs[0] <= 1.0
    assert r1.temperatures[0] == 10.0
    np.testing.assert_allclose(r1.temperatures[1:], [mfas_temperature(s) for s in range(len(r1.temperatures) - 1)])
    r2 = fusion_architecture_search(tr, va, encoders=encoders, seed=0, **SMALL)
    assert r2.leaderboard == r1.leaderboard


def test_mfas_grows_deeper_architectures_and_returns_a_working_trainable_classifier(mfas_data):
    tr, va, encoders = mfas_data
    r = fusion_architecture_search(tr, va, encoders=encoders, seed=1, **{**SMALL, "budget": 30})
    depths = {len(a) for a, _ in r.leaderboard}
    assert depths == {1, 2}
    for arch, _ in r.leaderboard:
        assert all(0 <= i < 3 and 0 <= j < 3 and act in ("relu", "sigmoid") for i, j, act in arch)
    model = r.best_model
    assert isinstance(model.fusion, MFASFusion) and model.fusion.architecture == r.best_architecture
    # the returned model is the trained candidate: its validation accuracy is the leaderboard's best
    assert evaluate(model, va)["accuracy"] == pytest.approx(r.leaderboard[0][1], abs=1e-6)
    feats = model.layer_features(va.inputs)
    assert sorted(feats) == ["x1/0", "x1/1", "x1/2", "x2/0", "x2/1", "x2/2"]
    assert model.fusion(feats).shape == (200, 8)
    assert model(va.inputs).shape == (200, 2)
    enc_before = {n: p.clone() for n, p in model.encoders.named_parameters()}
    fus_before = {n: p.detach().clone() for n, p in model.fusion.named_parameters()}
    fit(model, tr, epochs=2, progress=False)
    assert all(torch.equal(p, enc_before[n]) for n, p in model.encoders.named_parameters())  # frozen
    assert all(not torch.equal(p.detach(), fus_before[n]) for n, p in model.fusion.named_parameters())


def test_mfas_rejects_bad_input(mfas_data):
    tr, va, encoders = mfas_data
    three = make_latent_views(50, modalities=("a", "b", "c"), seed=0)
    with pytest.raises(ValueError, match="two modalities"):
        fusion_architecture_search(three, three)
    with pytest.raises(ValueError, match="activations must be"):
        fusion_architecture_search(tr, va, encoders=encoders, activations=("tanh",))
    with pytest.raises(ValueError, match="budget must be >= 1"):
        fusion_architecture_search(tr, va, encoders=encoders, budget=0)
    with pytest.raises(ValueError, match="layer 5 of 'x1'"):
        MFASFusion({"x1/0": 3, "x2/0": 3}, 4, [(5, 0, "relu")], ["x1", "x2"])


# ------------------------------------------------------------------ auto_fusion and recommend_fusion

from dataclasses import dataclass  # noqa: E402

from mmlearn.data import make_bitwise  # noqa: E402
from mmlearn.efficiency.auto import auto_fusion, recommend_fusion  # noqa: E402

SYNERGY_CAPABLE = {"concat", "tensor", "low_rank", "cross_attention", "early", "deq"}


def test_auto_fusion_on_xor_picks_a_method_that_represents_synergy_and_sorts_its_leaderboard():
    tr, va = make_bitwise("xor", 1000, seed=0), make_bitwise("xor", 400, seed=1)
    r = auto_fusion(tr, va, budget=36, methods=["late", "concat", "tensor", "early"])
    assert r.method != "late" and r.method in SYNERGY_CAPABLE
    scores = [e["val_accuracy"] for e in r.leaderboard]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0.9  # measured 1.0
    late = next(e for e in r.leaderboard if e["method"] == "late")
    assert late["val_accuracy"] < 0.65  # measured 0.51: additive fusion cannot represent XOR
    assert late["rung"] == 0  # eliminated in the first round
    assert r.leaderboard[0]["method"] == r.method and r.epochs_used <= 36
    assert sum(e["epochs"] for e in r.leaderboard) == r.epochs_used
    pred = r.predict(va)
    assert pred.shape == (400,)
    assert float((pred == torch.as_tensor(va["label"])).float().mean()) == pytest.approx(scores[0])


def test_auto_fusion_rejects_bad_input():
    tr = make_bitwise("xor", 50)
    with pytest.raises(ValueError, match="unknown fusion method 'nope'"):
        auto_fusion(tr, tr, methods=["nope"])
    with pytest.raises(ValueError, match="budget must be >= 1"):
        auto_fusion(tr, tr, budget=0)
    with pytest.raises(TypeError, match="methods must be a list"):
        auto_fusion(tr, tr, methods="late")
    with pytest.raises(ValueError, match="lrs"):
        auto_fusion(tr, tr, lrs=(float("nan"),))


@dataclass
class FakePID:
    redundancy: float
    unique1: float
    unique2: float
    synergy: float


@pytest.mark.parametrize("pid,dominant,first", [
    (FakePID(0.05, 0.0, 0.05, 0.9), "synergy", "tensor"),
    (FakePID(0.8, 0.1, 0.0, 0.1), "redundancy", "early"),
    (FakePID(0.1, 0.5, 0.2, 0.1), "uniqueness", "late"),
    (FakePID(0.0, 0.0, 0.0, 0.001), "none", "late"),
])
def test_recommend_fusion_follows_the_dominant_interaction(pid, dominant, first):
    rec = recommend_fusion(pid=pid)
    assert rec.dominant == dominant and rec.methods[0] == first
    if dominant != "none":
        assert sum(rec.fractions.values()) == pytest.approx(1.0)
    if dominant == "synergy":
        assert "late" not in rec.methods
        assert rec.fractions["synergy"] == pytest.approx(0.9)


def test_recommend_fusion_rejects_bad_pid_objects():
    with pytest.raises(TypeError, match="object lacks redundancy"):
        recommend_fusion(pid=object())
    with pytest.raises(ValueError, match="pid.synergy must be finite"):
        recommend_fusion(pid=FakePID(0.1, 0.1, 0.1, float("nan")))
    with pytest.raises(ValueError, match="needs data or a precomputed pid"):
        recommend_fusion()


@pytest.mark.parametrize("kind,dominant", [("xor", "synergy"), ("redundant", "redundancy"), ("unique", "uniqueness")])
def test_recommend_fusion_end_to_end_with_the_pid_estimator(kind, dominant):
    pytest.importorskip("mmlearn.interactions")
    rec = recommend_fusion(make_bitwise(kind, 1000, seed=0))
    assert rec.dominant == dominant
    assert rec.fractions[dominant] > 0.95  # exact PID puts everything in one term


def test_profile_counts_the_frozen_backbone_of_prompt_fusion_as_weights_but_not_as_trainable():
    model = build_classifier({"x1": (8,), "x2": (8,)}, 2, "prompt", feature_dim=16, d_model=16, n_layers=1)
    data = make_latent_views(64, dim=8, seed=0)
    counts = model.fusion.trainable_parameters()
    prof = efficiency_profile(model, data, repeats=2, warmup=0, memory=False)
    n_params = sum(p.numel() for p in model.parameters())
    assert prof.trainable_parameters == n_params
    assert prof.parameters == n_params + counts["frozen"] > prof.trainable_parameters
    assert prof.peak_activation_bytes is None and prof.flops_per_sample > 0
