"""Time the balance methods of notebook 04 and print what each encoder learns.

    python benchmarks/balance.py [--threads 1] [--epochs 6] [--seeds 0 1]

For each seed (the dataset's and the model's), trains each encoder alone and
every method of ``mmlearn.balance.default_alphas()`` on the imbalanced set
(2000 training rows, 1000 test rows), and prints per run the wall and process
CPU time (on a busy shared machine CPU time is the better estimate of an idle
machine's wall time), the per-step overhead relative to plain joint training,
the final linear-probe accuracy of each encoder and the fused test accuracy.
Then times building the balance panel and one control change.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch


def timed(fn):
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from mmlearn.experiments.balance import default_alphas, make_imbalanced, train_balanced
    from mmlearn.experiments.balance import train_unimodal
    from mmlearn.data import to_batch

    print(f"python {platform.python_version()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for seed in args.seeds:
        data = to_batch(make_imbalanced(seed=seed))
        train, test = data.index(slice(0, 2000)), data.index(slice(2000, None))
        uni, wall, cpu = timed(lambda: train_unimodal(train, test, epochs=args.epochs, seed=seed))
        print(f"\nseed {seed}: each encoder alone ({wall:.2f} s wall, {cpu:.2f} s CPU): "
              + ", ".join(f"{m} probe {v[-1]:.3f}" for m, v in uni["probe"].items()))
        print(f"{'method':<12}{'alpha':>6}{'wall s':>8}{'CPU s':>8}{'x CPU':>7}{'probe x1':>10}{'probe x2':>10}{'fused':>8}")
        base = None
        for method, alphas in default_alphas().items():
            for alpha in alphas:
                r, wall, cpu = timed(lambda: train_balanced(method, alpha, train, test, epochs=args.epochs, seed=seed,
                                                            teachers=uni["ensemble"].encoders, unimodal=uni))
                base = cpu if method == "joint" else base
                ratio = f"{cpu / base:.1f}" if base and method != "ume" else "-"
                print(f"{method:<12}{alpha:>6g}{wall:>8.2f}{cpu:>8.2f}{ratio:>7}{r['probe']['x1'][-1]:>10.3f}"
                      f"{r['probe']['x2'][-1]:>10.3f}{r['test_acc'][-1]:>8.3f}")

    from mmlearn.experiments.balance import run_balance_grid
    from mmlearn.widgets import BalancePanel

    grid = run_balance_grid(train, test, {"joint": [0.0], "ogm_ge": [1.0, 3.0]}, epochs=2)
    panel, wall, _ = timed(lambda: BalancePanel(grid, method="ogm_ge"))
    print(f"\npanel build {wall * 1000:.0f} ms", end="; ")
    _, wall, _ = timed(lambda: setattr(panel.controls["alpha"], "value", 1.0))
    print(f"one control change {wall * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
