#!/usr/bin/env python
"""Cross-validation: the whole stage sequence (I audio, I text, II audio, II text, III) on every fold of a corpus.

    python trainer/run_cv.py --dataset_name iemocap --data_dir IEMOCAP_full_release --dataset_config_name 6class \\
        --output_dir runs/iemocap6-cv [--recipe trainer/recipes/iemocap_6class.json] [any run_stage.py flag]

IEMOCAP's five folds are leave-one-session-out: fold N tests on session N and trains on the other four, with a
validation split held out of those by dialogue (checkpoints are chosen on it, never on test). Fold N's stages go
to `<output_dir>/fold<N>/<stage tag>`. Rerunning the command resumes: finished stages are skipped, an
interrupted one resumes from its last checkpoint. After every fold the table of test weighted F1 per head (each
stage's own head, the fusion head and the ensemble) is printed, with mean ± standard deviation (n - 1) over the
folds done, and saved to `<output_dir>/cv_results.json`, as most IEMOCAP papers report it.

Each stage runs in this process (`--launcher ""`, the default) or, with e.g. `--launcher "accelerate launch"` or
`--launcher "torchrun --nproc_per_node 2"`, as its own launched process.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys

from hcam.processing.corpora import get_corpus
from hcam.trainer.arguments import build_parser, read_recipe
from hcam.trainer.stage_folder import RESULTS, read_json, run_sequence
from hcam.trainer.stages import SEQUENCE

RUN_STAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run_stage.py")
CV_RESULTS = "cv_results.json"


def fold_heads(fold_dir):
    """Test weighted F1 of each stage's own head and of the stage-3 model's ensemble, for one finished fold."""
    scores = {}
    for stage in SEQUENCE:
        results = read_json(os.path.join(fold_dir, stage.tag), RESULTS) or {}
        scores[stage.primary_head] = results.get(f"test_{stage.primary_head}_weighted_f1")
    final = read_json(os.path.join(fold_dir, SEQUENCE[-1].tag), RESULTS) or {}
    scores["ensemble"] = final.get("test_ensemble_weighted_f1")
    return scores


def summarize(per_fold):
    """head -> {"mean", "std", "folds"} over the folds that have the head."""
    heads = list(dict.fromkeys(h for scores in per_fold.values() for h in scores))
    summary = {}
    for head in heads:
        values = [scores[head] for scores in per_fold.values() if scores.get(head) is not None]
        if values:
            summary[head] = {"mean": statistics.fmean(values),
                             "std": statistics.stdev(values) if len(values) > 1 else 0.0, "folds": len(values)}
    return summary


def print_table(per_fold, summary):
    folds = list(per_fold)
    print("\nTest weighted F1 per fold (" + ", ".join(f"fold {f}" for f in folds) + ") and mean ± std")
    for head, stats in summary.items():
        cells = " ".join(f"{per_fold[f].get(head) or float('nan'):.3f}" for f in folds)
        print(f"{head:18s} {cells}   {stats['mean']:.3f} ± {stats['std']:.3f}")


def run_stage(stage_argv, launcher):
    if not launcher:
        from hcam.trainer.run_stage import main as run_stage_main

        run_stage_main(stage_argv)
        return
    subprocess.run([*shlex.split(launcher), RUN_STAGE, *stage_argv], check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="fold<N>/<stage> folders and cv_results.json go here")
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="which folds (default: all the corpus has)")
    parser.add_argument("--launcher", default="", help='e.g. "accelerate launch"; "" = run stages in this process')
    args, stage_flags = parser.parse_known_args(argv)
    given, _ = build_parser().parse_known_args(stage_flags)  # run_stage.py's own flags
    name = given.dataset_name
    if name is None and given.recipe:
        name = read_recipe(given.recipe, None).get("dataset_name")
    corpus = get_corpus(name)
    if not corpus.folds:
        raise SystemExit(f"--dataset_name {corpus.name} has no cross-validation folds; train its splits with "
                         "run_stage.py")
    if given.fold is not None:
        raise SystemExit("--fold is set per fold by run_cv.py; use --folds to choose which.")
    folds = args.folds or list(corpus.folds)
    per_fold = {}
    for fold in folds:
        fold_dir = os.path.join(args.output_dir, f"fold{fold}")

        def run(stage, stage_argv, fold=fold):  # finished stages are skipped: resuming the cross-validation
            print(f"\n=== fold {fold}, {stage.tag}", flush=True)
            run_stage(stage_argv, args.launcher)

        run_sequence(fold_dir, ["--fold", str(fold), *stage_flags], run=run)
        per_fold[str(fold)] = fold_heads(fold_dir)
        summary = summarize(per_fold)
        print_table(per_fold, summary)
        with open(os.path.join(args.output_dir, CV_RESULTS), "w", encoding="utf-8") as f:
            json.dump({"corpus": corpus.name, "folds": per_fold, "summary": summary,
                       "metric": "test weighted F1", "std": "sample standard deviation (n - 1) over folds"}, f, indent=2)
    print(f"\nSaved to {os.path.join(args.output_dir, CV_RESULTS)}")
    return summary


if __name__ == "__main__":
    from hcam.processing.cli import command_errors

    with command_errors("run_cv.py"):  # data and argument errors: the message and exit status 2
        main()
    sys.exit(0)
