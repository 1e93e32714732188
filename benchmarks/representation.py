"""Time the representation models of notebook 01 on AV-Digits and print what they reach.

    python benchmarks/representation.py [--threads 1] [--epochs 30] [--seeds 0 1 2]

For each seed, trains (with the notebook's settings) the joint autoencoder
(Eq. 1), the three multimodal VAE posteriors (Eq. 3) and MFM, and prints for
each model its training time (wall clock and process CPU time: on a shared,
busy machine the CPU time is the better estimate of an idle machine's wall
time), the audio->image coherence (chance 10%), and for MFM the test accuracy
and linear-probe accuracies per factor. Then times building the
representation panel (every state precomputed) and one control change.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch


def timed(fn):
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from sklearn.linear_model import LogisticRegression

    from mmlearn.data import DIGIT_NAMES, load_av_digits, modality_stats, to_batch
    from mmlearn.models import MLPEncoder, MultimodalClassifier
    from mmlearn.representation import FactorizedModel, JointAutoencoder, MultimodalVAE, coherence, fit_representation
    from mmlearn.train import evaluate, fit
    from mmlearn.widgets import RepresentationPanel

    print(f"python {platform.python_version()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    av = load_av_digits(image_energy_removed=0.0, image_noise=0.0)
    train, test = to_batch(av["train"], ["image", "audio"]), to_batch(av["test"], ["image", "audio"])
    shapes = {m: tuple(x.shape[1:]) for m, x in train.inputs.items()}
    stats = modality_stats(train.inputs)

    torch.manual_seed(0)
    reader = MultimodalClassifier({"image": MLPEncoder((8, 8), 64, hidden=(128,))}, "concat", 10)
    _, wall, cpu = timed(lambda: fit(reader, train.select(["image"]), epochs=20, batch_size=64, lr=3e-3, progress=False))
    print(f"image reader: {evaluate(reader, test.select(['image']))['accuracy']:.1%} on real test images "
          f"({wall:.1f} s wall, {cpu:.1f} s CPU)")

    def probe(a, b):
        return LogisticRegression(max_iter=2000).fit(a.numpy(), train.y.numpy()).score(b.numpy(), test.y.numpy())

    print(f"\n{'seed':>4s} {'model':18s} {'wall s':>7s} {'CPU s':>6s} {'coherence':>10s}  extra")
    for seed in args.seeds:
        builders = {
            "joint AE (l1)": lambda: JointAutoencoder(shapes, 8, regularizer="l1", lam=1e-3, stats=stats),
            "joint AE (kl)": lambda: JointAutoencoder(shapes, 8, regularizer="kl", lam=1e-2, stats=stats),
            "PoE (MVAE)": lambda: MultimodalVAE(shapes, 8, "poe", stats=stats),
            "MoE (MMVAE)": lambda: MultimodalVAE(shapes, 8, "moe", stats=stats),
            "MoPoE": lambda: MultimodalVAE(shapes, 8, "mope", stats=stats),
        }
        models = {}
        for name, build in builders.items():
            torch.manual_seed(seed)
            model = build()
            _, wall, cpu = timed(lambda: fit_representation(model, train, epochs=args.epochs, batch_size=128,
                                                            lr=2e-3, seed=seed))
            models[name] = model
            score = coherence(model, test, reader, source="audio", target="image")
            print(f"{seed:4d} {name:18s} {wall:7.1f} {cpu:6.1f} {score:10.1%}")
        torch.manual_seed(seed)
        mfm = FactorizedModel(shapes, 10, shared_dim=16, specific_dim=4, hidden=64, stats=stats)
        _, wall, cpu = timed(lambda: fit_representation(mfm, train, epochs=20, batch_size=128, lr=2e-3, seed=seed))
        with torch.no_grad():
            ftr, fte = mfm.factors(train.inputs), mfm.factors(test.inputs)
        probes = {"Z_y": probe(ftr["shared"], fte["shared"])}
        probes.update({f"Z_{m}": probe(ftr["specific"][m], fte["specific"][m]) for m in shapes})
        extra = f"accuracy {evaluate(mfm, test)['accuracy']:.1%}; probes " + ", ".join(
            f"{k} {v:.1%}" for k, v in probes.items())
        print(f"{seed:4d} {'MFM':18s} {wall:7.1f} {cpu:6.1f} {'':>10s}  {extra}")

    panel_models = {k: v for k, v in models.items() if k != "joint AE (kl)"}
    panel, wall, cpu = timed(lambda: RepresentationPanel(panel_models, test, label_names=list(DIGIT_NAMES), n_points=360))
    print(f"\npanel: built with {len(panel._precomputed)} precomputed states in {wall:.2f} s wall ({cpu:.2f} s CPU)")
    times = []
    for value in (False, True, False, True):
        t = time.perf_counter()
        panel.controls["observe_image"].value = value
        times.append(time.perf_counter() - t)
    print(f"panel: one control change redraws in {np.median(times) * 1000:.0f} ms (median of {len(times)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
