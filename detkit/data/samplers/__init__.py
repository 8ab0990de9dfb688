"""Samplers: training streams (plain, repeat-factor), the sharded inference order, grouped batching."""
from .distributed_sampler import InferenceSampler, RepeatFactorTrainingSampler, TrainingSampler
from .grouped_batch_sampler import AspectRatioGroupedBatchSampler, GroupedBatchSampler

__all__ = ["TrainingSampler", "RepeatFactorTrainingSampler", "InferenceSampler", "GroupedBatchSampler",
           "AspectRatioGroupedBatchSampler"]
