"""smcr: unsupervised domain-adaptive person re-ID that learns from synthetic data.

The SMCR method (synthetic pretraining, DTHR + RIHR hybrid refinement, collaborative
refinement) over fast, exact, sparse pseudo-label kernels (CPU + CUDA). Sub-packages:

    smcr.synth      procedural synthetic person data with automatic labels (GSPR-like)
    smcr.data       readers (Market-1501, DukeMTMC-reID, MSMT17, synthetic, custom),
                    dataset, identity sampler, augmentation
    smcr.models     ResNet-18/34/50 and IBN-a backbones, re-ID head, DSBN, local weights
    smcr.evaluation mAP / mINP / CMC (Market-1501 protocol), k-reciprocal re-ranking
    smcr.cluster    PseudoLabeler: k-reciprocal Jaccard + DBSCAN + reliability criteria
    smcr.losses     HybridMemory, SoftTripletLoss (fused kernels)
    smcr.training   train(config): synthetic pretraining, DTHR + RIHR, collaborative refinement
    smcr.reference  dense PyTorch references of the kernels (test oracles)
    smcr.simulate   re-ID-like feature sets for tests and benchmarks
"""

from __future__ import annotations

from smcr_ext import backends

from .cluster import ClusteringCollapsed, PseudoLabeler, PseudoLabels
from .config import TrainConfig, load_config
from .evaluation import EvalResult, NoValidQueryError, evaluate, evaluate_distmat
from .export import export_onnx
from .extract import ExtractResult, extract
from .models import ModelConfig, ReIDModel, build_model, load_checkpoint, save_checkpoint
from .training import TrainingDiverged, TrainResult, train
from .visualize import visualize_ranks

__version__ = "0.1.0"

__all__ = [
    "ClusteringCollapsed",
    "EvalResult",
    "ExtractResult",
    "ModelConfig",
    "NoValidQueryError",
    "PseudoLabeler",
    "PseudoLabels",
    "ReIDModel",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "__version__",
    "backends",
    "build_model",
    "evaluate",
    "evaluate_distmat",
    "export_onnx",
    "extract",
    "load_checkpoint",
    "load_config",
    "save_checkpoint",
    "train",
    "visualize_ranks",
]
