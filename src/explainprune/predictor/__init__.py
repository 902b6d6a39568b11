"""Relevance predictor: training-data shards, the convolutional model, metrics and training."""

from .model import Predictor, PredictorMismatchError
from .shards import Record, ShardWriter, load_records
from .train import train_predictor

__all__ = ["Predictor", "PredictorMismatchError", "Record", "ShardWriter", "load_records", "train_predictor"]
