"""Build of smcr: the Python packages `smcr` and `smcr_ext`, and the compiled extension
`smcr_ext._C` (torch ops in `torch.ops.smcr`).

CPU kernels are always built. CUDA kernels are built when torch is a CUDA build and nvcc
is found; `SMCR_FORCE_CPU=1` builds CPU only, `SMCR_FORCE_CUDA=1` builds CUDA even where
no GPU is visible (and fails loudly when it cannot). Install with
`pip install --no-build-isolation .` so that the build uses the torch you have.
"""

import glob
import os
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError:  # pragma: no cover - a clear message beats a traceback
    sys.exit(
        "smcr needs PyTorch installed before it is built: pip install torch, then "
        "pip install --no-build-isolation ."
    )

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def _want_cuda() -> bool:
    if _flag("SMCR_FORCE_CPU"):
        return False
    if _flag("SMCR_FORCE_CUDA"):
        if torch.version.cuda is None or CUDA_HOME is None:
            sys.exit("SMCR_FORCE_CUDA=1 but torch is not a CUDA build or nvcc was not found")
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def _extension():
    rel = lambda paths: sorted(os.path.relpath(p, ROOT) for p in paths)  # noqa: E731
    kernels_cpu = rel(glob.glob(os.path.join(ROOT, "csrc", "kernels", "*_cpu.cpp")))
    glue = rel(glob.glob(os.path.join(ROOT, "csrc", "torch", "*.cpp")))
    glue_cuda = [p for p in glue if p.endswith("_cuda.cpp")]
    glue_cpu = [p for p in glue if not p.endswith("_cuda.cpp")]
    omp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    cxx = ["-O3", *omp]
    if _want_cuda():
        kernels_cu = rel(glob.glob(os.path.join(ROOT, "csrc", "kernels", "*.cu")))
        archs = os.environ.get("SMCR_CUDA_ARCHS", "80;90").split(";")
        gencode = []
        for a in archs:
            gencode += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
        nvcc = ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo", *gencode]
        return CUDAExtension(
            "smcr_ext._C",
            sources=kernels_cpu + glue_cpu + glue_cuda + kernels_cu,
            define_macros=[
                ("SMCR_WITH_CUDA", None),
                ("SMCR_CUDA_VERSION", f'"{torch.version.cuda}"'),
            ],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=omp,
        )
    return CppExtension(
        "smcr_ext._C",
        sources=kernels_cpu + glue_cpu,
        extra_compile_args={"cxx": cxx},
        extra_link_args=omp,
    )


PACKAGES = (
    find_packages(ROOT, include=["smcr_ext", "smcr_ext.*"])
    + ["smcr"]
    + ["smcr." + p for p in find_packages(os.path.join(ROOT, "python", "smcr"))]
)

setup(
    packages=PACKAGES,
    package_dir={"smcr": "python/smcr"},
    package_data={"smcr": ["configs/*.yaml"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
