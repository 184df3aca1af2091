"""From a raw recording to an emotion timeline, measured against the gold turns of recordings made by
bench/make_recordings.py (TTS voices, 2-4 speakers, pauses, overlaps, two-sentence turns, background noise).

For every recording:
- turn boundaries: F1 of the found turns' starts and ends against the gold ones (pyannote.metrics
  SegmentationPrecision/Recall, `--tolerance` seconds, one-to-one matching);
- diarization error rate of the found turns against the gold turns (pyannote.metrics DiarizationErrorRate; collar 0
  and a 0.5 s collar, i.e. 0.25 s either side of each gold boundary, NIST's usual forgiveness);
- with --model, the emotion weighted F1 of three paths of the same model, all scored on the gold turns:
  gold turns + gold transcripts (hcam-predict --recording --segments with text), gold turns + ASR transcripts
  (--segments without text, --asr whisper), and the whole path (--recording alone: turns, speakers, ASR, HCAM). A gold
  turn takes the label of the found turn that overlaps it most; a gold turn no found turn overlaps counts as wrong.
- wall time of the whole path (find_turns + ASR + HCAM) and its real-time factor.

    python bench/make_recordings.py --out /tmp/recordings --seed 0 --speakers 2 2 3 3 4 4 --turns 40
    python bench/bench_recordings.py --recordings /tmp/recordings --model runs/demo/stage3 --json results.json

Needs pip install "hcam[recordings,asr,bench]" (make setup installs them).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


def annotation(rows):
    from pyannote.core import Annotation, Segment

    result = Annotation()
    for index, row in enumerate(rows):
        result[Segment(float(row["start"]), float(row["end"])), index] = row["speaker"]
    return result


def boundary_f1(gold, found, tolerance):
    """F1 of turn ends and of turn starts (pyannote.metrics' segmentation precision/recall on the turns' timelines:
    ends as given, starts as the ends of the segments [start_i, start_i+1])."""
    from pyannote.core import Segment, Timeline
    from pyannote.metrics.segmentation import SegmentationPrecision, SegmentationRecall

    def ends(rows):
        return Timeline([Segment(float(r["start"]), float(r["end"])) for r in rows])

    def starts(rows):
        times = [float(r["start"]) for r in rows] + [float(rows[-1]["end"])]
        return Timeline([Segment(a, b) for a, b in zip(times[:-1], times[1:])])

    scores = {}
    for name, timeline in (("ends", ends), ("starts", starts)):
        precision = SegmentationPrecision(tolerance=tolerance)(timeline(gold), timeline(found))
        recall = SegmentationRecall(tolerance=tolerance)(timeline(gold), timeline(found))
        scores[name] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return scores


def labels_on_gold_turns(gold, rows):
    """For each gold turn, the label of the predicted row overlapping it most ("(none)" if none does)."""
    labels = []
    for turn in gold:
        start, end = float(turn["start"]), float(turn["end"])
        best, best_overlap = "(none)", 0.0
        for row in rows:
            overlap = min(end, row["end"]) - max(start, row["start"])
            if overlap > best_overlap:
                best, best_overlap = row["label"], overlap
        labels.append(best)
    return labels


def weighted_f1(references, predictions, label_ids):
    from hcam.trainer.evaluation import head_scores

    ids = {**label_ids, "(none)": -1}
    return head_scores(np.array([ids[p] for p in predictions]), np.array([ids[r] for r in references]))["weighted_f1"]


def load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", required=True, help="folder written by bench/make_recordings.py")
    parser.add_argument("--model", help="a trained HCAM checkpoint: adds the emotion weighted F1 of the three paths")
    parser.add_argument("--asr", default="whisper", choices=["whisper", "pocketsphinx"])
    parser.add_argument("--known_speakers", action="store_true", help="give find_turns the true number of speakers")
    parser.add_argument("--tolerance", type=float, default=0.5, help="turn-boundary tolerance in seconds")
    parser.add_argument("--only", nargs="*", help="names of the recordings to run (default: all)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*uem.*")
    import torch
    from pyannote.metrics.diarization import DiarizationErrorRate

    from hcam.processing.recording import find_turns
    from hcam.trainer.predict import load_pipeline
    from hcam.trainer.recordings import predict_recording

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads()))
    folder = Path(args.recordings)
    listing = json.loads((folder / "recordings.json").read_text())
    if args.only:
        listing = [item for item in listing if item["name"] in args.only]
    pipe = load_pipeline(args.model) if args.model else None
    label_ids = pipe.model.config.label2id if pipe is not None else None
    results = []
    for item in listing:
        name = item["name"]
        with open(folder / f"{name}.turns.csv", encoding="utf-8") as f:
            gold = list(csv.DictReader(f))
        path = folder / f"{name}.wav"
        num_speakers = item["speakers"] if args.known_speakers else None
        result = {"name": name, "speakers": item["speakers"], "seconds": item["seconds"], "gold_turns": len(gold),
                  "load_before": load()}
        started = time.perf_counter()
        turns = find_turns(path, num_speakers=num_speakers)
        result["find_turns_seconds"] = time.perf_counter() - started
        result["found_turns"] = len(turns)
        result["found_speakers"] = len({t["speaker"] for t in turns})
        reference, hypothesis = annotation(gold), annotation(turns)
        result["der"] = DiarizationErrorRate(collar=0.0)(reference, hypothesis)
        result["der_collar_0.5"] = DiarizationErrorRate(collar=0.5)(reference, hypothesis)
        result["boundary_f1"] = boundary_f1(gold, turns, args.tolerance)
        if pipe is not None:
            references = [t["label"] for t in gold]
            with tempfile.TemporaryDirectory() as scratch:
                no_text = Path(scratch) / "turns.csv"
                with open(no_text, "w", newline="", encoding="utf-8") as f:
                    writer = csv.DictWriter(f, fieldnames=["start", "end", "speaker"], extrasaction="ignore")
                    writer.writeheader()
                    writer.writerows(gold)
                gold_text = predict_recording(path, pipe, segments=folder / f"{name}.turns.csv", asr="none")
                gold_asr = predict_recording(path, pipe, segments=no_text, asr=args.asr)
            started = time.perf_counter()
            whole = predict_recording(path, pipe, asr=args.asr, num_speakers=num_speakers)
            result["whole_path_seconds"] = time.perf_counter() - started
            result["real_time_factor"] = result["whole_path_seconds"] / item["seconds"]
            result["labels"] = {
                "reference": references,
                "gold turns + gold text": [r["label"] for r in gold_text],
                f"gold turns + ASR ({args.asr})": [r["label"] for r in gold_asr],
                "whole path": labels_on_gold_turns(gold, whole),
            }
            result["weighted_f1"] = {path: weighted_f1(references, labels, label_ids)
                                     for path, labels in result["labels"].items() if path != "reference"}
            if "text" in pipe.model.config.modalities:
                from hcam.processing.asr import word_error_rate

                result["asr_wer_on_gold_turns"] = word_error_rate([t["text"] for t in gold],
                                                                  [r["text"] for r in gold_asr])
        result["load_after"] = load()
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "labels"}), flush=True)

    def mean(key, rows, sub=None):
        values = [r[key][sub] if sub else r[key] for r in rows if key in r]
        return float(np.mean(values)) if values else None

    summary = {}
    for group, rows in (("2-3 speakers", [r for r in results if r["speakers"] <= 3]),
                        ("4 speakers", [r for r in results if r["speakers"] == 4]), ("all", results)):
        if not rows:
            continue
        summary[group] = {"recordings": len(rows), "minutes": sum(r["seconds"] for r in rows) / 60,
                          "der": mean("der", rows), "der_collar_0.5": mean("der_collar_0.5", rows),
                          "boundary_f1_starts": mean("boundary_f1", rows, "starts"),
                          "boundary_f1_ends": mean("boundary_f1", rows, "ends"),
                          "speaker_count_right": sum(r["found_speakers"] == r["speakers"] for r in rows)}
        if pipe is not None:
            summary[group]["weighted_f1"] = {k: mean("weighted_f1", rows, k) for k in results[0]["weighted_f1"]}
            # every gold turn of the group scored at once: steadier than the mean of 40-turn recordings' scores
            references = [label for r in rows for label in r["labels"]["reference"]]
            summary[group]["weighted_f1_pooled"] = {
                k: weighted_f1(references, [label for r in rows for label in r["labels"][k]], label_ids)
                for k in results[0]["weighted_f1"]}
            summary[group]["real_time_factor"] = (sum(r["whole_path_seconds"] for r in rows)
                                                  / sum(r["seconds"] for r in rows))
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip()
    report = {"command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "revision": revision,
              "machine": f"{os.cpu_count()}-core {platform.machine()}, torch threads {torch.get_num_threads()}",
              "summary": summary, "recordings": results}
    print(json.dumps({k: v for k, v in report.items() if k != "recordings"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
