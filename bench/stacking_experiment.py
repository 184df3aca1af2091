#!/usr/bin/env python
"""Which stage-I embeddings should stages II and III learn from? Candidates measured side by side (issue 13).

    python bench/stacking_experiment.py --output_dir runs/stacking            # demo corpus, every candidate, 3 seeds
    python bench/stacking_experiment.py --candidates baseline oof3 --seeds 42 7 1234
    python bench/stacking_experiment.py --dataset_name meld --data_dir runs/meld-holdout --modalities text \
        --recipe trainer/recipes/meld_text_cpu.json --candidates baseline noise0.5 oof2+noise0.5 --output_dir runs/stacking-meld

Stage I (audio and text) is trained once per stage-I setting with the recipe (`--recipe`, default the demo's; its
seed, 42); each candidate then trains stage 2 audio, stage 2 text and stage 3 with `trainer/run_stage.py` (as a user
runs them) for every seed. A text-only corpus (`--modalities text`, MELD text): stage I text, then stage II text,
whose heads (text context, ensemble) make the choice.
All candidates share one embedding cache, so the cross-fitted (out-of-fold) stage-I embeddings are built once.
Several invocations may run side by side on different candidates; each prints the table of every finished run.
The choice is made on validation only: the candidate with the best mean, over seeds, of the validation weighted F1
of the heads it trains (audio context, text context, fusion, ensemble). Test scores are printed beside it and never
enter the choice. Writes <output_dir>/stacking.json and prints one table per split (mean ± std over seeds).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from hcam.trainer.stage_folder import RESULTS, StageFolder, run_sequence
from hcam.trainer.stages import Stage, stages_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_STAGE = os.path.join(REPO, "trainer", "run_stage.py")
RECIPE = os.path.join(REPO, "trainer", "recipes", "demo.json")

# name -> (flags of stages 2 and 3, stage-I setting). Every candidate names its folds, noise and dropout, so a rerun
# measures the same thing whatever run_stage.py's defaults have become (the default is now oof2+noise0.5).
NONE = {"--cross_fit_folds": "0", "--embedding_noise": "0", "--embedding_dropout": "0"}


def pinned(**flags):
    return [x for k, v in {**NONE, **{f"--{k}": str(v) for k, v in flags.items()}}.items() for x in (k, v)]


CANDIDATES = {
    "baseline": (pinned(), "recipe"),
    "noise0.5": (pinned(embedding_noise=0.5), "recipe"),
    "noise1.0": (pinned(embedding_noise=1.0), "recipe"),
    "dropout0.3": (pinned(embedding_dropout=0.3), "recipe"),
    "oof3": (pinned(cross_fit_folds=3), "recipe"),
    "oof3+noise0.5": (pinned(cross_fit_folds=3, embedding_noise=0.5), "recipe"),
    # half the folds' cost (2 fold models on 1/2 of train instead of 3 on 2/3): the make-demo time budget (issue 16)
    "oof2+noise0.5": (pinned(cross_fit_folds=2, embedding_noise=0.5), "recipe"),
    # the stage-I model the cache is built from: an earlier one (half the recipe's epochs), shipped as stage I too;
    # alone, and with the chosen cross-fitting
    "early-stage1": (pinned(), "early"),
    "early-stage1+oof2+noise0.5": (pinned(cross_fit_folds=2, embedding_noise=0.5), "early"),
}
STAGE1_SETTINGS = {"recipe": {}, "early": {"audio": ["--num_train_epochs", "2"], "text": ["--num_train_epochs", "1"]}}
HEADS = ["audio_utterance", "text_utterance", "audio_context", "text_context", "fusion", "ensemble"]
CHOICE_HEADS = ["audio_context", "text_context", "fusion", "ensemble"]


def last_stage_tag(modalities):
    """The folder name of the last stage for `modalities`: stage3 for audio + text, stage2-<m> for one modality."""
    return stages_for(modalities)[-1].tag


def heads_of(modalities):
    """The HEADS a run of `modalities` has (no fusion for one modality)."""
    return [h for h in HEADS if h == "ensemble" or (h == "fusion" and len(modalities) == 2) or h.split("_")[0] in modalities]


def run(command, log):
    started = time.time()
    with open(log, "a", encoding="utf-8") as f:
        finished = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT)
    if finished.returncode != 0:
        raise SystemExit(f"failed (exit {finished.returncode}): {' '.join(command)}; see {log}")
    return time.time() - started


# --save_strategy best: a checkpoint only when validation improves (the same model is chosen, fewer writes)
QUIET = ["--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "best"]


def stage_flags(log, dataset_flags, recipe=RECIPE):
    """The flags of every stage of an experiment: the recipe, the corpus, quiet."""
    return [*(["--recipe", recipe] if recipe else []), *dataset_flags, *QUIET]


def sequence(output_root, flags, log, dataset_flags, *, stages, done=None, recipe=RECIPE):
    """`run_sequence` of `stages` into `output_root`, each stage a run_stage.py process (its output appended to
    `log`) with the recipe and corpus, finished stages skipped. `flags`: a list for every stage or `{tag: list}`.
    Returns ({tag: folder}, {tag: wall seconds} of the stages it trained)."""
    seconds = {}

    def run_one(stage, argv):
        seconds[stage.tag] = run([sys.executable, RUN_STAGE, *argv], log)

    per_stage = flags if isinstance(flags, dict) else {"*": list(flags)}
    per_stage = {**per_stage, "*": [*stage_flags(log, dataset_flags, recipe), *per_stage.get("*", [])]}
    return run_sequence(output_root, per_stage, stages=stages, done=done, run=run_one), seconds


def stage(output_dir, name, flags, extra, log, dataset_flags, recipe=RECIPE):
    """One run_stage.py run outside the stage sequence (the joint ablation: no --init_from) into
    `<output_dir>/<name>` unless it is finished; (folder, seconds spent, 0 if skipped)."""
    folder = os.path.join(output_dir, name)
    command = [sys.executable, RUN_STAGE, *flags, *stage_flags(log, dataset_flags, recipe), "--output_dir", folder,
               *extra]
    seconds = run(command, log) if not StageFolder.is_finished(folder) else 0.0
    return folder, seconds


def results(folder):
    with open(os.path.join(folder, RESULTS), encoding="utf-8") as f:
        values = json.load(f)
    return {split: {head: values.get(f"{prefix}_{head}_weighted_f1") for head in HEADS}
            for split, prefix in (("validation", "eval"), ("test", "test"))}


def mean_std(values):
    values = [v for v in values if v is not None]
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else (None, None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="runs/stacking")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 7, 1234])
    parser.add_argument("--dataset_name", default="demo")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--recipe", default=RECIPE, help="the recipe of every stage (default: the demo's)")
    parser.add_argument("--modalities", nargs="+", default=["audio", "text"], choices=["audio", "text"],
                        help="text alone for a text-only corpus (MELD text): stage II text is the last stage")
    parser.add_argument("--report_only", action="store_true", help="train nothing: the table of the finished runs")
    args = parser.parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    log = os.path.join(args.output_dir, "runs.log")
    dataset_flags = ["--dataset_name", args.dataset_name] + (["--data_dir", args.data_dir] if args.data_dir else [])
    heads = heads_of(args.modalities)
    choice_heads = [h for h in CHOICE_HEADS if h in heads]
    cache = ["--embedding_cache_dir", os.path.join(args.output_dir, ".embedding_cache")]
    summary_path = os.path.join(args.output_dir, "stacking.json")
    summary = {"seeds": args.seeds, "runs": {}, "seconds": {}}
    if os.path.exists(summary_path):
        with open(summary_path, encoding="utf-8") as f:
            summary["seconds"] = json.load(f).get("seconds", {})

    for candidate in [] if args.report_only else args.candidates:
        flags, setting = CANDIDATES[candidate]
        stage1, seconds = sequence(
            os.path.join(args.output_dir, f"stage1-{setting}"),
            {Stage(1, m).tag: STAGE1_SETTINGS[setting].get(m, []) for m in args.modalities}, log, dataset_flags,
            stages=[Stage(1, m) for m in args.modalities], recipe=args.recipe)
        for tag, spent in seconds.items():
            summary["seconds"][f"stage1-{setting}-{tag.split('-')[1]}"] = round(spent, 1)
            print(f"{tag} ({setting}): {spent:.0f} s", flush=True)
        for seed in args.seeds:
            out = os.path.join(args.output_dir, candidate, f"seed{seed}")
            extra = [*flags, *cache, "--seed", str(seed)]
            later = [s for s in stages_for(args.modalities) if s.number > 1]
            folders, timing = sequence(out, extra, log, dataset_flags, stages=later, done=stage1, recipe=args.recipe)
            last = folders[later[-1].tag]
            if any(timing.values()):
                summary["seconds"][f"{candidate}-seed{seed}"] = {k: round(v, 1) for k, v in timing.items()}
            r = results(last)
            print(f"{candidate:14s} seed {seed:5d}  " + "  ".join(
                f"{h} {r['validation'][h]:.3f}/{r['test'][h]:.3f}" for h in heads) + f"  ({sum(timing.values()):.0f} s)",
                flush=True)

    # every finished run under output_dir (several invocations may run side by side, each on other candidates)
    for candidate in CANDIDATES:
        for seed in args.seeds:
            folder = os.path.join(args.output_dir, candidate, f"seed{seed}", last_stage_tag(args.modalities))
            if StageFolder.is_finished(folder):
                summary["runs"].setdefault(candidate, {})[str(seed)] = results(folder)
    table = {}
    for candidate, by_seed in summary["runs"].items():
        runs = [by_seed[str(s)] for s in args.seeds if str(s) in by_seed]
        table[candidate] = {split: {h: mean_std([r[split][h] for r in runs]) for h in heads} for split in ("validation", "test")}
        table[candidate]["n"] = len(runs)
        table[candidate]["choice_score"] = statistics.mean(table[candidate]["validation"][h][0] for h in choice_heads)
    for split in ("validation", "test"):
        print(f"\n{args.dataset_name} corpus, {split} weighted F1, mean ± std over seeds {args.seeds}")
        print(f"{'candidate':16s} {'n':>2s} " + " ".join(f"{h:>16s}" for h in heads))
        for candidate, row in table.items():
            print(f"{candidate:16s} {row['n']:2d} " + " ".join(
                f"{row[split][h][0]:.3f} ± {row[split][h][1]:.3f}".rjust(16) for h in heads))
    chosen = max(table, key=lambda c: table[c]["choice_score"])
    print(f"\nchosen on validation (mean of {', '.join(choice_heads)}): {chosen} "
          + ", ".join(f"{c} {row['choice_score']:.4f}" for c, row in table.items()))
    summary.update(table=table, chosen=chosen, choice_heads=choice_heads)
    with open(summary_path, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
