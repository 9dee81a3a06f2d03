"""The SMCR training pipeline: `train(config)` (api), the stages (engine), in-memory
domains and batch streams (domains), and the run folder (rundir)."""

from .api import TrainResult, train
from .engine import TrainingDiverged

__all__ = ["TrainResult", "TrainingDiverged", "train"]
