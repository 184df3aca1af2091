#!/usr/bin/env python
"""Benchmark 7: a stage-I epoch with a frozen speech encoder, on its cached hidden states vs recomputing it every step.

wav2vec2-base's shape (random weights), frozen, with the learned weighted layer sum (the SUPERB protocol: every layer
is cached), HCAM's stage-I head at its defaults (GRU 200). Both sides run the code stage I trains with: the cached side
`trainer.feature_cache` (the cache `run_stage.py` builds, `FeatureCollator`, forward on `audio_hidden_states`), the
recomputing side `trainer.data.UtteranceCollator` (audio files → processor → frozen encoder → head), each followed by
backward and an AdamW step, over the same length-sorted batches of WAV files on disk. Bars: the cached epoch >= 10x
faster; building the cache costs <= 1.2 epochs of the savings. The cache's size per hour of audio is printed.

    python bench/bench_frozen_cache.py [--quick]
"""

import os
import statistics
import tempfile

import numpy as np
import torch

from common import LABELS, default_processor, hcam_config, interleaved, machine, overrides_note, paired_ratio, parser, report, row

SPEED_BAR, BREAK_EVEN_BAR = 10.0, 1.2


def write_rows(folder, seconds, seed=0):
    """A stage-I split of WAV files (one turn per dialogue) in the corpus schema."""
    import datasets
    import soundfile

    rng = np.random.default_rng(seed)
    paths = []
    for i, duration in enumerate(seconds):
        path = os.path.join(folder, f"utt{i}.wav")
        soundfile.write(path, (0.1 * rng.standard_normal(int(16000 * duration))).astype(np.float32), 16000)
        paths.append(path)
    n = len(seconds)
    return datasets.Dataset.from_dict({
        "dialogue_id": [f"d{i}" for i in range(n)], "turn": [0] * n, "speaker": ["A"] * n, "text": ["x"] * n,
        "audio": paths, "label": [LABELS[i % len(LABELS)] for i in range(n)], "duration": list(seconds),
    })


def measure(seconds, batch_size, repeats):
    from hcam.modeling_hcam import HCAMForEmotionRecognition
    from hcam.trainer.data import UtteranceCollator
    from hcam.trainer.feature_cache import FeatureCollator, cached_features

    torch.manual_seed(0)
    model = HCAMForEmotionRecognition(hcam_config("base", stage=1, modalities=["audio"], use_weighted_layer_sum=True,
                                                  freeze_audio_encoder=True)).train()
    processor = default_processor(do_normalize=True, max_duration_seconds=model.config.max_audio_seconds)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_rows(tmp, seconds)
        builds = []

        def build():  # as run_stage.py builds it (weights hashed, key made, shards written), into a new folder
            builds.append(cached_features(model, processor, rows, "audio", os.path.join(tmp, f"cache{len(builds)}"),
                                          "train", batch_size=2 * batch_size))

        build()
        store = builds[0]
        # the trainer's length-grouped batches (here fully sorted: same batches for both sides)
        order = np.argsort(-np.asarray(seconds), kind="stable")
        batches = [[rows[int(i)] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
        for batch in batches:
            for item in batch:
                item.update(feature_split="train", feature_row=int(rows["audio"].index(item["audio"])))
        recompute_collator = UtteranceCollator(processor, "audio", model.config.label2id)
        cached_collator = FeatureCollator({"train": store}, "audio", model.config.label2id)

        def epoch(collator):
            for batch in batches:
                model(**collator(batch)).loss.backward()
                optimizer.step()
                optimizer.zero_grad()

        # the cache build is timed in the same rounds as the epochs, so that load changes hit all three alike
        medians, times = interleaved({"recompute": lambda: epoch(recompute_collator),
                                      "cached": lambda: epoch(cached_collator), "build": build}, repeats)
        size = store.nbytes()
    speedup, low, high = paired_ratio(times, "recompute", "cached")
    break_even = statistics.median(b / (r - c) for b, r, c in zip(times["build"], times["recompute"], times["cached"]))
    hours = sum(seconds) / 3600
    layers = model.config.audio_encoder_config["num_hidden_layers"] + 1
    case = (f"wav2vec2-base frozen, weighted layer sum, {len(seconds)} utterances / {sum(seconds):.0f} s audio, "
            f"batch {batch_size}" + overrides_note())
    return [
        row("7 frozen-encoder cache", case + ": epoch speed-up",
            f"recompute {medians['recompute']:.2f} s vs cached {medians['cached'] * 1000:.0f} ms = {speedup:.0f}x "
            f"(quartiles {low:.0f}-{high:.0f}, {len(times['cached'])} rounds)", f">= {SPEED_BAR:.0f}x",
            speedup >= SPEED_BAR),
        row("7 frozen-encoder cache", case + ": break-even",
            f"cache build {medians['build']:.2f} s = {break_even:.2f} epochs of savings (median of the rounds' "
            "build / (recompute - cached))", f"<= {BREAK_EVEN_BAR} epochs", break_even <= BREAK_EVEN_BAR),
        row("7 frozen-encoder cache", "cache size per audio hour (fp16)",
            f"{size / hours / 2**30:.2f} GiB with all {layers} layers; {size / layers / hours / 2**30:.2f} GiB with "
            "the last layer only", "(info)", True),
    ]


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    print(f"# bench_frozen_cache on {machine()}")
    seconds = [2.1, 3.4, 1.2, 4.8, 2.6, 1.7, 3.0, 5.5]
    rows = measure([2.1, 1.2, 1.7, 2.6], 2, 2) if args.quick else measure(seconds * 2, 4, 3)
    return report(rows, args.json)


if __name__ == "__main__":
    main()
