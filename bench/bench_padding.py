#!/usr/bin/env python
"""Benchmark 3: padding efficiency (real / padded frames) of the batches training actually gets, against random.

The batches come from the code training runs: the command line goes through run_stage's `parse_args` (so the
stage's defaults apply: stage I `--train_sampling_strategy group_by_length --length_column_name length`, its
batch size), the `length` column is filled by `hcam.trainer.data.with_lengths` (as run_stage.py fills it), and the index batches are read from
`HCAMStageTrainer.get_train_dataloader()` (transformers' `LengthGroupedSampler` behind it). The other side is the
same command with `--train_sampling_strategy random`.
Bar: stage I's batches reach >= 0.90 on MELD's durations. Stages II-III train with their default (random) order on
cached embeddings; their row is information only (padding in turns).

Durations and transcripts are MELD's own (train split CSV: EndTime - StartTime cut to the processor's 0.05-15 s
window, Utterance) when /work/shared/data/meld is present, else a log-normal fitted to MELD (median 2.6 s).

    python bench/bench_padding.py [--quick]
"""

import csv
import os
import tempfile

import numpy as np
import torch
from common import hcam_config, machine, parser, report, row

BAR = 0.90
MELD_CSV = os.environ.get("HCAM_MELD_TRAIN_CSV") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "meld", "train_sent_emo.csv")
STAGE2 = ["--stage", "2", "--modality", "text", "--init_from", "stage1-text"]


def seconds(timestamp):
    hours, minutes, rest = timestamp.split(":")
    secs, millis = rest.split(",")
    return int(hours) * 3600 + int(minutes) * 60 + int(secs) + int(millis) / 1000


def meld_rows():
    """(utterance rows in hcam's schema with a `duration` column, source name)."""
    if os.path.isfile(MELD_CSV):
        with open(MELD_CSV, encoding="utf-8") as f:
            records = list(csv.DictReader(f))
        durations = [seconds(r["EndTime"]) - seconds(r["StartTime"]) for r in records]
        texts, dialogues = [r["Utterance"] for r in records], [r["Dialogue_ID"] for r in records]
        source = f"MELD train ({MELD_CSV})"
    else:
        rng = np.random.default_rng(0)
        durations = rng.lognormal(np.log(2.6), 0.75, 9989).tolist()
        texts = ["word " * int(max(1, 4 * d)) for d in durations]
        dialogues = [str(d) for d in np.sort(rng.integers(0, 1039, len(durations)))]
        source = "log-normal fitted to MELD"
    turns, count = [], {}
    for dialogue in dialogues:
        turns.append(count.get(dialogue, 0))
        count[dialogue] = turns[-1] + 1
    columns = {"dialogue_id": dialogues, "turn": turns, "speaker": ["s"] * len(texts), "text": texts,
               "audio": [""] * len(texts), "label": ["neutral"] * len(texts),
               "duration": np.clip(durations, 0.05, 15.0).tolist()}
    return columns, source


def training_batches(argv, dataset, modalities, epochs, workdir):
    """Index batches of `epochs` epochs from the Trainer that `run_stage.py <argv>` would build."""
    from hcam.modeling_hcam import HCAMForEmotionRecognition
    from hcam.trainer.arguments import parse_args
    from hcam.trainer.trainer import HCAMStageTrainer

    _, _, args = parse_args([*argv, "--dataset_name", "demo", "--output_dir", workdir, "--report_to", "none"])
    stage = args.stage
    model = HCAMForEmotionRecognition(hcam_config("tiny", stage, modalities))
    indexed = dataset.add_column("index", range(len(dataset)))
    trainer = HCAMStageTrainer(model=model, args=args, train_dataset=indexed, eval_dataset=indexed,
                               data_collator=lambda features: [f["index"] for f in features], label_names=["neutral"])
    loader = trainer.get_train_dataloader()
    batches = []
    for epoch in range(epochs):
        torch.manual_seed(epoch)
        epoch_batches = [np.asarray(batch) for batch in loader]
        assert {len(b) for b in epoch_batches[:-1]} == {args.per_device_train_batch_size}  # only the last is short
        batches += epoch_batches
    return batches, args


def efficiency(batches, lengths):
    return float(sum(lengths[b].sum() for b in batches) / sum(len(b) * lengths[b].max() for b in batches))


def compare(case, argv, other, dataset, lengths, modalities, epochs, workdir, bar):
    """Training's batches for `argv` against the same command with the `other` sampling strategy."""
    trained, args = training_batches(argv, dataset, modalities, epochs, workdir)
    flags = ["--train_sampling_strategy", other] + (["--length_column_name", "length"] if other != "random" else [])
    alternative, _ = training_batches([*argv, *flags], dataset, modalities, epochs, workdir)
    ours, theirs = efficiency(trained, lengths), efficiency(alternative, lengths)
    measured = f"training's ({args.train_sampling_strategy}) {ours:.3f} vs {other} {theirs:.3f}"
    case = f"{case}, batch {args.per_device_train_batch_size}"
    if bar is None:
        return row("3 padding", case, measured, "(info)", True)
    return row("3 padding", case, measured, f">= {bar:.2f}", ours >= bar)


def main(argv=None):
    from datasets import Dataset, DatasetDict

    from hcam.trainer.data import with_lengths

    args = parser(__doc__).parse_args(argv)
    columns, source = meld_rows()
    utterances = Dataset.from_dict(columns)
    durations = np.asarray(columns["duration"])
    print(f"# bench_padding on {machine()}; {source}: {len(utterances)} utterances, median "
          f"{np.median(durations):.2f} s, {len(set(columns['dialogue_id']))} dialogues")
    epochs = 1 if args.quick else 3
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for modality, unit in (("audio", "seconds"), ("text", "characters")):
            split = with_lengths(DatasetDict(train=utterances), modality)["train"]
            rows.append(compare(f"stage I {modality} utterances ({unit})", ["--stage", "1", "--modality", modality],
                                "random", split, np.asarray(split["length"], dtype=float), (modality,), epochs,
                                workdir, BAR))
        turns = np.unique(columns["dialogue_id"], return_counts=True)[1].astype(float)
        dialogues = Dataset.from_dict({"length": turns.tolist()})
        rows.append(compare("stages II-III dialogues (turns)", STAGE2, "group_by_length", dialogues, turns, ("text",),
                            epochs, workdir, None))
    return report(rows, args.json)


if __name__ == "__main__":
    main()
