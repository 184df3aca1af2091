#!/usr/bin/env python
"""Benchmark 8: the pipeline's conversations per second at batch_size 1 against batch_size 8, on the demo test split.

The path is hcam-predict's: the pipeline gets each conversation as a dict of turns with audio file paths, text and
speakers, and decodes, encodes (stage I), contextualises (stage II) and fuses (stage III) them. The model has the demo's
shape (the offline default encoders: the tiny wav2vec2 and all-MiniLM-L6-v2's architecture, random weights: speed does
not depend on them). Both sides run on the same conversations, alternately; the ratio is the median of the per-round
ratios. Bar: batch 8 is at least 1.2x faster (more conversations per second) than batch 1, with the same predictions.

    python bench/bench_pipeline_batch.py [--quick]
"""

import csv
import os

import torch

from common import default_processor, hcam_config, interleaved, machine, overrides_note, paired_ratio, parser, report, row

BAR = 1.2
DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "demo")


def demo_conversations(limit=None):
    """The demo test split as pipeline inputs (audio paths, as hcam-predict passes them)."""
    with open(os.path.join(DEMO, "test.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    conversations = {}
    for r in rows:
        conversations.setdefault(r["dialogue_id"], []).append(
            {"audio": os.path.join(DEMO, r["audio"]), "text": r["text"], "speaker": r["speaker"]})
    return [{"dialogue_id": d, "turns": t} for d, t in list(conversations.items())[:limit]]


def main(argv=None):
    args = parser(__doc__).parse_args(argv)
    from hcam.modeling_hcam import HCAMForEmotionRecognition
    from hcam.modeling_hcam.pipeline_hcam import HCAMEmotionPipeline

    print(f"# bench_pipeline_batch on {machine()}")
    conversations = demo_conversations(16 if args.quick else None)
    turns = sum(len(c["turns"]) for c in conversations)
    torch.manual_seed(0)
    model = HCAMForEmotionRecognition(hcam_config("tiny", stage=3)).eval()
    processor = default_processor()
    pipe = HCAMEmotionPipeline(model=model, processor=processor, device="cpu")
    results = {}

    def run(batch_size):
        results[batch_size] = pipe(conversations, batch_size=batch_size)

    repeats = 2 if args.quick else 5
    medians, times = interleaved({"batch 1": lambda: run(1), "batch 8": lambda: run(8)}, repeats, warmup=1)
    ratio, low, high = paired_ratio(times, "batch 1", "batch 8")
    same = all(a["label"] == b["label"] for x, y in zip(results[1], results[8]) for a, b in zip(x, y))
    speeds = {k: len(conversations) / v for k, v in medians.items()}
    case = f"demo test split, {len(conversations)} conversations / {turns} turns, tiny encoders" + overrides_note()
    measured = (f"batch 1 {speeds['batch 1']:.2f} conv/s vs batch 8 {speeds['batch 8']:.2f} conv/s: {ratio:.2f}x "
                f"(quartiles {low:.2f}-{high:.2f}, {repeats} rounds); same labels: {same}")
    return report([row("8 pipeline batch", case, measured, f">= {BAR:.1f}x, same labels", ratio >= BAR and same)],
                  args.json)


if __name__ == "__main__":
    main()
