"""Length-grouped batching (utterances and dialogues, distributed) and cache fingerprints."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from hcam.processing.fingerprint import (cache_fingerprint, fingerprint_dataset, fingerprint_files,
                                         hash_model_weights, make_fingerprint, processor_settings)
from hcam.processing.sampling import (LengthGroupedBatchSampler, dialogue_lengths, group_by_length,
                                      padding_fraction, utterance_lengths)


def lognormal_lengths(n=1000, seed=0):
    return np.random.default_rng(seed).lognormal(mean=1.0, sigma=0.6, size=n).tolist()


def test_group_by_length_covers_every_index_once_and_is_deterministic():
    lengths = lognormal_lengths()
    batches = group_by_length(lengths, batch_size=8, seed=3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    assert all(1 <= len(b) <= 8 for b in batches)
    assert batches == group_by_length(lengths, batch_size=8, seed=3)
    assert batches != group_by_length(lengths, batch_size=8, seed=4)
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # longest batch first: OOM shows at step 0


def test_grouping_pads_far_less_than_random_batches():
    lengths = lognormal_lengths()
    grouped = padding_fraction(group_by_length(lengths, batch_size=8, seed=0), lengths)
    order = np.random.default_rng(0).permutation(len(lengths)).tolist()
    random_batches = [order[i:i + 8] for i in range(0, len(order), 8)]
    random_padding = padding_fraction(random_batches, lengths)
    assert grouped < 0.5 * random_padding, (grouped, random_padding)
    sorted_padding = padding_fraction(group_by_length(lengths, 8, shuffle=False), lengths)
    assert sorted_padding <= grouped


def test_unknown_lengths_and_drop_last():
    batches = group_by_length([1.0, float("nan"), 3.0, 2.0, 5.0], batch_size=2, drop_last=True)
    assert all(len(b) == 2 for b in batches) and len(batches) == 2
    with pytest.raises(ValueError):
        group_by_length([1.0], batch_size=0)


@pytest.mark.parametrize("n_items", [100, 101, 7])
def test_distributed_ranks_share_the_epoch_and_split_the_batches(n_items):
    lengths = lognormal_lengths(n_items)
    samplers = [LengthGroupedBatchSampler(lengths, batch_size=4, seed=1, rank=r, world_size=2) for r in (0, 1)]
    per_rank = [list(s) for s in samplers]
    assert len(per_rank[0]) == len(per_rank[1]) == len(samplers[0])  # same step count on every rank
    seen = {i for batches in per_rank for b in batches for i in b}
    assert seen == set(range(n_items))
    single = list(LengthGroupedBatchSampler(lengths, batch_size=4, seed=1, rank=0, world_size=1))
    assert [b for pair in zip(*per_rank) for b in pair][:len(single)] == single
    for s in samplers:
        s.set_epoch(1)
    if n_items >= 100:  # 7 items fit one mega-batch: sorted, they batch the same every epoch
        assert [list(s) for s in samplers] != per_rank
    with pytest.raises(ValueError):
        LengthGroupedBatchSampler(lengths, 4, rank=2, world_size=2)


def toy_dataset():
    return Dataset.from_dict({
        "dialogue_id": ["a", "a", "b", "c", "c", "c"], "turn": [0, 1, 0, 0, 1, 2],
        "speaker": ["x"] * 6, "text": ["t"] * 6, "audio": [""] * 6, "label": ["l"] * 6,
        "duration": [1.0, 2.0, 10.0, 0.5, 0.5, float("nan")]})


def test_dialogue_lengths_and_dataloader():
    ds = toy_dataset()
    ids, rows, totals = dialogue_lengths(ds)
    assert ids == ["a", "b", "c"] and rows == [[0, 1], [2], [3, 4, 5]]
    # the unknown duration counts as the median of the known ones (1.0)
    assert totals == pytest.approx([3.0, 10.0, 2.0])
    assert utterance_lengths(ds)[:2] == [1.0, 2.0]
    sampler = LengthGroupedBatchSampler(totals, batch_size=2, seed=0, world_size=1, rank=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == [0, 1, 2]
    assert 1 in batches[0]  # the 10 s dialogue leads
    loader = torch.utils.data.DataLoader(list(range(6)), batch_sampler=LengthGroupedBatchSampler(
        utterance_lengths(ds), batch_size=4, rank=0, world_size=1), collate_fn=list)
    assert sorted(x for batch in loader for x in batch) == list(range(6))


# ------------------------------------------------------------------------------------------ fingerprints
def test_file_fingerprints_follow_the_files(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"1234")
    b.write_bytes(b"5678")
    first = fingerprint_files([b, a])
    assert first == fingerprint_files([a, b])  # order-free
    assert fingerprint_files([a, b], content=True) != first
    b.write_bytes(b"56789")
    assert fingerprint_files([a, b]) != first
    b.unlink()
    assert fingerprint_files([a, b]) != first


def test_cache_fingerprint_parts():
    ds = toy_dataset()
    base = cache_fingerprint(ds, processor={"sampling_rate": 16000}, max_audio_seconds=8)
    assert base == cache_fingerprint(ds, processor={"sampling_rate": 16000}, max_audio_seconds=8)
    assert base != cache_fingerprint(ds, processor={"sampling_rate": 8000}, max_audio_seconds=8)
    assert base != cache_fingerprint(ds, processor={"sampling_rate": 16000}, max_audio_seconds=6)
    assert base != cache_fingerprint(ds.select([0, 1]), processor={"sampling_rate": 16000}, max_audio_seconds=8)
    assert fingerprint_dataset({"train": ds}) == make_fingerprint({"train": ds._fingerprint})
    model = torch.nn.Linear(3, 2)
    with_model = cache_fingerprint(ds, model=model)
    assert with_model == cache_fingerprint(ds, model=model)
    with torch.no_grad():
        model.weight[0, 0] += 1.0
    assert with_model != cache_fingerprint(ds, model=model)


def test_weights_and_processor_fingerprints(tmp_path):
    from safetensors.torch import save_file
    from transformers import Wav2Vec2FeatureExtractor

    save_file({"w": torch.ones(2, 2)}, str(tmp_path / "model.safetensors"))
    folder_hash = hash_model_weights(tmp_path)
    save_file({"w": torch.zeros(2, 2)}, str(tmp_path / "model.safetensors"))
    assert hash_model_weights(tmp_path) != folder_hash
    with pytest.raises(FileNotFoundError):
        hash_model_weights(tmp_path / "nothing_here")
    fe = Wav2Vec2FeatureExtractor(sampling_rate=16000)
    settings = processor_settings(fe)
    assert settings["class"] == "Wav2Vec2FeatureExtractor" and settings["config"]["sampling_rate"] == 16000
    assert make_fingerprint(settings) != make_fingerprint(processor_settings(Wav2Vec2FeatureExtractor(sampling_rate=8000)))
