#!/usr/bin/env python
"""Benchmark 2: stage II and III training epochs on cached stage-I embeddings against recomputing the encoders.

Bars (base-size encoder shapes): an epoch on cached embeddings is at least 20x faster than an epoch that runs the
frozen encoders again, and the cache pays for itself within the first epoch: building it costs less than what one
epoch saves (break-even <= 1 epoch). The cache is built as the trainer builds it (stage-I eval mode, no gradients,
one utterance per row) but over utterances sorted by length, so batches carry little padding; the recomputing
epoch feeds whole dialogue batches, as a trainer without a cache must.

    python bench/bench_cache.py [--quick]
"""

import statistics
import time

import torch

from common import dialogue_batch, hcam_config, machine, parser, report, row

SPEEDUP_BAR = 20.0


def make_dataset(num_dialogues, seconds, tokens, seed=0):
    """A list of one-dialogue batches (batch size 1 keeps the shapes of a real epoch's dialogues varied)."""
    batches = []
    for d in range(num_dialogues):
        turns = 2 + (d * 3) % 4
        rotated = seconds[d % len(seconds):] + seconds[: d % len(seconds)]
        batches.append(dialogue_batch((turns,), rotated[:turns], tokens, seed=seed + d))
    return batches


def pad(vector, length):
    return torch.nn.functional.pad(vector, (0, length - vector.shape[0]))


def build_cache(model, batches, chunk=8):
    """Stage-I embeddings of every turn, utterances batched by length (what the trainer's cache stores)."""
    utterances = []
    for b, batch in enumerate(batches):
        for t in range(int(batch["utterance_mask"].sum())):
            utterances.append((int(batch["attention_mask"][0, t].sum()), b, t))
    utterances.sort(reverse=True)
    cache = [{m: torch.zeros(batch["utterance_mask"].shape[1], model.config.utterance_embedding_size)
              for m in ("audio", "text")} for batch in batches]
    model.eval()
    with torch.no_grad():
        for start in range(0, len(utterances), chunk):
            group = utterances[start : start + chunk]
            samples = group[0][0]
            tokens = max(int(batches[b]["text_attention_mask"][0, t].sum()) for _, b, t in group)
            def rows(key, length):
                return torch.stack([pad(batches[b][key][0, t, :length], length) for _, b, t in group])[:, None]

            inputs = dict(input_values=rows("input_values", samples), attention_mask=rows("attention_mask", samples),
                          input_ids=rows("input_ids", tokens), text_attention_mask=rows("text_attention_mask", tokens))
            embeddings = model.get_utterance_embeddings(**inputs)
            for i, (_, b, t) in enumerate(group):
                for modality in ("audio", "text"):
                    cache[b][modality][t] = embeddings[modality][i, 0]
    return [{"audio_embeddings": c["audio"][None], "text_embeddings": c["text"][None]} for c in cache]


def epoch(model, optimizer, batches, cache=None):
    model.train()
    for index, batch in enumerate(batches):
        if cache is None:
            inputs = batch
        else:
            inputs = dict(cache[index], utterance_mask=batch["utterance_mask"], speaker_ids=batch["speaker_ids"],
                          labels=batch["labels"])
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def measure(size, stage, batches, recompute_epochs, cached_epochs):
    from hcam.modeling_hcam import HCAMForEmotionRecognition

    torch.manual_seed(0)
    model = HCAMForEmotionRecognition(hcam_config(size, stage=stage)).freeze_stages_below(stage)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    build_cache(model, batches[:1])  # warm-up (first calls allocate)
    start = time.perf_counter()
    cache = build_cache(model, batches)
    build_seconds = time.perf_counter() - start
    epoch(model, optimizer, batches[:1], cache[:1])  # warm-up
    recompute, cached = [], []
    for _ in range(recompute_epochs):  # interleaved: one recomputing epoch, then a few cached ones
        start = time.perf_counter()
        epoch(model, optimizer, batches)
        recompute.append(time.perf_counter() - start)
        for _ in range(cached_epochs):
            start = time.perf_counter()
            epoch(model, optimizer, batches, cache)
            cached.append(time.perf_counter() - start)
    recompute_epoch, cached_epoch = statistics.median(recompute), statistics.median(cached)
    speedup = recompute_epoch / cached_epoch
    break_even = build_seconds / (recompute_epoch - cached_epoch)
    turns = sum(int(b["utterance_mask"].sum()) for b in batches)
    audio_seconds = sum(float(b["attention_mask"].sum()) for b in batches) / 16000
    case = f"stage {stage}, {size} encoders, {len(batches)} dialogues / {turns} turns / {audio_seconds:.0f} s audio"
    rows = [
        row("2 cache", case + ": epoch speed-up",
            f"recompute {recompute_epoch:.2f} s vs cached {cached_epoch * 1000:.1f} ms = {speedup:.0f}x",
            f">= {SPEEDUP_BAR:.0f}x", speedup >= SPEEDUP_BAR),
        row("2 cache", case + ": break-even",
            f"cache build {build_seconds:.2f} s = {break_even:.2f} epochs of savings", "<= 1 epoch", break_even <= 1.0),
    ]
    return rows


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    print(f"# bench_cache on {machine()}")
    seconds = [2.1, 3.4, 1.2, 4.8, 2.6, 1.7, 3.0, 5.5]
    rows = []
    if args.quick:
        batches = make_dataset(3, [s * 0.4 for s in seconds], 16)
        rows += measure("base", 2, batches, 1, 3)
    else:
        batches = make_dataset(5, [s * 0.6 for s in seconds], 32)
        for stage in (2, 3):
            rows += measure("base", stage, batches, 2, 5)
    return report(rows, args.json)


if __name__ == "__main__":
    main()
