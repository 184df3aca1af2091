"""Length-grouped batching: batches of similar duration so that padding stays low.

Two granularities, one algorithm:
- utterance batches (stage I): lengths = utterance durations (``utterance_lengths``);
- dialogue batches (stages II-III): lengths = total dialogue durations (``dialogue_lengths``), and
  each batch holds dialogue indices (``dialogue_lengths`` also returns each dialogue's row indices).

The algorithm is transformers' ``get_length_grouped_indices``: shuffle with the seed, cut into
"mega-batches" of ``mega_batch_mult * batch_size`` items, sort each mega-batch by length, cut into
batches, then shuffle the batch order. Sorting inside mega-batches keeps padding low while keeping
batches random across epochs; a bigger ``mega_batch_mult`` pads less and randomises less. The
result depends only on (lengths, batch_size, seed, epoch), so every distributed rank computes the
same batch list and takes every ``world_size``-th batch.
"""
from __future__ import annotations

import math
import os
from typing import Iterator, Sequence

import numpy as np


def group_by_length(lengths: Sequence[float], batch_size: int, seed: int = 0, mega_batch_mult: int = 50,
                    drop_last: bool = False, shuffle: bool = True) -> list[list[int]]:
    """Batches of indices whose lengths are close.

    Args:
        lengths: one length per item (seconds, samples or tokens; unknown = NaN, treated as the median).
        batch_size: items per batch.
        seed: shuffling seed (same seed, same batches).
        mega_batch_mult: mega-batch size in batches; sorting happens inside a mega-batch.
        drop_last: drop batches smaller than batch_size (at most one per mega-batch).
        shuffle: False = fully sorted by length, longest first (for evaluation: least padding).
    Returns:
        list of batches (lists of int indices); the longest batch comes first, so an out-of-memory
        error shows up at step 0, not hours later.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    values = np.asarray(lengths, dtype=np.float64)
    if values.size == 0:
        return []
    known = ~np.isnan(values)
    if not known.all():
        values = values.copy()
        values[~known] = np.median(values[known]) if known.any() else 0.0
    rng = np.random.default_rng(seed)
    if shuffle:
        order = rng.permutation(len(values))
        mega = max(1, mega_batch_mult) * batch_size
        chunks = [order[i:i + mega] for i in range(0, len(order), mega)]
    else:
        chunks = [np.arange(len(values))]
    batches = []
    for chunk in chunks:
        chunk = chunk[np.argsort(-values[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    if drop_last:
        batches = [b for b in batches if len(b) == batch_size]
    if shuffle and len(batches) > 1:
        longest = max(range(len(batches)), key=lambda i: max(values[j] for j in batches[i]))
        first = batches.pop(longest)
        batches = [first] + [batches[i] for i in rng.permutation(len(batches))]
    return batches


def padding_fraction(batches: list[list[int]], lengths: Sequence[float]) -> float:
    """Share of padded positions when each batch is padded to its longest item."""
    values = np.asarray(lengths, dtype=np.float64)
    padded = sum(len(b) * values[b].max() for b in batches if b)
    real = sum(values[b].sum() for b in batches if b)
    return float(1.0 - real / padded) if padded else 0.0


def utterance_lengths(dataset) -> list[float]:
    """Duration of each row: the ``duration`` column, else the audio file size, else the text length.

    File size is proportional to duration for one format/rate; text length is the last resort (for
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


def dialogue_lengths(dataset) -> tuple[list[str], list[list[int]], list[float]]:
    """(dialogue ids in order of first appearance, row indices of each, total duration of each)."""
    row_lengths = utterance_lengths(dataset)
    index: dict[str, int] = {}
    rows: list[list[int]] = []
    for i, dialogue_id in enumerate(dataset["dialogue_id"]):
        if dialogue_id not in index:
            index[dialogue_id] = len(rows)
            rows.append([])
        rows[index[dialogue_id]].append(i)
    values = np.asarray(row_lengths, dtype=np.float64)
    if np.isnan(values).any():
        known = ~np.isnan(values)
        values[~known] = np.median(values[known]) if known.any() else 1.0
    totals = [float(values[r].sum()) for r in rows]
    return list(index), rows, totals


class LengthGroupedBatchSampler:
    """A batch sampler (yields lists of indices) grouping items of similar length.

    Works as ``DataLoader(dataset, batch_sampler=sampler)``. For dialogue batches build it on
    ``dialogue_lengths(ds)[2]`` and map the yielded dialogue indices to rows yourself (or use a
    dataset of dialogues). Distributed: every rank builds the same batches from (seed, epoch) and
    keeps batches ``rank, rank + world_size, ...``; the batch list is padded by repeating batches
    from its start so every rank runs the same number of steps (DDP would hang otherwise).

    Args:
        lengths: one length per item.
        batch_size: items per batch (per rank).
        seed: base seed; the epoch is added (call ``set_epoch`` each epoch).
        rank, world_size: this process and the number of processes (defaults from torch.distributed
            when initialised, else 0 and 1).
        mega_batch_mult, drop_last, shuffle: see ``group_by_length``.
    """

    def __init__(self, lengths: Sequence[float], batch_size: int, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, mega_batch_mult: int = 50, drop_last: bool = False,
                 shuffle: bool = True):
        if rank is None or world_size is None:
            try:
                import torch.distributed as dist

                initialised = dist.is_available() and dist.is_initialized()
            except ImportError:
                initialised = False
            rank = (dist.get_rank() if initialised else 0) if rank is None else rank
            world_size = (dist.get_world_size() if initialised else 1) if world_size is None else world_size
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must be in [0, world_size={world_size})")
        self.lengths = list(lengths)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.mega_batch_mult, self.drop_last, self.shuffle = mega_batch_mult, drop_last, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        batches = group_by_length(self.lengths, self.batch_size, seed=self.seed + self.epoch,
                                  mega_batch_mult=self.mega_batch_mult, drop_last=self.drop_last,
                                  shuffle=self.shuffle)
        if self.world_size > 1 and batches:
            remainder = len(batches) % self.world_size
            if remainder:
                if self.drop_last:
                    batches = batches[:len(batches) - remainder]
                else:
                    extra = self.world_size - remainder
                    batches = batches + [batches[i % len(batches)] for i in range(extra)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._all_batches()[self.rank::self.world_size]

    def __len__(self) -> int:
        return len(self._all_batches()[self.rank::self.world_size])
