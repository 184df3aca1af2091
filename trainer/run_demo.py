#!/usr/bin/env python
"""The whole HCAM sequence on the demo corpus: stage 1 audio, stage 1 text, stage 2 both, stage 3, ensemble test.

    python trainer/run_demo.py [--output_dir outputs/demo] [--use_cpu] [any run_stage.py flag, passed to every stage]

Each stage runs as its own `run_stage.py` process (as a user would run it), from the previous stage's folder, so a
killed demo resumes where it stopped when rerun, and finished stages are skipped. Prints the table of test
weighted F1 per stage and writes <output_dir>/summary.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time

RUN_STAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_stage.py")

# Demo-only settings, chosen to fit the 10-minute budget on 2 CPU cores (the stages' own defaults are for real
# corpora). Reasons: the default audio encoder is a random tiny wav2vec2 learning from 678 short clips, so it gets a
# high rate and few, full-batch-ish epochs; MiniLM is pretrained and needs only 3 epochs on 626 sentences.
DEMO_FLAGS = {
    "stage1-audio": ["--num_train_epochs", "4", "--encoder_learning_rate", "1e-3", "--learning_rate", "2e-3",
                     "--per_device_train_batch_size", "16", "--early_stopping_patience", "0"],
    "stage1-text": ["--num_train_epochs", "3", "--early_stopping_patience", "0"],
    "stage2-audio": ["--num_train_epochs", "30"],
    "stage2-text": ["--num_train_epochs", "30"],
    "stage3": ["--num_train_epochs", "30"],
}


def stage_commands(output_dir):
    d = lambda name: os.path.join(output_dir, name)  # noqa: E731
    return [
        ("stage1-audio", ["--stage", "1", "--modality", "audio"]),
        ("stage1-text", ["--stage", "1", "--modality", "text"]),
        ("stage2-audio", ["--stage", "2", "--modality", "audio", "--init_from", d("stage1-audio")]),
        ("stage2-text", ["--stage", "2", "--modality", "text", "--init_from", d("stage1-text")]),
        ("stage3", ["--stage", "3", "--init_from", d("stage2-audio"), d("stage2-text")]),
    ]


def table_rows(output_dir):
    """(row name, validation W-F1, test W-F1) for each stage alone, and the stage-3 model's heads and ensemble."""
    rows = []
    for name, head in (("stage1-audio", "audio_utterance"), ("stage1-text", "text_utterance"),
                       ("stage2-audio", "audio_context"), ("stage2-text", "text_context")):
        with open(os.path.join(output_dir, name, "all_results.json"), encoding="utf-8") as f:
            results = json.load(f)
        rows.append((f"{name} ({head})", results.get(f"eval_{head}_weighted_f1"), results.get(f"test_{head}_weighted_f1")))
    with open(os.path.join(output_dir, "stage3", "all_results.json"), encoding="utf-8") as f:
        results = json.load(f)
    for head in ("fusion", "ensemble"):
        label = "stage3 (fusion)" if head == "fusion" else "ensemble of all stage heads (stage-3 model)"
        rows.append((label, results.get(f"eval_{head}_weighted_f1"), results.get(f"test_{head}_weighted_f1")))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--data_dir", default=None, help="demo corpus folder (default: the repository's data/demo)")
    args, extra = parser.parse_known_args(argv)
    started = time.time()
    timings = {}
    for name, stage_args in stage_commands(args.output_dir):
        command = [sys.executable, RUN_STAGE, *stage_args, "--dataset_name", "demo",
                   "--output_dir", os.path.join(args.output_dir, name), *DEMO_FLAGS[name], *extra]
        if args.data_dir:
            command += ["--data_dir", args.data_dir]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        stage_start = time.time()
        subprocess.run(command, check=True)
        timings[name] = round(time.time() - stage_start, 1)

    rows = table_rows(args.output_dir)
    print("\nDemo corpus, weighted F1 (validation / test)")
    print(f"{'stage':48s} {'valid':>7s} {'test':>7s}")
    for label, valid, test in rows:
        print(f"{label:48s} {valid:7.3f} {test:7.3f}")
    total = round(time.time() - started, 1)
    print(f"total {total} s")
    summary = {
        "weighted_f1": {label: {"validation": valid, "test": test} for label, valid, test in rows},
        "seconds": {**timings, "total": total},
        "cpu_count": os.cpu_count(),
    }
    with open(os.path.join(args.output_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
