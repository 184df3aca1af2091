"""Utterance lengths for length-grouped batching.

Stage I trains with transformers' own sampler (``--train_sampling_strategy group_by_length``, which builds a
``LengthGroupedSampler`` on the ``--length_column_name`` column): ``utterance_lengths`` fills that column.
``bench/bench_padding.py`` measures what it saves against random batches.
"""
from __future__ import annotations

import math
import os


def utterance_lengths(dataset) -> list[float]:
    """Length of each row: the ``duration`` column, else the audio file size, else the text length (NaN = unknown).

    File size is proportional to duration for one format and rate; text length is the last resort (for
    text-only data it is what padding depends on anyway).
    """
    columns = dataset.column_names
    if "duration" in columns:
        durations = [float("nan") if d is None else float(d) for d in dataset["duration"]]
        if not all(math.isnan(d) for d in durations):
            return durations
    if "audio" in columns:
        paths = dataset["audio"]
        if any(paths):
            return [float(os.path.getsize(p)) if p and os.path.isfile(p) else float("nan") for p in paths]
    return [float(len(t)) for t in dataset["text"]]
