"""One stage-2 epoch of the real-size recipe: time per iteration and per clustering step.

Two branches (DTHR, RIHR) of IBN-ResNet50 at 256x128 with 64 source + 64 target images per
iteration, hybrid memories, mean teachers and the collaborative soft triplet, on a
generated Market-size source and Duke-size target (our renderer). The DTHR branch reads the
raw source images here: a translated copy has the same size and cost, and the translator's
own training is measured by bench_translate.py. Prints seconds per iteration, per
clustering step (both branches), the epoch, and the projection for the paper's 50 x 400.

    python benchmarks/bench_train_epoch.py --device cuda                 # the real size
    python benchmarks/bench_train_epoch.py --device cpu --tiny           # a smoke test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from smcr.cluster import PseudoLabeler
from smcr.models import build_model
from smcr.models.dsbn import convert_dsbn
from smcr.synth import generate
from smcr.training import engine
from smcr.training.domains import load_split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--source-ids", type=int, default=1502, help="identities rendered (half train)")
    p.add_argument("--target-ids", type=int, default=1404)
    p.add_argument("--size", type=int, nargs=2, default=[256, 128])
    p.add_argument("--arch", default="resnet50_ibn_a")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=64, help="source and target images per iteration")
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--data", default=None, help="folder for the generated domains (default: a temp dir)")
    p.add_argument("--tiny", action="store_true", help="a CPU smoke test: small everything")
    args = p.parse_args()
    if args.tiny:
        args.source_ids, args.target_ids, args.size = 16, 16, [64, 32]
        args.arch, args.width, args.batch, args.iters = "resnet18_ibn_a", 0.25, 16, 3
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda needs a GPU")
    size = tuple(args.size)
    data = Path(args.data or tempfile.mkdtemp(prefix="smcr-epoch-"))
    t0 = time.time()
    roots = {}
    for name, preset, ids, seed in (("source", "market-like", args.source_ids, 1),
                                    ("target", "duke-like", args.target_ids, 2)):
        roots[name] = data / f"{name}-{ids}"
        if not roots[name].is_dir():
            generate(preset, roots[name], ids, seed=seed, image_size=size)
    t_gen = time.time() - t0
    _, src, _, _ = load_split(roots["source"], "auto", size, "source")
    _, tgt, _, _ = load_split(roots["target"], "auto", size, "target")
    print(f"data: source {len(src)} images / {src.num_classes} ids, target {len(tgt)} images "
          f"(generated and loaded in {time.time() - t0:.0f} s, generation {t_gen:.0f} s)", flush=True)
    amp = device.type == "cuda"
    branches = []
    for name in ("dthr", "rihr"):
        student = convert_dsbn(build_model(arch=args.arch, width=args.width)).to(device).train()
        if device.type == "cuda":
            student = student.to(memory_format=torch.channels_last)
        teacher = engine.make_teacher(student)
        memory = engine.build_memory(student, src, tgt, size=size, batch=256, device=device,
                                     amp=amp, temperature=0.05, momentum=0.2)
        branches.append(engine.Branch(name, student, teacher, memory, src, PseudoLabeler(k1=30 if not args.tiny else 8, k2=6 if not args.tiny else 3)))
    params = [q for b in branches for q in b.student.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=3.5e-4, weight_decay=5e-4)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.time()
    for b in branches:
        engine.cluster_branch(b, b.memory.target_features.float(), 0)
    sync()
    t_cluster = time.time() - t0
    # warm-up iterations (cuDNN autotuning, allocator), then the timed epoch
    kw = dict(size=size, batch_source=args.batch, batch_target=args.batch, num_instances=4,
              alpha=0.5, beta=0.01, collaborative=True, ema=0.999, seed=1, device=device, amp=amp)
    engine.refine_epoch(branches, tgt, opt, epoch=0, iters=min(3, args.iters), step0=0, **kw)
    sync()
    t0 = time.time()
    losses = engine.refine_epoch(branches, tgt, opt, epoch=1, iters=args.iters, step0=3, **kw)
    sync()
    t_epoch = time.time() - t0
    per_iter = t_epoch / args.iters
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"device {name}; {args.arch} width {args.width}, {size[0]}x{size[1]}, "
          f"{args.batch}+{args.batch} images per iteration, bf16 autocast: {amp}")
    print(f"clustering step (both branches, N_t = {len(tgt)}): {t_cluster:.2f} s")
    print(f"iteration: {1000 * per_iter:.1f} ms ({2 * args.batch / per_iter:.0f} images/s per branch pair)")
    print(f"{args.iters} iterations: {t_epoch:.1f} s (+ clustering {t_cluster:.1f} s)")
    paper_epoch = 400 * per_iter + t_cluster
    print(f"projected paper schedule (50 epochs x 400 iterations): {50 * paper_epoch / 3600:.2f} h "
          f"({paper_epoch:.0f} s per epoch); final losses {losses}")


if __name__ == "__main__":
    main()
