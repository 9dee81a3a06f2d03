"""Domain translator: SPGAN / eSPGAN-style identity-preserving image translation.

SMCR uses it twice (paper §IV-B, §IV-C, Eq. 2): synthetic -> source images D^SR for
synthetic pretraining and source -> target images D^RT for the DTHR branch.

    from smcr.translate import TranslateConfig, translate_domain
    d_rt = translate_domain("data/market", "data/duke", "cache/translate", TranslateConfig())
    # d_rt.root: market images in duke's style, same names / labels / layout

Lower level: `train_translator` (a resumable training run in one folder), `Translator`
(a trained G_AB / G_BA pair), `translate_dataset` (a dataset to disk); networks, losses and
the history pool are in `networks`, `losses` and `pool`. CLI: `smcr translate train|apply`
(`add_translate_parser`).
"""

from .apply import list_dataset_files, translate_dataset
from .cache import CachedTranslation, translate_domain
from .classifier import IdeClassifier, build_classifier, pretrain_classifier
from .cli import add_translate_parser
from .config import TranslateConfig, TranslateError, load_config
from .losses import (
    contrastive_loss,
    ide_cross_entropy,
    l1_loss,
    lsgan_loss,
    siamese_generator_loss,
    siamese_metric_loss,
)
from .networks import MetricNet, PatchDiscriminator, ResnetGenerator, init_weights
from .pool import ImagePool
from .trainer import TrainResult, Translator, build_generators, run_key, train_translator

__all__ = [
    "CachedTranslation",
    "IdeClassifier",
    "ImagePool",
    "MetricNet",
    "PatchDiscriminator",
    "ResnetGenerator",
    "TrainResult",
    "TranslateConfig",
    "TranslateError",
    "Translator",
    "add_translate_parser",
    "build_classifier",
    "build_generators",
    "contrastive_loss",
    "ide_cross_entropy",
    "init_weights",
    "l1_loss",
    "list_dataset_files",
    "load_config",
    "lsgan_loss",
    "pretrain_classifier",
    "run_key",
    "siamese_generator_loss",
    "siamese_metric_loss",
    "train_translator",
    "translate_dataset",
    "translate_domain",
]
