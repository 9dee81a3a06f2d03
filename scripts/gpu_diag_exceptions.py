"""Which C++ exceptions survive on this machine? Each case runs in its own process, so a
crash in one does not hide the others. Usage: python scripts/gpu_diag_exceptions.py"""

import subprocess
import sys

CASES = {
    "torch-native CUDA error": "import torch; torch.mm(torch.ones(2,3,device='cuda'), torch.ones(2,3,device='cuda'))",
    "smcr CPU op error": "import torch, smcr_ext; torch.ops.smcr.knn(torch.ones(4, 2), 0, 16)",
    "smcr CUDA op error": "import torch, smcr_ext; torch.ops.smcr.knn(torch.ones(4, 2, device='cuda'), 0, 16)",
    "smcr CUDA kernel status error": "import torch, smcr_ext; torch.ops.smcr.cluster_iou(torch.tensor([0, 7], device='cuda'), torch.zeros(2, dtype=torch.long, device='cuda'))",
}
for name, code in CASES.items():
    for env in ({}, {"TORCH_SHOW_CPP_STACKTRACES": "0"}):
        r = subprocess.run([sys.executable, "-c", f"try:\n    {code}\nexcept RuntimeError as e:\n    print('caught:', str(e).splitlines()[0][:80])"],
                           capture_output=True, text=True, env={**__import__('os').environ, **env})
        print(f"{name} {env or ''}: rc={r.returncode} {r.stdout.strip()[:100]} {r.stderr.strip().splitlines()[-1][:100] if r.stderr.strip() else ''}")
