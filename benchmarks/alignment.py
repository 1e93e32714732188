"""Time contrastive alignment on AV-Digits and print the recall it reaches (issue 3's speed target).

    python benchmarks/alignment.py [--threads N] [--epochs 10] [--batch-size 64]

Prints: the training time of the notebook's model (target: under 30 s), its
test recall@1 at digit level and clip level in both directions, the time of
one training step with 1 and 2 intra-op threads, the time of the panel's
precomputed grid, and the CCA baseline's fit time and recall.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

TARGET_S = 30.0


def step_time(threads: int, batch_size: int, repeats: int = 20) -> float:
    from mmlearn.alignment import AlignmentModel

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        x = {"image": torch.randn(batch_size, 8, 8, generator=g), "audio": torch.randn(batch_size, 20, 20, generator=g)}
        model = AlignmentModel({"image": (8, 8), "audio": (20, 20)}, seed=0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for i in range(repeats + 3):
            if i == 3:
                t0 = time.perf_counter()
            loss = model.compute_loss(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return (time.perf_counter() - t0) / repeats
    finally:
        torch.set_num_threads(before)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for training (default 1)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    from mmlearn.alignment import AlignmentModel, CCABaseline, evaluate_alignment, train_alignment
    from mmlearn.data import load_av_digits, to_batch
    from mmlearn.widgets import precompute_alignment_grid

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {time.strftime('%Y-%m-%d')} · {platform.machine()} · {os.cpu_count()} CPUs · load {load:.1f} · "
          f"torch {torch.__version__} · threads {args.threads}")
    t0 = time.perf_counter()
    av = load_av_digits(image_energy_removed=0.0, image_noise=0.0)
    train, test = to_batch(av["train"], ["image", "audio"]), to_batch(av["test"], ["image", "audio"])
    print(f"data (clean images)        {time.perf_counter() - t0:6.1f} s")

    torch.set_num_threads(args.threads)
    model = AlignmentModel({"image": (8, 8), "audio": (20, 20)}, seed=0)
    t0 = time.perf_counter()
    train_alignment(model, train, epochs=args.epochs, batch_size=args.batch_size, lr=3e-3, seed=0)
    seconds = time.perf_counter() - t0
    s = evaluate_alignment(model, test)
    verdict = "ok" if seconds < TARGET_S else "OVER TARGET"
    print(f"training ({args.epochs} epochs, B={args.batch_size}) {seconds:6.1f} s  (target < {TARGET_S:.0f} s: {verdict})")
    print(f"  digit-level R@1  image->audio {s['class image->audio R@1']:.3f}  audio->image "
          f"{s['class audio->image R@1']:.3f}  (chance ~0.10)")
    print(f"  clip-level  R@1  image->audio {s['image->audio R@1']:.3f}  audio->image {s['audio->image R@1']:.3f}  "
          f"(chance {1 / test.size:.4f}, ceiling ~1/36 since pairs share only the digit)")
    print(f"  clip-level  R@10 image->audio {s['image->audio R@10']:.3f}  audio->image {s['audio->image R@10']:.3f}  "
          f"(chance {10 / test.size:.3f})")

    for threads in (1, 2):
        print(f"one step, B={args.batch_size}, {threads} thread(s)  {1000 * step_time(threads, args.batch_size):8.1f} ms")

    torch.set_num_threads(args.threads)
    grid = precompute_alignment_grid(train, test, temperatures=(0.02, 0.1, 0.5), batch_sizes=(32, 128), epochs=4)
    print(f"panel grid (3 x 2 settings, 4 epochs)  {grid['seconds']:6.1f} s")

    t0 = time.perf_counter()
    cca = CCABaseline(n_components=8, pca_dim=32).fit(train.inputs)
    c = evaluate_alignment(cca, test)
    print(f"CCA fit (PCA 32, 8 components)  {time.perf_counter() - t0:6.2f} s; digit-level R@1 image->audio "
          f"{c['class image->audio R@1']:.3f}  audio->image {c['class audio->image R@1']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
