"""Training-step throughput of the re-ID backbone: forward + backward of IBN-ResNet50 at
256 x 128, batch 128, bf16 autocast and channels-last, in images per second.

    python benchmarks/bench_models.py --device cuda            # the recorded figure (GPU)
    python benchmarks/bench_models.py --device cpu --batch-size 8 --warmup 1 --iters 2

The step is what a UDA iteration does to the encoder: forward through trunk, pooling, BN
neck and an identity classifier, a cross-entropy loss on the logits plus a term on the
embedding, backward, and (with --step) an Adam update. Timing covers only whole steps,
after warm-up, with the device synchronised.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from common import cpu_name
from smcr.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default="resnet50_ibn_a")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--image-width", type=int, default=128)
    ap.add_argument("--num-classes", type=int, default=751)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--no-amp", action="store_true", help="float32 instead of bf16 autocast")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--step", action="store_true", help="include the Adam update")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = ap.parse_args()

    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda but CUDA is not available")
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(dev)
        sync = torch.cuda.synchronize
    else:
        name = cpu_name()
        sync = lambda: None  # noqa: E731
    amp = not args.no_amp
    cl = not args.no_channels_last
    model = build_model(arch=args.arch, width=args.width, num_classes=args.num_classes).to(dev)
    model.train()
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=3.5e-4, weight_decay=5e-4)
    fwd = torch.compile(model.forward_all) if args.compile else model.forward_all

    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.height, args.image_width, generator=g).to(dev)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, args.num_classes, (args.batch_size,), generator=g).to(dev)

    def train_step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            out = fwd(x)
            loss = F.cross_entropy(out.logits.float(), y) + out.embedding.float().pow(2).mean()
        loss.backward()
        if args.step:
            opt.step()
        opt.zero_grad(set_to_none=True)

    print(
        f"# bench_models: {args.arch} width {args.width}, batch {args.batch_size}, "
        f"{args.height}x{args.image_width}, {'bf16 autocast' if amp else 'fp32'}, "
        f"{'channels-last' if cl else 'NCHW'}, {'fwd+bwd+Adam' if args.step else 'fwd+bwd'}"
        f"{', compiled' if args.compile else ''}"
    )
    print(
        f"# device {dev}: {name}; torch {torch.__version__}"
        + (
            f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
            if dev.type == "cuda"
            else f", {torch.get_num_threads()} threads"
        )
    )
    try:
        for _ in range(args.warmup):
            train_step()
        sync()
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            train_step()
            sync()
            times.append(time.perf_counter() - t0)
    except torch.OutOfMemoryError as e:
        raise SystemExit(f"out of memory at batch {args.batch_size}: {e}") from e
    best, med = min(times), statistics.median(times)
    print(
        f"step time: median {1000 * med:.1f} ms, best {1000 * best:.1f} ms over {args.iters} steps"
    )
    print(
        f"throughput: {args.batch_size / med:.0f} images/s (median), "
        f"{args.batch_size / best:.0f} images/s (best)"
    )
    if dev.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
