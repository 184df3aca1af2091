#!/usr/bin/env python
"""What each part of HCAM contributes: the ablations the paper does not report (issue 13), one table per corpus.

    python bench/ablation.py --output_dir runs/ablation --seeds 42 7 1234          # demo corpus, every variant
    python bench/ablation.py --output_dir runs/ablation --report_only              # the table of finished runs
    python bench/ablation.py --dataset_name meld --data_dir ../shared/data/meld --modalities text \
        --recipe trainer/recipes/meld_text_cpu.json --output_dir runs/ablation-meld     # MELD text: text rows only

Every stage is a `trainer/run_stage.py` run with the corpus's recipe (`--recipe`, default the demo's) and the seed,
as a user runs it. Variants (rows):

- full: stage I audio + text, stage II audio + text, stage III (the run_stage.py defaults and the recipe);
- no-self-attention: stage II is the bi-GRU alone (`--context_self_attention false`), stages II-III retrained;
- no-speaker-masks: stage II attends to every turn with every head (`--use_speaker_masks false`), stages II-III;
- concat-fusion: stage III concatenates the projected context embeddings (`--fusion_type concat`), on full's stage II;
- no-supcon: stage I without the contrastive loss (`--supcon_weight 0`), then stages II-III;
- causal: stages II-III see only past and current turns (`--context causal`, issue 21), on full's stage I: what a
  live model costs;
- joint: no hierarchy, every stage trained at once end to end (`--stage 3 --joint_training`, hcam.trainer.joint)
  for the same epoch budget: as many epochs as stage I gives its encoders in the recipe (the larger of the stage-I
  audio and text `num_train_epochs`), the stage-I learning rates (encoder rates per modality, head rate 1e-3), a
  batch of 2 dialogues (~16 turns on the demo: stage-I audio's batch; ~19 on MELD), checkpoint chosen on validation like
  stage III's (text-only: like stage II's);
- head rows: each head of full's final model alone (utterance, context, fusion) against its ensemble.

Variants that do not change stage I reuse full's stage-I folders; stage I is trained once per seed, or once with
`--stage1_seed N` for every seed (cheaper: then only stages II-III vary over seeds; the table says which). Stages II
and III cross-fit their training embeddings by default (2 extra stage-I trainings on half of train per stage-I model, cached in
<output_dir>/.embedding_cache). A text-only corpus (`--modalities text`, e.g. MELD text) has the text rows only:
full = stage I text → stage II text; no fusion, no concat-fusion; joint = stages I-II text at once, end to end
(`--stage 2 --modality text --joint_training`), for the stage-I text epochs.

Columns: validation and test weighted F1 of the variant's final prediction, the ensemble of every head and the last
stage's head (fusion, or text context for text-only), mean ± std over seeds; and the Trainer's training seconds of
the stages the variant trains itself, per seed (stage I's, shared, on their own line; the Trainer's time excludes
embedding and cross-fitting: ablation.json's wall_seconds has each run's wall time). Nothing is chosen here.
Resumable: a finished stage folder is never retrained. Writes <output_dir>/ablation.json.
"""

import argparse
import json
import os

from stacking_experiment import RECIPE, heads_of, last_stage_tag, mean_std, results, sequence, stage  # noqa: E402

from hcam.trainer.stage_folder import RESULTS, StageFolder, read_json  # noqa: E402
from hcam.trainer.stages import Stage  # noqa: E402

# name -> (stage-I setting, flags of stage 2, flags of stage 3, reuses full's stage-2 folders)
VARIANTS = {
    "full": ("full", [], [], False),
    "no-self-attention": ("full", ["--context_self_attention", "false"], [], False),
    "no-speaker-masks": ("full", ["--use_speaker_masks", "false"], [], False),
    "concat-fusion": ("full", [], ["--fusion_type", "concat"], True),
    "no-supcon": ("nosupcon", [], [], False),
    "causal": ("full", ["--context", "causal"], [], False),
    "joint": (None, [], [], False),
}
BIMODAL_ONLY = ("concat-fusion",)
STAGE1_FLAGS = {"full": [], "nosupcon": ["--supcon_weight", "0"]}
JOINT_FLAGS = ["--learning_rate", "1e-3", "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4",
               "--early_stopping_patience", "0", "--warmup_steps", "0.06"]


def joint_flags(recipe, modalities=("audio", "text")):
    """The joint run's flags: the stage-I epoch budget, encoder rates and text truncation of the recipe for
    `modalities` (run_stage's stage-I defaults where the recipe has none). The joint run gets no --recipe (its stage
    section would be stage II's or III's), so what it keeps of stage I is passed here."""
    from hcam.trainer.arguments import read_recipe
    from hcam.trainer.stages import STAGE1_DEFAULTS, Stage

    settings = {m: {**STAGE1_DEFAULTS[m], **read_recipe(recipe, Stage(1, m))} for m in modalities}
    epochs = max(settings[m]["num_train_epochs"] for m in settings)
    # the Trainer gives audio-encoder weights --audio_encoder_learning_rate, every other encoder weight the plain rate
    rates = {"text": "--encoder_learning_rate", "audio": "--audio_encoder_learning_rate"}
    tokens = settings["text"].get("max_text_tokens") if "text" in settings else None
    return ["--joint_training", "--num_train_epochs", str(epochs), *JOINT_FLAGS,
            *[x for m in modalities for x in (rates[m], str(settings[m]["encoder_learning_rate"]))],
            *(["--max_text_tokens", str(tokens)] if tokens else [])]


