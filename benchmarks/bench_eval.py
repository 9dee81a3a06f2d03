"""Re-ID evaluation end to end (distance GEMM included) at Market-1501's test sizes:
smcr.evaluate vs a plain NumPy argsort evaluator vs torchreid 0.2.5's Python evaluate_rank.

    python benchmarks/bench_eval.py                      # 3,368 x 15,913, d = 2048, CPU
    python benchmarks/bench_eval.py --features random    # the worst case for our ranking
    python benchmarks/bench_eval.py --device cuda --skip-torchreid --skip-numpy

Labels are Market-like: 750 identities, 6 cameras, 2,793 distractors (pid 0) in the gallery
(Market's 15,913 = 19,732 gallery images less its 3,819 junk, which torchreid drops).
"clustered" features (default) are identity centres plus noise, tuned to a trained model's
mAP; "random" features put every match anywhere in its row. Every method gets the same
features, computes its own distance matrix (cosine) and must agree on mAP and CMC.
torchreid 0.2.5 is a test dependency (pip install --no-deps torchreid==0.2.5); its
metrics/rank.py is loaded from its file, since importing the package needs torchvision.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import sys
import time
import warnings

import numpy as np
import torch
from common import cpu_name
from smcr.evaluation import distance_matrix, evaluate, evaluate_distmat, evaluate_reference


def market_like(num_query: int, num_gallery: int, dim: int, features: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    nid, ncam, ndis = 750, 6, min(2793, num_gallery // 5)
    q_pids = torch.randint(1, nid + 1, (num_query,), generator=g)
    g_pids = torch.randint(1, nid + 1, (num_gallery,), generator=g)
    g_pids[:ndis] = 0
    q_cams = torch.randint(0, ncam, (num_query,), generator=g)
    g_cams = torch.randint(0, ncam, (num_gallery,), generator=g)
    if features == "random":
        qf = torch.randn(num_query, dim, generator=g)
        gf = torch.randn(num_gallery, dim, generator=g)
    else:
        sigma = 3.3
        centres = torch.randn(nid + 1, dim, generator=g)
        qf = centres[q_pids] + sigma * torch.randn(num_query, dim, generator=g)
        gf = centres[g_pids] + sigma * torch.randn(num_gallery, dim, generator=g)
        gf[:ndis] = (1 + sigma**2) ** 0.5 * torch.randn(ndis, dim, generator=g)
    return qf, gf, q_pids, g_pids, q_cams, g_cams


def load_torchreid_rank():
    spec = importlib.util.find_spec("torchreid")
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "reid", "metrics", "rank.py")
    saved = sys.modules.get("torchreid", "absent")
    sys.modules["torchreid"] = None
    try:
        mspec = importlib.util.spec_from_file_location("_torchreid_rank", path)
        mod = importlib.util.module_from_spec(mspec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mspec.loader.exec_module(mod)
    finally:
        if saved == "absent":
            del sys.modules["torchreid"]
        else:
            sys.modules["torchreid"] = saved
    return mod


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeats: int, sync=lambda: None):
    times, out = [], None
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return out, times




def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--num-query", type=int, default=3368)
    ap.add_argument("--num-gallery", type=int, default=15913)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--features", choices=["clustered", "random"], default="clustered")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--skip-numpy", action="store_true")
    ap.add_argument("--skip-torchreid", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    qf, gf, qp, gp, qc, gc = market_like(
        args.num_query, args.num_gallery, args.dim, args.features, args.seed
    )
    qf, gf = qf.to(dev), gf.to(dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    print(
        f"# bench_eval: {args.num_query} x {args.num_gallery}, d={args.dim}, "
        f"{args.features} features, device {dev} ({name}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    # warm-up (first-call allocations, BLAS start-up)
    evaluate(qf[:256], gf, qp[:256], gp, qc[:256], gc)
    sync()

    rows = []
    res, t = timed(lambda: evaluate(qf, gf, qp, gp, qc, gc), args.repeats, sync)
    rows.append(("smcr.evaluate (GEMM + ranking)", t))
    print(f"  result: {res}")
    full, t_gemm = timed(lambda: distance_matrix(qf, gf, "cosine"), args.repeats, sync)
    rows.append(("  of which: distance GEMM alone", t_gemm))
    _, t_rank = timed(lambda: evaluate_distmat(full, qp, gp, qc, gc), args.repeats, sync)
    rows.append(("  of which: ranking a given matrix", t_rank))
    rss_ours = maxrss_mib()
    full = None  # free it before the peers allocate theirs

    checks = []
    if not args.skip_numpy:
        qn = torch.nn.functional.normalize(qf.cpu(), dim=1).numpy()
        gn = torch.nn.functional.normalize(gf.cpu(), dim=1).numpy()

        def numpy_eval():
            d = 1.0 - qn @ gn.T
            return evaluate_reference(d, qp.numpy(), gp.numpy(), qc.numpy(), gc.numpy())

        ref, t = timed(numpy_eval, 1)
        rows.append(("NumPy argsort evaluator (GEMM + argsort)", t))
        checks.append(("NumPy", ref["mAP"], ref["cmc"]))

    if not args.skip_torchreid:
        tr = load_torchreid_rank()
        if tr is None:
            print(
                "  torchreid 0.2.5 not installed (pip install --no-deps torchreid==0.2.5): skipped"
            )
        else:
            qcpu, gcpu = qf.cpu(), gf.cpu()

            def torchreid_eval():
                # torchreid's compute_distance_matrix(metric="cosine"): 1 - normalised GEMM
                d = 1 - torch.mm(
                    torch.nn.functional.normalize(qcpu, dim=1),
                    torch.nn.functional.normalize(gcpu, dim=1).t(),
                )
                return tr.evaluate_rank(
                    d.numpy(),
                    qp.numpy(),
                    gp.numpy(),
                    qc.numpy(),
                    gc.numpy(),
                    max_rank=50,
                    use_cython=False,
                )

            (cmc_tr, map_tr), t = timed(torchreid_eval, 1)
            rows.append(("torchreid 0.2.5 evaluate_rank (Python)", t))
            checks.append(("torchreid", map_tr, cmc_tr))

    base = min(rows[0][1])
    print(f"\n{'method':44s} {'best s':>9s} {'median s':>9s} {'vs ours':>8s}")
    for label, t in rows:
        print(f"{label:44s} {min(t):9.3f} {statistics.median(t):9.3f} {min(t) / base:7.1f}x")
    print(
        f"\npeak RSS after ours: {rss_ours:.0f} MiB; after all: {maxrss_mib():.0f} MiB; "
        f"load average at the end {os.getloadavg()[0]:.2f}"
    )
    for who, m, cmc in checks:
        dm = abs(m - res.mAP)
        dc = float(np.abs(np.asarray(cmc)[:50] - res.cmc.numpy()[: len(cmc)]).max())
        ok = "OK" if dm <= 1e-6 and dc <= 1e-6 else "MISMATCH"
        print(f"agreement with {who}: |dmAP| {dm:.1e}, max |dCMC| {dc:.1e} {ok}")


if __name__ == "__main__":
    main()
