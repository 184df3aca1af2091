#!/usr/bin/env python
"""What a live (causal) HCAM costs in accuracy against the paper's bidirectional one (issue 21), by turn position.

    python bench/ablation.py --variants full causal --output_dir runs/ablation                   # train (demo)
    python bench/causal_cost.py --output_dir runs/ablation                                        # this table
    python bench/ablation.py --dataset_name meld --data_dir runs/meld-holdout --modalities text \\
        --recipe trainer/recipes/meld_text_cpu.json --variants full causal --output_dir runs/ablation-meld
    python bench/causal_cost.py --output_dir runs/ablation-meld --modalities text

For every seed, the final model of bench/ablation.py's `full` (bidirectional) and `causal` variants (same stage-I
folders) is run by the pipeline, as a user runs it, on the validation and test splits its stage folder was trained
with (hcam_stage.json's data arguments), and scored per head and for the ensemble: over all turns, and by the turn's
position in its conversation (1-3, 4-8, 9+: a causal model knows less early in a conversation). Prints mean ± std
over seeds and the difference causal - bidirectional; the all-turns scores are checked against the run's own
all_results.json (the Trainer's evaluation). Writes <output_dir>/causal_cost.json. Nothing is chosen here.
"""

import argparse
import json
import os
import sys
from datetime import datetime, timezone

from ablation import final_folder  # noqa: E402
from stacking_experiment import mean_std  # noqa: E402

from hcam.trainer.stage_folder import StageFolder  # noqa: E402

BUCKETS = (("turns 1-3", 1, 3), ("turns 4-8", 4, 8), ("turns 9+", 9, 10**9))
VARIANTS = ("full", "causal")
TITLES = {"full": "bidirectional", "causal": "causal"}


def conversations_of(split):
    """The split's rows as pipeline conversations, in order, with each turn's label and 1-based position."""
    order, grouped = {}, {}
    for row in split:
        order.setdefault(row["dialogue_id"], len(order))
        grouped.setdefault(row["dialogue_id"], []).append(row)
    conversations = []
    for dialogue_id in sorted(grouped, key=order.get):
        rows = sorted(grouped[dialogue_id], key=lambda r: r["turn"])
        conversations.append({"dialogue_id": dialogue_id, "turns": [
            {"audio": r.get("audio"), "text": r.get("text"), "speaker": r.get("speaker")} for r in rows],
            "labels": [r["label"] for r in rows]})
    return conversations


def score(folder):
    """{split: {head: {"all": wf1, bucket: wf1}}} of the model in `folder` on its own validation and test splits."""
    from hcam.trainer.arguments import DataArguments
    from hcam.trainer.data import load_corpus
    from hcam.trainer.evaluation import head_scores
    from hcam.trainer.stage_folder import MARKER, RESULTS, read_json
    from hcam.trainer.predict import load_pipeline

    marker = read_json(folder, MARKER)
    pipe = load_pipeline(folder, device="cpu")
    config = pipe.model.config
    known = {f for f in DataArguments.__dataclass_fields__}
    data_args = DataArguments(**{k: v for k, v in marker["data_arguments"].items() if k in known})
    dataset, _ = load_corpus(data_args, config.modalities, progress=False)
    heads = ["ensemble"] + config.stage_heads()
    scores = {}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        if split not in dataset:
            continue
        conversations = conversations_of(dataset[split])
        predicted = {h: [] for h in heads}
        references, positions = [], []
        for conversation, results in zip(conversations, pipe(conversations, batch_size=8)):
            for position, (label, result) in enumerate(zip(conversation["labels"], results), 1):
                references.append(config.label2id[label])
                positions.append(position)
                predicted["ensemble"].append(config.label2id[result["label"]])
                for head in heads[1:]:
                    predicted[head].append(config.label2id[result["stages"][head]])
        scores[split] = {}
        for head in heads:
            entry = {"all": head_scores(predicted[head], references)["weighted_f1"]}
            for name, low, high in BUCKETS:
                keep = [i for i, p in enumerate(positions) if low <= p <= high]
                entry[name] = head_scores([predicted[head][i] for i in keep], [references[i] for i in keep])[
                    "weighted_f1"] if keep else None
            scores[split][head] = entry
        scores[split]["turns"] = {name: sum(low <= p <= high for p in positions) for name, low, high in BUCKETS}
        own = read_json(folder, RESULTS) or {}
        trainer_score = own.get(f"{prefix}_ensemble_weighted_f1")
        if trainer_score is not None and abs(trainer_score - scores[split]["ensemble"]["all"]) > 1e-3:
            print(f"warning: {folder} {split}: the pipeline's ensemble {scores[split]['ensemble']['all']:.4f} differs "
                  f"from the Trainer's {trainer_score:.4f}", file=sys.stderr)
    return scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="runs/ablation", help="bench/ablation.py's output folder")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 7, 1234])
    parser.add_argument("--modalities", nargs="+", default=["audio", "text"], choices=["audio", "text"])
    args = parser.parse_args(argv)
    cache_path = os.path.join(args.output_dir, "causal_cost.json")
    saved = json.load(open(cache_path, encoding="utf-8")) if os.path.exists(cache_path) else {"runs": {}}
    runs = saved["runs"]
    for variant in VARIANTS:
        for seed in args.seeds:
            folder = final_folder(args.output_dir, variant, seed, args.modalities)
            key = f"{variant}/seed{seed}"
            if key in runs or not StageFolder.is_finished(folder):
                continue
            print(f"scoring {folder}", file=sys.stderr, flush=True)
            runs[key] = score(folder)
            with open(cache_path, "w", encoding="utf-8") as f:
                json.dump({"runs": runs}, f, indent=2)
    if not runs:
        raise SystemExit(f"no finished full/causal runs under {args.output_dir}: run bench/ablation.py first")

    first = next(iter(runs.values()))
    heads = [h for h in next(iter(first.values())) if h != "turns"]
    columns = ["all"] + [name for name, _, _ in BUCKETS]
    print(f"{args.output_dir}: weighted F1, mean ± std over seeds {args.seeds}; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    for split in first:
        print(f"\n{split} ({', '.join(f'{k}: {v} turns' for k, v in first[split]['turns'].items())})")
        print(f"{'head':<16}{'model':<15}" + "".join(f"{c:>17}" for c in columns))
        for head in heads:
            means = {}
            for variant in VARIANTS:
                values = [runs[f"{variant}/seed{s}"][split][head] for s in args.seeds if f"{variant}/seed{s}" in runs]
                if not values:
                    continue
                cells = {c: mean_std([v[c] for v in values]) for c in columns}
                means[variant] = {c: cells[c][0] for c in columns}
                print(f"{head:<16}{TITLES[variant] + f' (n={len(values)})':<15}" + "".join(
                    f"{m:.3f} ± {s:.3f}".rjust(17) if m is not None else f"{'-':>17}" for m, s in cells.values()))
            if len(means) == 2:
                print(f"{'':<16}{'difference':<15}" + "".join(
                    f"{means['causal'][c] - means['full'][c]:+17.3f}" if means['full'][c] is not None else f"{'-':>17}"
                    for c in columns))


if __name__ == "__main__":
    main()
