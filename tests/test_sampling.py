"""Stage I's length-grouped batches (transformers' sampler on the `length` column run_stage fills) and the weights
fingerprint that keys the on-disk caches."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from tiny import tiny_hcam_config

from hcam.modeling_hcam import HCAMForEmotionRecognition
from hcam.processing.sampling import utterance_lengths
from hcam.trainer.embedding_cache import hash_model_weights


def utterances(n=3200, seed=0, **columns):
    rng = np.random.default_rng(seed)
    durations = np.clip(rng.lognormal(np.log(2.6), 0.75, n), 0.05, 15.0)
    data = {"dialogue_id": [str(i // 8) for i in range(n)], "turn": [i % 8 for i in range(n)], "speaker": ["a"] * n,
            "text": ["word " * int(1 + 3 * d) for d in durations], "audio": [""] * n, "label": ["neutral"] * n,
            "duration": durations.tolist()}
    data.update(columns)
    return Dataset.from_dict(data)


def test_utterance_lengths_prefer_duration_then_file_size_then_text(tmp_path):
    ds = utterances(4, duration=[1.0, None, 3.0, 2.0])
    assert utterance_lengths(ds)[0] == 1.0 and np.isnan(utterance_lengths(ds)[1])
    clips = [tmp_path / f"{i}.wav" for i in range(4)]
    for i, clip in enumerate(clips):
        clip.write_bytes(b"x" * (100 * (i + 1)))
    ds = utterances(4, duration=[None] * 4, audio=[str(c) for c in clips[:3]] + [str(tmp_path / "missing.wav")])
    assert utterance_lengths(ds)[:3] == [100.0, 200.0, 300.0] and np.isnan(utterance_lengths(ds)[3])
    ds = utterances(2, duration=[None, None], text=["abc", "abcdef"])
    assert utterance_lengths(ds) == [3.0, 6.0]


def loader_batches(tmp_path, modality, dataset, *flags):
    """Index batches of one epoch from the Trainer run_stage builds for stage 1 of `modality`."""
    from hcam.trainer.arguments import parse_args
    from hcam.trainer.trainer import HCAMStageTrainer

    _, _, args = parse_args(["--stage", "1", "--modality", modality, "--dataset_name", "demo", "--output_dir",
                             str(tmp_path), "--report_to", "none", *flags])
    indexed = dataset.add_column("index", range(len(dataset)))
    trainer = HCAMStageTrainer(model=HCAMForEmotionRecognition(tiny_hcam_config(1, (modality,))), args=args,
                               train_dataset=indexed, eval_dataset=indexed, label_names=["neutral"],
                               data_collator=lambda features: [f["index"] for f in features])
    torch.manual_seed(0)
    return [list(batch) for batch in trainer.get_train_dataloader()], args


def padding_efficiency(batches, lengths):
    return sum(lengths[b].sum() for b in batches) / sum(len(b) * lengths[b].max() for b in batches)


@pytest.mark.parametrize("modality", ["audio", "text"])
def test_stage1_training_batches_group_similar_lengths(tmp_path, modality):
    from hcam.trainer.data import with_lengths

    raw = utterances(duration=[None] + utterances()["duration"][1:])  # one unknown duration: sorts as typical
    split = with_lengths(DatasetDict(train=raw), modality)["train"]
    lengths = np.asarray(split["length"])
    assert not np.isnan(lengths).any()
    expected = [float(len(t)) for t in raw["text"]] if modality == "text" else raw["duration"][1:]
    assert (lengths if modality == "text" else lengths[1:]).tolist() == pytest.approx(expected)

    grouped, args = loader_batches(tmp_path, modality, split)
    assert args.train_sampling_strategy == "group_by_length" and args.length_column_name == "length"
    random, _ = loader_batches(tmp_path, modality, split, "--train_sampling_strategy", "random")
    assert sorted(i for b in grouped for i in b) == list(range(len(split)))  # every utterance once per epoch
    assert {len(b) for b in grouped[:-1]} == {args.per_device_train_batch_size}
    assert padding_efficiency(grouped, lengths) > 0.85 > 0.6 > padding_efficiency(random, lengths)


def test_weights_fingerprint_follows_every_tensor():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    key = hash_model_weights(model)
    assert key == hash_model_weights(model.state_dict()) and len(key) == 24
    with torch.no_grad():
        model[1].bias[0] += 1e-3
    assert hash_model_weights(model) != key
    renamed = {f"x.{name}": value for name, value in model.state_dict().items()}
    assert hash_model_weights(renamed) != hash_model_weights(model)
    assert hash_model_weights({"w": torch.zeros(2, 3)}) != hash_model_weights({"w": torch.zeros(3, 2)})