class Runner:
    """Trains the stage folders of every variant and seed under one output folder, skipping finished ones."""

    def __init__(self, args):
        self.args, self.out = args, args.output_dir
        self.log = os.path.join(self.out, "runs.log")
        self.dataset_flags = ["--dataset_name", args.dataset_name] + (["--data_dir", args.data_dir] if args.data_dir else [])
        self.cache = ["--embedding_cache_dir", os.path.join(self.out, ".embedding_cache")]
        self.wall_seconds = (read_json(self.out, "ablation.json") or {}).get("wall_seconds", {})

    def record(self, root, seconds):
        for tag, spent in seconds.items():
            self.wall_seconds[os.path.relpath(os.path.join(root, tag), self.out)] = round(spent, 1)

    def run(self, root, stages, flags, done=None):
        """stacking_experiment.sequence with this corpus and recipe; {tag: folder}; wall seconds recorded."""
        folders, seconds = sequence(root, flags, self.log, self.dataset_flags, stages=stages, done=done,
                                    recipe=self.args.recipe)
        self.record(root, seconds)
        return folders

    def stage1(self, setting, seed):
        """{tag: folder} of the stage-I models of `setting` for `seed` (or the shared --stage1_seed)."""
        seed = self.args.stage1_seed if self.args.stage1_seed is not None else seed
        root = os.path.join(self.out, f"stage1-{setting}-seed{seed}")
        return self.run(root, [Stage(1, m) for m in self.args.modalities], [*STAGE1_FLAGS[setting], "--seed", str(seed)])

    def variant(self, name, seed):
        """Train `name` for `seed`; the folder of its final model."""
        setting, flags2, flags3, reuse = VARIANTS[name]
        out = os.path.join(self.out, name, f"seed{seed}")
        extra = [*self.cache, "--seed", str(seed)]
        if name == "joint":  # one modality: its stages I-II at once (--stage 2 --modality M --joint_training)
            modalities = self.args.modalities
            stage_flags = ["--stage", "3"] if len(modalities) == 2 else ["--stage", "2", "--modality", modalities[0]]
            # not a stage of the sequence (no --init_from): one run_stage.py run, without the recipe
            folder, seconds = stage(out, last_stage_tag(modalities), stage_flags,
                                    [*joint_flags(self.args.recipe, modalities), "--seed", str(seed)], self.log,
                                    self.dataset_flags, recipe=None)
            self.record(out, {last_stage_tag(modalities): seconds} if seconds else {})
            return folder
        stage1 = self.stage1(setting, seed)
        stage2_root = os.path.join(self.out, "full", f"seed{seed}") if reuse else out
        stage2 = [Stage(2, m) for m in self.args.modalities]
        folders = self.run(stage2_root, stage2, [*flags2, *extra], done=stage1)
        if len(self.args.modalities) == 1:
            return folders[stage2[0].tag]
        return self.run(out, [Stage(3)], [*flags3, *extra], done=folders)[Stage(3).tag]


def own_stage_folders(out, name, seed, modalities):
    """The stage folders `name` trains itself for `seed` (not the shared stage I, not full's reused stage II)."""
    root = os.path.join(out, name, f"seed{seed}")
    if name in ("joint", "concat-fusion"):
        return [final_folder(out, name, seed, modalities)]
    tags = [f"stage2-{m}" for m in modalities] + (["stage3"] if len(modalities) == 2 else [])
    return [os.path.join(root, tag) for tag in tags]


def train_seconds(folders):
    """The Trainer's train_runtime summed over finished stage folders (None if one is missing)."""
    values = [(read_json(f, RESULTS) or {}).get("train_runtime") for f in folders]
    return sum(values) if values and None not in values else None


def final_folder(out, name, seed, modalities):
    return os.path.join(out, name, f"seed{seed}", last_stage_tag(modalities))


def collect(args, variants):
    """{row: {"runs": {seed: results}, "seconds": [...]}} of every finished run; head rows from full's runs."""
    final_head = "fusion" if len(args.modalities) == 2 else f"{args.modalities[0]}_context"
    rows = {}
    for name in variants:
        for seed in args.seeds:
            folder = final_folder(args.output_dir, name, seed, args.modalities)
            if not StageFolder.is_finished(folder):
                continue
            row = rows.setdefault(name, {"runs": {}, "seconds": []})
            row["runs"][str(seed)] = results(folder)
            row["seconds"].append(train_seconds(own_stage_folders(args.output_dir, name, seed, args.modalities)))
    for head in heads_of(args.modalities) if "full" in rows else []:
        rows[f"full, {head} head alone" if head != "ensemble" else "full, ensemble of every head"] = {
            "runs": {seed: {split: {"ensemble": None, final_head: r[split][head]} for split in r}
                     for seed, r in rows["full"]["runs"].items()}, "seconds": []}
    return rows, final_head


