#!/usr/bin/env python
"""What hcam-predict adds to the pipeline (issue 24): `hcam.trainer.predict.predict` (each turn checked before the
model reads it: audio decoded once and passed on, the feature extractor's silence and length rules, the output file,
the report) against the bare pipeline on the same conversations given as audio paths, timed alternately.

    python bench/bench_predict_overhead.py [--size tiny|base] [--conversations 20] [--rounds 5]

Random weights with the architecture of `make demo`'s model (--size tiny) or wav2vec2-base + roberta-base (--size
base), saved to a temporary folder; the first --conversations dialogues of the demo test split; 1 CPU thread
(hcam-predict's default on CPU). Prints the median of the per-round ratios predict / pipeline (1.00 = no overhead).
"""

import argparse
import copy
import os
import sys
import tempfile
from datetime import datetime, timezone

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_threads import DEMO, save_model  # noqa: E402
from common import interleaved, machine, paired_ratio  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="tiny", choices=["tiny", "base"])
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from hcam.trainer.predict import load_pipeline, predict, read_manifest_conversations

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as folder:
        save_model(os.path.join(folder, "model"), args.size)
        pipe = load_pipeline(os.path.join(folder, "model"), device="cpu")
        conversations = read_manifest_conversations(os.path.join(DEMO, "test.csv"))[: args.conversations]
        inputs = [{"turns": [{"audio": t["audio"], "text": t["text"], "speaker": t["speaker"]} for t in c["turns"]]}
                  for c in conversations]
        output = os.path.join(folder, "predictions.jsonl")
        medians, times = interleaved({
            "predict": lambda: predict(copy.deepcopy(conversations), pipe, output, progress=False),
            "pipeline": lambda: list(pipe(inputs, batch_size=8)),
        }, repeats=args.rounds)
    ratio, low, high = paired_ratio(times, "predict", "pipeline")
    turns = sum(len(c["turns"]) for c in conversations)
    print(f"bench_predict_overhead.py, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}, load average "
          f"{os.getloadavg()[0]:.1f}; {args.size} architecture, {len(conversations)} conversations, {turns} turns")
    print(f"predict() {medians['predict']:.2f} s, pipeline alone {medians['pipeline']:.2f} s (medians of "
          f"{args.rounds}); predict / pipeline = {ratio:.2f}x (quartiles {low:.2f}-{high:.2f})")


if __name__ == "__main__":
    sys.exit(main())
