#!/usr/bin/env python
"""Benchmark 3: padding efficiency (real frames / padded frames) of length-grouped against random batching.

Bar: length-grouped batches (hcam.processing.sampling.group_by_length, the trainer's sampler) reach >= 0.90 on a
MELD-like duration distribution. The durations are MELD's own (train split CSV, EndTime - StartTime, cut to the
processor's 0.05-15 s window) when /work/shared/data/meld is present, else a log-normal fitted to MELD (median
2.6 s). Stage I batches utterances (frames ~ seconds); stages II-III batch dialogues (padding counted in turns).

    python bench/bench_padding.py [--quick]
"""

import csv
import os

import numpy as np

from common import machine, parser, report, row

BAR = 0.90
MELD_CSV = os.environ.get("HCAM_MELD_TRAIN_CSV", "/work/shared/data/meld/train_sent_emo.csv")


def seconds(timestamp):
    hours, minutes, rest = timestamp.split(":")
    secs, millis = rest.split(",")
    return int(hours) * 3600 + int(minutes) * 60 + int(secs) + int(millis) / 1000


def meld_durations():
    """(utterance durations in seconds, turns per dialogue, source name)."""
    if os.path.isfile(MELD_CSV):
        durations, turns = [], {}
        with open(MELD_CSV, encoding="utf-8") as f:
            for record in csv.DictReader(f):
                durations.append(seconds(record["EndTime"]) - seconds(record["StartTime"]))
                turns[record["Dialogue_ID"]] = turns.get(record["Dialogue_ID"], 0) + 1
        return np.clip(durations, 0.05, 15.0), np.array(list(turns.values()), float), f"MELD train ({MELD_CSV})"
    rng = np.random.default_rng(0)
    durations = np.clip(rng.lognormal(np.log(2.6), 0.75, 9989), 0.05, 15.0)
    return durations, rng.integers(1, 25, 1039).astype(float), "log-normal fitted to MELD"


def efficiency(batches, lengths):
    padded = sum(len(b) * lengths[b].max() for b in batches)
    return float(sum(lengths[b].sum() for b in batches) / padded)


def random_batches(n, batch_size, seed):
    order = np.random.default_rng(seed).permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def measure(what, lengths, batch_size, epochs):
    from hcam.processing.sampling import group_by_length

    grouped = np.mean([efficiency([np.array(b) for b in group_by_length(lengths, batch_size, seed=e)], lengths)
                       for e in range(epochs)])
    random = np.mean([efficiency(random_batches(len(lengths), batch_size, e), lengths) for e in range(epochs)])
    return row("3 padding", f"{what}, batch {batch_size}",
               f"length-grouped {grouped:.3f} vs random {random:.3f}", f">= {BAR:.2f}", grouped >= BAR)


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    durations, turns, source = meld_durations()
    print(f"# bench_padding on {machine()}; durations: {source}, {len(durations)} utterances, "
          f"median {np.median(durations):.2f} s, {len(turns)} dialogues")
    epochs = 2 if args.quick else 10
    rows = [measure("stage I utterances (seconds)", durations, b, epochs) for b in (16, 32)]
    rows.append(measure("stages II-III dialogues (turns)", turns, 8, epochs))
    return report(rows, args.json)


if __name__ == "__main__":
    main()