def summarise(rows, final_head):
    table = {}
    for name, row in rows.items():
        runs = list(row["runs"].values())
        table[name] = {"n": len(runs), "seeds": sorted(row["runs"], key=int)}
        for split in ("validation", "test"):
            for head in ("ensemble", final_head):
                table[name][f"{split}_{head}"] = mean_std([r[split][head] for r in runs])
        seconds = [s for s in row["seconds"] if s is not None]
        table[name]["train_seconds_per_seed"] = sum(seconds) / len(seconds) if seconds else None
    return table


def stage1_seconds(out):
    """Training seconds of every stage-I folder under `out` (shared by the variants that reuse it)."""
    found = {}
    for entry in sorted(os.listdir(out)):
        if entry.startswith("stage1-"):
            for tag in sorted(os.listdir(os.path.join(out, entry))):
                found[f"{entry}/{tag}"] = train_seconds([os.path.join(out, entry, tag)])
    return found


def print_table(args, table, final_head, shared):
    columns = [f"{split}_{head}" for split in ("validation", "test") for head in ("ensemble", final_head)]
    print(f"\n{args.dataset_name} corpus: weighted F1, mean ± std over seeds {args.seeds}; stage I "
          + (f"trained once (seed {args.stage1_seed}) and shared" if args.stage1_seed is not None else "per seed")
          + f". ensemble = the final model's ensemble of every head; head = its {final_head} head (head rows: the "
          "named head of full's final model alone)")
    headers = [f"{'val' if c.startswith('validation') else 'test'} {'ensemble' if c.endswith('ensemble') else 'head'}"
               for c in columns]
    print(f"{'variant':34s} {'n':>2s} " + " ".join(f"{c:>15s}" for c in headers) + f" {'train s/seed':>12s}")
    for name, row in table.items():
        cells = [f"{row[c][0]:.3f} ± {row[c][1]:.3f}" if row[c][0] is not None else "-" for c in columns]
        seconds = f"{row['train_seconds_per_seed']:.0f}" if row["train_seconds_per_seed"] is not None else "-"
        print(f"{name:34s} {row['n']:2d} " + " ".join(f"{c:>15s}" for c in cells) + f" {seconds:>12s}")
    print("stage-I training seconds (shared by the variants that reuse them): "
          + ", ".join(f"{k} {v:.0f}" for k, v in shared.items() if v is not None))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="runs/ablation")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 7, 1234])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--dataset_name", default="demo")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--recipe", default=RECIPE, help="the recipe of every stage (default: the demo's)")
    parser.add_argument("--modalities", nargs="+", default=["audio", "text"], choices=["audio", "text"],
                        help="text alone for a text-only corpus (MELD text): the text rows only")
    parser.add_argument("--stage1_seed", type=int, default=None,
                        help="train stage I once with this seed for every seed (default: once per seed)")
    parser.add_argument("--report_only", action="store_true", help="train nothing: the table of the finished runs")
    args = parser.parse_args(argv)
    if len(args.modalities) == 1:
        dropped = [v for v in args.variants if v in BIMODAL_ONLY]
        if dropped and argv is not None and "--variants" in argv:
            parser.error(f"--variants {' '.join(dropped)} need audio and text; a text-only corpus has no stage III.")
        args.variants = [v for v in args.variants if v not in BIMODAL_ONLY]
    return args


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    runner = Runner(args)
    for seed in [] if args.report_only else args.seeds:
        for name in dict.fromkeys((["full"] if "concat-fusion" in args.variants else []) + args.variants):
            folder = runner.variant(name, seed)
            print(f"{name} seed {seed}: {folder}", flush=True)
    variants = [v for v in VARIANTS if v not in BIMODAL_ONLY or len(args.modalities) == 2]
    rows, final_head = collect(args, variants)
    table = summarise(rows, final_head)
    shared = stage1_seconds(args.output_dir)
    print_table(args, table, final_head, shared)
    summary = {"dataset": args.dataset_name, "seeds": args.seeds, "stage1_seed": args.stage1_seed,
               "modalities": args.modalities, "final_head": final_head, "table": table,
               "runs": {k: v["runs"] for k, v in rows.items() if not k.startswith("full,")},
               "stage1_train_seconds": shared,  # side-by-side invocations: keep the others' wall times too
               "wall_seconds": {**(read_json(args.output_dir, "ablation.json") or {}).get("wall_seconds", {}),
                                **runner.wall_seconds}}
    with open(os.path.join(args.output_dir, "ablation.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
