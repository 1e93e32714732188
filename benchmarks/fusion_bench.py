"""Cost of every fusion method: forward+backward time, and TFN vs LMF as modalities are added.

Run:  python benchmarks/fusion_bench.py [--device cpu] [--threads 1] [--quick]

Prints two tables:

1. forward+backward time (ms) of each registered fusion at a few batch sizes
   and feature widths (two modalities, out_dim 32);
2. TensorFusion vs LowRankFusion (rank 4) for M = 2..5 modalities of width 8:
   parameters, forward+backward time and peak extra memory (the resident-set
   high-water mark above the baseline on Linux, "n/a" elsewhere; 0.0 when the
   allocator reuses memory it already holds). ``vec(Z) MiB`` is the size of
   TFN's flattened tensor for the batch, computed, not measured.

Numbers depend on the machine; the shape of the curves (TFN exponential in M,
LMF linear) does not.
"""

from __future__ import annotations

import argparse
import gc
import math
import time
from pathlib import Path

import torch

from mmlearn.fusion import FUSIONS, make_fusion
from mmlearn.experiments.fusion import DEFAULT_OPTIONS, FUSION_ORDER


def _time_step(fusion, features, reps: int) -> float:
    """Median wall time (ms) of one forward + backward pass."""
    weights = torch.randn(features[next(iter(features))].shape[0], fusion.out_dim, device=next(iter(features.values())).device)

    def step():
        fusion.zero_grad(set_to_none=True)
        (fusion(features) * weights).sum().backward()

    step()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        if features[next(iter(features))].is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def _rss_kib(field: str) -> int | None:
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _peak_extra_mib(run) -> str:
    """Resident-set high-water mark above the current RSS while ``run()`` executes (Linux only)."""
    clear = Path("/proc/self/clear_refs")
    gc.collect()
    try:
        clear.write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        run()
        return "n/a"
    base = _rss_kib("VmRSS")
    run()
    peak = _rss_kib("VmHWM")
    if base is None or peak is None:
        return "n/a"
    return f"{(peak - base) / 1024:.1f}"


def table_all_fusions(device, batch_sizes, widths, reps):
    names = [n for n in FUSION_ORDER if n in FUSIONS] + sorted(set(FUSIONS) - set(FUSION_ORDER))
    cols = [(b, d) for d in widths for b in batch_sizes]
    print("\n1) forward+backward time per fusion, ms (median; two modalities of width d, out_dim 32)")
    header = f"{'fusion':<16}" + "".join(f"{f'B={b},d={d}':>14}" for b, d in cols) + f"{'params(d=' + str(widths[-1]) + ')':>16}"
    print(header)
    print("-" * len(header))
    for name in names:
        row, params = f"{name:<16}", 0
        for b, d in cols:
            torch.manual_seed(0)
            dims = {"x1": d, "x2": d}
            fusion = make_fusion(name, dims, 32, **DEFAULT_OPTIONS.get(name, {})).to(device)
            features = {m: torch.randn(b, k, device=device) for m, k in dims.items()}
            row += f"{_time_step(fusion, features, reps):>14.2f}"
            params = sum(p.numel() for p in fusion.parameters())
        print(row + f"{params:>16,}")


def table_tfn_vs_lmf(device, batch, width, ranks, max_modalities, reps):
    print(f"\n2) TensorFusion vs LowRankFusion: M modalities of width {width}, batch {batch}, out_dim 32")
    header = (f"{'M':>3}{'prod(d+1)':>12}{'vec(Z) MiB':>12}{'TFN params':>14}{'TFN ms':>10}{'TFN MiB':>10}"
              + "".join(f"{f'LMF r={r} params':>18}{'ms':>8}{'MiB':>8}" for r in ranks))
    print(header)
    print("-" * len(header))
    for m in range(2, max_modalities + 1):
        dims = {f"m{i}": width for i in range(m)}
        features = {k: torch.randn(batch, width, device=device) for k in dims}
        torch.manual_seed(0)
        tfn = make_fusion("tensor", dims, 32).to(device)
        width_z = math.prod(d + 1 for d in dims.values())
        row = f"{m:>3}{width_z:>12,}{batch * width_z * 4 / 2**20:>12.1f}{sum(p.numel() for p in tfn.parameters()):>14,}"
        row += f"{_time_step(tfn, features, reps):>10.2f}"
        row += f"{_peak_extra_mib(lambda: _time_step(tfn, features, 1)):>10}"
        del tfn
        for r in ranks:
            torch.manual_seed(0)
            lmf = make_fusion("low_rank", dims, 32, rank=r).to(device)
            row += f"{sum(p.numel() for p in lmf.parameters()):>18,}{_time_step(lmf, features, reps):>8.2f}"
            row += f"{_peak_extra_mib(lambda: _time_step(lmf, features, 1)):>8}"
        print(row)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    reps = 5 if args.quick else 20
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    table_all_fusions(device, batch_sizes=(32, 256), widths=(16, 64), reps=reps)
    table_tfn_vs_lmf(device, batch=256, width=8, ranks=(4, 16), max_modalities=5, reps=max(3, reps // 4))


if __name__ == "__main__":
    main()
