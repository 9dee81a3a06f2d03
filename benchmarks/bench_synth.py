"""Benchmark of the synthetic data generator (smcr.synth).

1. Throughput: images/s of ``generate()`` (render + JPEG + atomic writes + manifest) at
   128x64 with 1 and N processes, and the render-only time per image of every preset at its
   own size.
2. Neither trivial nor impossible: a colour-histogram nearest-neighbour baseline on the test
   split of ``mini-gspr`` (Rank-1 / mAP vs chance).
3. Domain gap: a model (PCA + LDA metric on stripe colour histograms) trained on the train
   split of one real-world-like preset, tested on the test splits of both.

    PYTHONPATH=python .venv/bin/python benchmarks/bench_synth.py [--quick] [--processes 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from smcr.synth import build_world, generate, generate_in_memory, get_preset, plan_jobs, render_job  # noqa: E402
from smcr.synth.baseline import colour_histograms, evaluate_retrieval  # noqa: E402


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker processes)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


def throughput(processes: int, num_ids: int) -> None:
    print(
        f"\n## 1. Throughput at 128x64 ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average before: {os.getloadavg()[0]:.2f})"
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        for preset in ("mini-gspr", "market-like"):
            for procs in sorted({1, processes}):
                out = tmp / f"{preset}_{procs}"
                cpu0 = _cpu_seconds()
                t = time.perf_counter()
                generate(preset, out, num_ids, seed=0, processes=procs, image_size=(128, 64))
                dt = time.perf_counter() - t
                cpu = _cpu_seconds() - cpu0
                n = sum(1 for _ in out.glob("*/*.jpg"))
                print(
                    f"generate {preset:12s} 128x64 processes={procs}: {n} images in {dt:.1f} s "
                    f"= {n / dt:.0f} images/s wall; {1000 * cpu / n:.1f} CPU-ms/image "
                    f"(= {n / cpu * procs:.0f} images/s on {procs} idle cores); "
                    f"load average {os.getloadavg()[0]:.2f}"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nrender only, one process, each preset at its own size (CPU time):")
    for preset in ("mini-gspr", "gspr", "market-like", "duke-like"):
        w = build_world(preset, 10, seed=1)
        jobs = plan_jobs(w)
        jobs = [jobs[i] for i in np.random.default_rng(0).choice(len(jobs), 120, replace=False)]
        t = time.process_time()
        for j in jobs:
            render_job(w, j)
        dt = (time.process_time() - t) / len(jobs)
        h, wd = w.preset.image_size
        print(f"  {preset:12s} {h}x{wd}: {dt * 1000:.1f} CPU-ms/image")


def _features(images: np.ndarray) -> np.ndarray:
    return colour_histograms(images, bins=8, stripes=6)


def baseline(num_ids: int, processes: int) -> None:
    print(
        f"\n## 2. Colour-histogram nearest neighbour on the mini-gspr test split ({num_ids} ids, "
        f"seed 0, 256x128)"
    )
    t = time.perf_counter()
    d = generate_in_memory(
        "mini-gspr", num_ids, seed=0, processes=processes, subsets=("query", "gallery"), encode=True
    )
    q, qp, qc = d.subset("query")
    g, gp, gc = d.subset("gallery")
    print(f"rendered {len(q)} query + {len(g)} gallery images in {time.perf_counter() - t:.0f} s")
    for stripes, name in ((1, "global RGB 8x8x8"), (6, "6 stripes x RGB 8x8x8")):
        fq, fg = colour_histograms(q, 8, stripes), colour_histograms(g, 8, stripes)
        s = evaluate_retrieval(fq, qp, qc, fg, gp, gc)
        print(
            f"  {name:22s}: Rank-1 {100 * s.rank1:.1f} %  mAP {100 * s.mAP:.1f} %  "
            f"(chance Rank-1 {100 * s.chance_rank1:.1f} %, {s.num_queries} queries)"
        )


def domain_gap(num_ids: int, processes: int) -> None:
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    print(
        f"\n## 3. Domain gap: PCA(128) + LDA on stripe histograms ({num_ids} ids per domain, "
        f"seed 0, 128x64)"
    )
    data = {}
    for preset in ("market-like", "duke-like"):
        t = time.perf_counter()
        d = generate_in_memory(
            preset, num_ids, seed=0, processes=processes, encode=True, image_size=(128, 64)
        )
        data[preset] = {s: d.subset(s) for s in ("train", "query", "gallery")}
        print(f"  {preset}: {len(d.images)} images in {time.perf_counter() - t:.0f} s")
    print("  train on -> test on : Rank-1 / mAP (no training: raw histograms)")
    for src in data:
        x, y, _ = data[src]["train"]
        fx = _features(x)
        pca = PCA(128, random_state=0).fit(fx)
        lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(pca.transform(fx), y)
        for tgt in data:
            q, qp, qc = data[tgt]["query"]
            g, gp, gc = data[tgt]["gallery"]
            fq, fg = _features(q), _features(g)
            raw = evaluate_retrieval(fq, qp, qc, fg, gp, gc)
            s = evaluate_retrieval(
                lda.transform(pca.transform(fq)), qp, qc, lda.transform(pca.transform(fg)), gp, gc
            )
            print(
                f"  {src:12s} -> {tgt:12s}: Rank-1 {100 * s.rank1:5.1f} %  mAP {100 * s.mAP:5.1f} %"
                f"   (raw {100 * raw.rank1:.1f} / {100 * raw.mAP:.1f})"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--only", choices=["throughput", "baseline", "gap"], default=None)
    args = ap.parse_args()
    n_tp, n_base, n_gap = (6, 20, 40) if args.quick else (24, 100, 200)
    print(
        f"# bench_synth  (python {platform.python_version()}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs, processes={args.processes})"
    )
    _ = get_preset("mini-gspr")
    if args.only in (None, "throughput"):
        throughput(args.processes, n_tp)
    if args.only in (None, "baseline"):
        baseline(n_base, args.processes)
    if args.only in (None, "gap"):
        domain_gap(n_gap, args.processes)


if __name__ == "__main__":
    main()
