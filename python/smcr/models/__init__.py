"""Re-ID backbones: ResNet-18/34/50 and IBN-a versions, GeM/avg pooling, BN neck, DSBN,
and weight loading from local files (torchvision, timm, IBN-Net, SpCL layouts)."""

from .dsbn import DSBN, convert_dsbn, set_dsbn_domain
from .reid import GeM, ModelConfig, ReIDModel, ReIDOutput, build_model
from .resnet import ARCHS, IBN, ResNet, resnet
from .weights import (
    LoadReport,
    load_checkpoint,
    load_pretrained,
    load_state_file,
    save_checkpoint,
)

__all__ = [
    "ARCHS",
    "DSBN",
    "GeM",
    "IBN",
    "LoadReport",
    "ModelConfig",
    "ReIDModel",
    "ReIDOutput",
    "ResNet",
    "build_model",
    "convert_dsbn",
    "load_checkpoint",
    "load_pretrained",
    "load_state_file",
    "resnet",
    "save_checkpoint",
    "set_dsbn_domain",
]
