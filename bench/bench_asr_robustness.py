"""How HCAM holds up as the transcripts get worse: one model, the demo test split, its gold transcripts and ASR
transcripts at several word error rates (Whisper on the clean clips and on the clips with white noise added at 20, 10
and 5 dB SNR, and PocketSphinx on the clean clips), plus the gold words without punctuation or case (WER 0: what
punctuation alone is worth); the ensemble's and every head's weighted F1 against the WER.

Only the transcripts change: the model always hears the clean clips, so the table isolates the effect of ASR errors
(noise in the model's own audio input is another question).

    python bench/bench_asr_robustness.py --model runs/demo/stage3 --json asr_robustness.json --plot asr_robustness.png
    python bench/bench_asr_robustness.py --model outputs/demo/stage3 --card    # also into that model's card

With --card, the table and the plot (asr_robustness.png) go into the model folder's card (README.md), replacing an
earlier such section; hub_cards.push uploads the picture with the card the next time the folder is pushed.

Needs pip install "hcam[asr,plot]" (make setup installs them).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

DEMO_TEST = Path(__file__).resolve().parents[1] / "data" / "demo" / "test.csv"


def noisy(waveform, snr_db, rng):
    """The clip with white noise at `snr_db` below its RMS."""
    rms = float(np.sqrt(np.mean(waveform.astype(np.float64) ** 2)))
    return (waveform + rng.standard_normal(len(waveform)).astype(np.float32) * rms * 10 ** (-snr_db / 20)).astype(
        np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--manifest", default=str(DEMO_TEST), help="labelled manifest (default: the demo test split)")
    parser.add_argument("--snr", type=float, nargs="*", default=[20, 10, 5])
    parser.add_argument("--no_pocketsphinx", action="store_true")
    parser.add_argument("--no_whisper", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--plot")
    parser.add_argument("--card", action="store_true",
                        help="also put the table and the plot into the card (README.md) of --model, a local folder")
    args = parser.parse_args(argv)
    if args.card and not os.path.isfile(os.path.join(args.model, "README.md")):
        raise SystemExit(f"--card writes into the card of a local model folder: {args.model}/README.md not found")
    import torch

    from hcam.modeling_hcam.feature_extraction_hcam import load_audio
    from hcam.processing.asr import Transcriber, word_error_rate
    from hcam.trainer.predict import load_pipeline, predict, read_manifest_conversations

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads()))
    pipe = load_pipeline(args.model)
    conversations = read_manifest_conversations(args.manifest)
    turns = [t for c in conversations for t in c["turns"]]
    clean = [load_audio(t["audio"]) for t in turns]
    gold = [t["text"] for t in turns]
    rng = np.random.default_rng(0)
    conditions = [("gold transcripts", None, None), ("gold words, no punctuation or case", "strip", None)]
    if not args.no_whisper:
        conditions += [("Whisper, clean", "whisper", None)]
        conditions += [(f"Whisper, noise {snr:g} dB SNR", "whisper", snr) for snr in args.snr]
    if not args.no_pocketsphinx:
        conditions.append(("PocketSphinx, clean", "pocketsphinx", None))
    transcribers, rows = {}, []
    for name, backend, snr in conditions:
        started = time.perf_counter()
        if backend is None:
            texts, wer = gold, 0.0
        elif backend == "strip":  # what a recogniser that gets every word right but writes no punctuation gives
            from hcam.processing.asr import normalize_transcript

            texts, wer = [" ".join(normalize_transcript(t)) or "[inaudible]" for t in gold], 0.0
        else:
            transcriber = transcribers.setdefault(backend, Transcriber(backend))
            audio = clean if snr is None else [noisy(w, snr, rng) for w in clean]
            texts = [t or "[inaudible]" for t in transcriber(audio)]
            wer = word_error_rate(gold, texts)
        runs = copy.deepcopy(conversations)
        for turn, text in zip((t for c in runs for t in c["turns"]), texts):
            turn["text"] = text
        with tempfile.TemporaryDirectory() as folder:
            metrics = predict(runs, pipe, os.path.join(folder, "p.jsonl"), evaluate=True, progress=False,
                              metrics_file=os.path.join(folder, "m.json"))
        row = {"condition": name, "wer": wer, "seconds": time.perf_counter() - started,
               "weighted_f1": {head: scores["weighted_f1"] for head, scores in metrics["heads"].items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    heads = list(rows[0]["weighted_f1"])
    print("\n| transcripts | WER | " + " | ".join(heads) + " |")
    print("|---|---|" + "---|" * len(heads))
    for row in rows:
        print(f"| {row['condition']} | {row['wer']:.3f} | " + " | ".join(f"{row['weighted_f1'][h]:.3f}" for h in heads)
              + " |")
    report = {"command": " ".join(["bench_asr_robustness.py"] + (argv if argv is not None else sys.argv[1:])),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{os.cpu_count()}-core {platform.machine()}, torch threads {torch.get_num_threads()}",
              "load": " ".join(f"{x:.2f}" for x in os.getloadavg()), "turns": len(turns), "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.card:
        from hcam.hub_cards.plots import CARD_ASR_FILE

        args.plot = args.plot or os.path.join(args.model, CARD_ASR_FILE)
    if args.plot:
        from hcam.hub_cards.plots import pyplot

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.5, 4))
        order = np.argsort([r["wer"] for r in rows])
        for head in heads:
            if head == "ensemble" or "text" in head or head == "fusion":
                ax.plot([rows[i]["wer"] for i in order], [rows[i]["weighted_f1"][head] for i in order], marker="o",
                        label=head, linewidth=2.5 if head == "ensemble" else 1.2)
        ax.set_xlabel("word error rate of the transcripts")
        ax.set_ylabel("weighted F1 (demo test split)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
    if args.card:
        embed_in_card(args.model, rows, heads, report, args.plot)


def embed_in_card(folder, rows, heads, report, plot):
    """The table and the plot as a "Robustness to ASR transcripts" section of the folder's card."""
    import shutil

    from hcam.hub_cards.plots import CARD_ASR_FILE, embed_card_section

    if os.path.abspath(plot) != os.path.abspath(os.path.join(folder, CARD_ASR_FILE)):
        shutil.copyfile(plot, os.path.join(folder, CARD_ASR_FILE))
    lines = ["### Robustness to ASR transcripts", "",
             f"Weighted F1 on {report['turns']} turns with the reference transcripts replaced by a recogniser's (the "
             "model always hears the clean audio), from `bench/bench_asr_robustness.py` "
             f"({report['date']}, {report['machine']}):", "",
             "| transcripts | WER | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]
    lines += [f"| {row['condition']} | {row['wer']:.3f} | " + " | ".join(f"{row['weighted_f1'][h]:.3f}" for h in heads)
              + " |" for row in rows]
    lines += ["", f"![Weighted F1 against the word error rate of the transcripts]({CARD_ASR_FILE})"]
    readme = os.path.join(folder, "README.md")
    with open(readme, encoding="utf-8") as f:
        card = f.read()
    with open(readme, "w", encoding="utf-8") as f:
        f.write(embed_card_section(card, "asr-robustness", "\n".join(lines)))
    print(f"card: {readme} (section 'Robustness to ASR transcripts', {CARD_ASR_FILE})")


if __name__ == "__main__":
    main()
