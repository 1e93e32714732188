"""fit and train_alignment under torch.distributed: 2 CPU processes (gloo) equal one process on the global batch.

One module-scoped fixture spawns the two ranks once (importing torch in two fresh
processes is most of the cost); each rank runs every scenario and saves what it
got, and the tests compare that with single-process runs in this process.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

import pytest
import torch
import torch.nn.functional as F

from mmlearn import distributed as D
from mmlearn._checks import NonFiniteLossError
from mmlearn.alignment import AlignmentModel, train_alignment
from mmlearn.data import Batch, drop_modalities
from mmlearn.models import build_classifier
from mmlearn.train import fit

WORLD = 2
GLOBAL_B = 8  # the global batch: 4 rows per rank
SHAPES = {"x1": (6,), "x2": (5,)}
ATOL = 1e-5  # gradients are averaged in another order than one process sums them: equal to float precision, not bits
NAN_STEP = 2  # the step at which rank 1 (only) gets a NaN loss


def _data(n: int, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x1, x2 = torch.randn(n, 6, generator=g), torch.randn(n, 5, generator=g)
    y = ((x1[:, 0] + x2[:, 0] + 0.5 * torch.randn(n, generator=g)) > 0).long()
    return Batch({"x1": x1, "x2": x2}, y)


def _classifier():
    # MLP encoders, no dropout, no BatchNorm: deterministic and without per-rank statistics
    return build_classifier(SHAPES, 2, seed=0, feature_dim=8, unimodal_heads=True)


def _extensions():
    """Every extension point of fit, recording what it saw."""
    seen = {"hook_grad": None, "epochs": [], "hook_calls": 0, "rows": []}

    def unimodal_term(model, out, batch):
        return 0.5 * sum(F.cross_entropy(v, batch.y) for v in out.unimodal.values())

    def grad_hook(model, out, batch, step):
        if seen["hook_grad"] is None:  # what the hook sees at the first step: the averaged gradient under DDP
            seen["hook_grad"] = next(model.encoders["x1"].parameters()).grad.clone()
        seen["hook_calls"] += 1
        for p in model.encoders["x1"].parameters():
            p.grad.mul_(0.5)

    def before_backward(model, out, batch, step):
        seen["rows"].append(batch.size)  # the rows this process learns from at this step

    def modality_dropout(batch, step):
        inputs, present = drop_modalities(batch.inputs, 0.3, seed=step, present=batch.present)
        return Batch(inputs, batch.y, present)

    def on_epoch_end(model, epoch, history):
        seen["epochs"].append((epoch, history["train_loss"][-1]))

    return seen, dict(extra_losses=[unimodal_term], grad_hook=grad_hook, train_transform=modality_dropout,
                      on_epoch_end=on_epoch_end, before_backward=before_backward)


def _nan_term(state):
    """An extra loss that is NaN at NAN_STEP on rank 1 only (``state['rank']``), 0 elsewhere."""
    def term(model, out, batch):
        state["step"] += 1
        bad = state["step"] - 1 == NAN_STEP and state["rank"] == 1
        return torch.tensor(float("nan") if bad else 0.0)
    return term


def _run_fit_main():
    model = _classifier()
    seen, ext = _extensions()
    # 37 rows: the last global minibatch has 5 rows, split 3 / 2 and weighted; 15 eval rows split 8 / 7
    h = fit(model, _data(37, 1), _data(15, 2), epochs=3, batch_size=GLOBAL_B, lr=1e-2, seed=3, progress=False, **ext)
    return {"history": h, "state": model.state_dict(), "seen": seen}


def _run_fit_tiny_last():
    model = _classifier()
    # 33 rows: the last global minibatch has one row, so rank 1 has none (it runs a weight-0 row)
    h = fit(model, _data(33, 4), epochs=2, batch_size=GLOBAL_B, lr=1e-2, seed=5, optimizer="sgd", progress=False)
    return {"history": h, "state": model.state_dict()}


def _run_fit_nan_warn(rank: int):
    model = _classifier()
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = fit(model, _data(24, 6), epochs=1, batch_size=GLOBAL_B, lr=1e-2, progress=False, on_nonfinite="warn",
                extra_losses=[_nan_term({"step": 0, "rank": rank})])
    return {"history": h, "state": model.state_dict(), "warnings": [str(w.message) for w in caught]}


def _run_align():
    model = AlignmentModel({"x1": (6,), "x2": (5,)}, embed_dim=4, feature_dim=8, seed=0)
    h = train_alignment(model, _data(40, 7), _data(12, 8), epochs=2, batch_size=GLOBAL_B, lr=1e-2, seed=2)
    return {"history": h, "state": model.state_dict()}


def _worker(rank: int, port: int, out_dir: str):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    # a collective that waits longer than this fails instead of hanging: a deadlock becomes an error
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=30)
    )
    try:
        got = {"rank": D.rank(), "world": D.world_size(), "is_distributed": D.is_distributed(),
               "shard5": D.shard(torch.arange(5)), "shard1": D.shard(torch.arange(1)),
               "sum": D.all_reduce_sum([rank + 1.0, 2.0]), "any": (D.any_rank(rank == 1), D.any_rank(False))}
        got["fit"] = _run_fit_main()
        got["tiny_last"] = _run_fit_tiny_last()
        got["align"] = _run_align()
        got["nan_warn"] = _run_fit_nan_warn(rank)
        solo = _classifier()  # distributed=False inside the group: this rank trains alone on its own data
        got["solo"] = {"history": fit(solo, _data(16, 20 + rank), epochs=1, batch_size=4, distributed=False,
                                      progress=False), "state": solo.state_dict()}
        solo = AlignmentModel({"x1": (6,), "x2": (5,)}, embed_dim=4, feature_dim=8, seed=0)
        got["solo_align"] = {"history": train_alignment(solo, _data(16, 30 + rank), epochs=1, batch_size=4,
                                                        distributed=False),
                             "state": solo.state_dict(), "gather": solo.loss.gather}
        try:
            fit(_classifier(), _data(16, 9), batch_size=7, progress=False)
            got["indivisible"] = ""
        except ValueError as err:
            got["indivisible"] = str(err)
        start = time.perf_counter()
        try:
            fit(_classifier(), _data(40, 10), epochs=2, batch_size=GLOBAL_B, progress=False,
                extra_losses=[_nan_term({"step": 0, "rank": rank})])
            got["nan_raise"] = None
        except NonFiniteLossError as err:
            got["nan_raise"] = str(err)
        got["nan_raise_seconds"] = time.perf_counter() - start
        torch.save(got, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _assert_history_close(got: dict, want: dict):
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=ATOL, nan_ok=True), key


def _assert_same_on_every_rank(ranks, name):
    for other in ranks[1:]:
        # DDP gives every rank the same averaged gradient, so the weights agree bit for bit
        for k, v in ranks[0][name]["state"].items():
            assert torch.equal(v, other[name]["state"][k]), f"{name}: {k} differs between ranks"
        assert other[name]["history"] == ranks[0][name]["history"]


pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]  # two fresh processes import torch: 15-30 s when busy


def test_helpers_inside_a_process_group(ranks):
    for r, got in enumerate(ranks):
        assert (got["rank"], got["world"], got["is_distributed"]) == (r, WORLD, True)
        assert got["sum"].tolist() == [3.0, 4.0]
        assert got["any"] == (True, False)
    assert [g["shard5"].tolist() for g in ranks] == [[0, 1, 2], [3, 4]]
    assert [g["shard1"].tolist() for g in ranks] == [[0], []]


def test_helpers_without_a_process_group():
    assert (D.is_distributed(), D.rank(), D.world_size()) == (False, 0, 1)
    assert torch.equal(D.shard(torch.arange(5)), torch.arange(5))
    assert D.all_reduce_sum([1.5, 2]).tolist() == [1.5, 2.0]
    assert D.any_rank(True) and not D.any_rank(False)
    with pytest.raises(ValueError, match="distributed=True needs an initialised process group"):
        fit(_classifier(), _data(8, 0), distributed=True, progress=False)


def test_fit_on_two_ranks_equals_one_process_on_the_global_batch(ranks):
    model = _classifier()
    seen, ext = _extensions()
    want = fit(model, _data(37, 1), _data(15, 2), epochs=3, batch_size=GLOBAL_B, lr=1e-2, seed=3, progress=False,
               **ext)
    _assert_same_on_every_rank(ranks, "fit")
    got = ranks[0]["fit"]
    assert set(got["history"]) == {"epoch", "train_loss", "train_acc", "eval_loss", "eval_acc"}
    _assert_history_close(got["history"], want)
    diff = _max_diff(got["state"], model.state_dict())
    print(f"fit, 2 ranks vs 1 process: max |weight difference| = {diff:.3g}")
    assert diff < ATOL
    assert any(not torch.equal(v, _classifier().state_dict()[k]) for k, v in got["state"].items())  # it trained
    # the grad hook saw the global-batch (averaged) gradient, ran once per step (5 steps x 3 epochs) on each rank
    torch.testing.assert_close(got["seen"]["hook_grad"], seen["hook_grad"], atol=ATOL, rtol=0)
    assert got["seen"]["hook_calls"] == seen["hook_calls"] == 15
    assert [e for e, _ in got["seen"]["epochs"]] == [1, 2, 3]
    # before_backward saw each rank's contiguous part of the global minibatches (the last one: 5 rows = 3 + 2)
    assert seen["rows"] == [8, 8, 8, 8, 5] * 3
    assert ranks[0]["fit"]["seen"]["rows"] == [4, 4, 4, 4, 3] * 3
    assert ranks[1]["fit"]["seen"]["rows"] == [4, 4, 4, 4, 2] * 3


def test_fit_with_a_last_batch_smaller_than_the_world(ranks):
    model = _classifier()
    want = fit(model, _data(33, 4), epochs=2, batch_size=GLOBAL_B, lr=1e-2, seed=5, optimizer="sgd", progress=False)
    _assert_same_on_every_rank(ranks, "tiny_last")
    _assert_history_close(ranks[0]["tiny_last"]["history"], want)
    diff = _max_diff(ranks[0]["tiny_last"]["state"], model.state_dict())
    print(f"fit, last minibatch of 1 row: max |weight difference| = {diff:.3g}")
    assert diff < ATOL


def test_train_alignment_on_two_ranks_equals_one_process(ranks):
    model = AlignmentModel({"x1": (6,), "x2": (5,)}, embed_dim=4, feature_dim=8, seed=0)
    want = train_alignment(model, _data(40, 7), _data(12, 8), epochs=2, batch_size=GLOBAL_B, lr=1e-2, seed=2)
    _assert_same_on_every_rank(ranks, "align")
    got = ranks[0]["align"]
    _assert_history_close(got["history"], want)
    assert "eval x1->x2 R@1" in got["history"]
    diff = _max_diff(got["state"], model.state_dict())
    print(f"train_alignment, 2 ranks vs 1 process: max |weight difference| = {diff:.3g}")
    assert diff < ATOL


def test_a_nan_loss_on_one_rank_stops_every_rank(ranks):
    # rank 1 got the NaN; rank 0's own loss was finite, and it stopped at the same step instead of waiting
    assert f"step {NAN_STEP}" in ranks[1]["nan_raise"] and "nan" in ranks[1]["nan_raise"]
    assert "on another rank" in ranks[0]["nan_raise"] and f"step {NAN_STEP}" in ranks[0]["nan_raise"]
    assert all(g["nan_raise_seconds"] < 20 for g in ranks)  # well below the 30 s collective timeout


def test_a_nan_loss_on_one_rank_is_skipped_on_every_rank(ranks):
    # with "warn" both ranks skip the same update and stay in sync, equal to one process skipping that step
    _assert_same_on_every_rank(ranks, "nan_warn")
    assert [g["nan_warn"]["history"]["skipped_steps"] for g in ranks] == [[1], [1]]
    assert any("on another rank" in w for w in ranks[0]["nan_warn"]["warnings"])
    model = _classifier()
    with pytest.warns(RuntimeWarning, match=f"step {NAN_STEP}"):
        want = fit(model, _data(24, 6), epochs=1, batch_size=GLOBAL_B, lr=1e-2, progress=False, on_nonfinite="warn",
                   extra_losses=[_nan_term({"step": 0, "rank": 1})])
    _assert_history_close(ranks[0]["nan_warn"]["history"], want)
    assert _max_diff(ranks[0]["nan_warn"]["state"], model.state_dict()) < ATOL


def test_distributed_false_trains_each_rank_alone(ranks):
    for r, got in enumerate(ranks):
        model = _classifier()
        want = fit(model, _data(16, 20 + r), epochs=1, batch_size=4, progress=False)
        assert got["solo"]["history"] == want  # the single-process path: no wrapping, no sharding, no all-reduce
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in got["solo"]["state"].items())
    assert not torch.equal(ranks[0]["solo"]["state"]["head.weight"], ranks[1]["solo"]["state"]["head.weight"])
    # train_alignment alone: its loss does not gather the other rank's features for the call, and gathers again after
    for r, got in enumerate(ranks):
        model = AlignmentModel({"x1": (6,), "x2": (5,)}, embed_dim=4, feature_dim=8, seed=0)
        want = train_alignment(model, _data(16, 30 + r), epochs=1, batch_size=4)
        assert got["solo_align"]["history"] == want and got["solo_align"]["gather"] is True
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in got["solo_align"]["state"].items())


def test_indivisible_global_batch_is_refused_on_every_rank(ranks):
    for got in ranks:
        assert "divisible by the world size" in got["indivisible"] and "batch_size=7" in got["indivisible"]
