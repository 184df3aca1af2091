"""From a raw recording to an emotion timeline, measured against the gold turns of recordings made by
bench/make_recordings.py (TTS voices, 2-4 speakers, pauses, overlaps, two-sentence turns, background noise).

For every recording:
- turn boundaries: F1 of the found turns' starts and ends against the gold ones (pyannote.metrics
  SegmentationPrecision/Recall, `--tolerance` seconds, one-to-one matching);
- diarization error rate of the found turns against the gold turns (pyannote.metrics DiarizationErrorRate; collar 0
  and a 0.5 s collar, i.e. 0.25 s either side of each gold boundary, NIST's usual forgiveness);
- with --model, the emotion weighted F1 of five paths of the same model, all scored on the gold turns, which
  decompose the whole path's gap step by step:
  1. gold turns + gold transcripts (hcam-predict --recording --segments with text);
  2. gold turns + ASR transcripts (--segments without text, --asr whisper);
  3. the turns find_turns would cut with a perfect speaker step (its voice activity's regions, each given the gold
     speaker and cut halfway between two gold speakers' sentences) + ASR: what voice activity's edges cost;
  4. the found turns with the gold speakers' names + ASR (each found turn named after the gold speaker overlapping it
     most; its transcript is the whole path's): what the speaker step's cuts cost;
  5. the whole path (--recording alone: turns, speakers, ASR, HCAM): 4 -> 5 is what the speakers' names cost.
  A gold turn takes the label of the found turn that overlaps it most; a gold turn no found turn overlaps counts as
  wrong. Also per gold turn: found turns cover less than half of it (missed), two or more found turns cover a
  quarter of it each (split), its labelling found turn covers half of another gold turn too (merged); each path's
  accuracy on each kind; how often the whole path's label agrees with gold turns + ASR; and the recogniser's WER over
  all of a recording's words, on the gold turns and on the found turns.
- wall time of the whole path (find_turns + ASR + HCAM) and its real-time factor.

Each voice set (the recordings' name prefix, flite or espeak) is summarised apart: the mean and standard deviation
of the recordings' scores, the score of all their gold turns at once (pooled: steadier than 40-turn recordings), and
the whole path's pooled gap to gold turns + ASR with a 95 % bootstrap interval over recordings. --gold_from reuses the
gold-turn paths (1, 2) of an earlier run on the same recordings and model, and --whole_path_only skips 3 and 4, to
score variants of the turn finding (--min_pause, --max_turn_seconds, --set CONSTANT=value) quickly;
--summarise joins earlier runs (e.g. one per voice set) into one summary.

    python bench/make_recordings.py --out /tmp/recordings --seed 0 --speakers 2 2 3 3 4 4 --turns 40
    python bench/bench_recordings.py --recordings /tmp/recordings --model runs/demo/stage3 --json results.json
    python bench/bench_recordings.py --recordings /tmp/recordings --model runs/demo/stage3 --gold_from results.json \
        --whole_path_only --max_turn_seconds 10 --json variant.json

Needs pip install "hcam[recordings,asr,bench]" (make setup installs them).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
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


def weighted_f1(references, predictions):
    """Weighted F1 of label names (hcam.trainer.evaluation.head_scores; "(none)", no prediction, is always wrong)."""
    from hcam.trainer.evaluation import head_scores

    ids = {label: index for index, label in enumerate(sorted(set(references) | set(predictions) - {"(none)"}))}
    ids["(none)"] = -1
    return head_scores(np.array([ids[p] for p in predictions]), np.array([ids[r] for r in references]))["weighted_f1"]


def load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def overlap(a, b):
    return max(0.0, min(float(a["end"]), float(b["end"])) - max(float(a["start"]), float(b["start"])))


def with_gold_speakers(found, gold):
    """The found turns, each with the speaker of the gold turn overlapping it most (its own when none does)."""
    named = []
    for turn in found:
        best = max(gold, key=lambda g: overlap(turn, g))
        named.append({**turn, "speaker": best["speaker"] if overlap(turn, best) > 0 else turn["speaker"]})
    return named


def turn_structure(gold, found):
    """For each gold turn, which of "missed", "split", "merged" it is (a list, empty when none): found turns cover less
    than half of it (missed); two or more found turns each cover a quarter of it (split); the found turn overlapping
    it most (whose label it takes) also covers half of another gold turn (merged)."""
    kinds = []
    for index, turn in enumerate(gold):
        length = float(turn["end"]) - float(turn["start"])
        covers = [overlap(turn, f) for f in found]
        kind = []
        if sum(covers) < 0.5 * length:
            kind.append("missed")
        if sum(c >= 0.25 * length for c in covers) >= 2:
            kind.append("split")
        if covers and max(covers) > 0:
            main = found[int(np.argmax(covers))]
            if any(overlap(main, other) >= 0.5 * (float(other["end"]) - float(other["start"]))
                   for k, other in enumerate(gold) if k != index):
                kind.append("merged")
        kinds.append(kind)
    return kinds


GOLD_TEXT, GOLD_ASR, ORACLE_SPEAKERS, GOLD_SPEAKERS, WHOLE = (
    "gold turns + gold text", "gold turns + ASR", "voice activity + gold speakers + ASR",
    "found turns, gold speakers + ASR", "whole path")


def turns_with_gold_speakers(path, speech, min_pause, max_turn_seconds):
    """The turns find_turns would cut with a perfect speaker step: its voice activity's speech regions, each given to
    the gold speaker of the sentences in it (`speech`: start,end,speaker of each spoken sentence) and cut halfway
    between two sentences of different speakers (across a pause, or inside an overlap), then joined into turns as
    find_turns joins its pieces."""
    from hcam.processing import recording

    vad, get_speech_timestamps = recording._silero()
    source = recording._Source(path)
    try:
        regions = [(start, end) for _, start, end, _ in
                   recording._stream_regions(source, recording.DEFAULT_WINDOW_SECONDS, 1, vad, get_speech_timestamps)]
    finally:
        source.close()
    names = list(dict.fromkeys(row["speaker"] for row in speech))
    spoken = sorted((float(row["start"]), float(row["end"]), names.index(row["speaker"])) for row in speech)
    pieces = []
    for start, end in regions:
        inside = [s for s in spoken if min(end, s[1]) - max(start, s[0]) > 0.05]
        if not inside:  # voice activity over no sentence (noise): the nearest sentence's speaker
            inside = [min(spoken, key=lambda s: abs((s[0] + s[1]) / 2 - (start + end) / 2))]
        cut = start
        for before, after in zip(inside[:-1], inside[1:]):
            if before[2] != after[2]:
                middle = min(end, max(cut, (before[1] + after[0]) / 2))
                pieces.append((cut, middle, before[2]))
                cut = middle
        pieces.append((cut, end, inside[-1][2]))
    return recording._turns_from_pieces([p for p in pieces if p[1] > p[0]], min_pause, max_turn_seconds)


def write_segments(path, rows, fields):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def score_paths(rows):
    """{path: labels on the gold turns, "reference": gold labels} -> the paths' weighted F1 and how often the whole
    path agrees with gold turns + ASR (one recording's, or pooled recordings' joined lists)."""
    references = rows["reference"]
    scores = {"weighted_f1": {k: weighted_f1(references, v) for k, v in rows.items() if k != "reference"}}
    if GOLD_ASR in rows and WHOLE in rows:
        scores["whole_path_agrees_with_gold_turns_asr"] = float(np.mean(
            [a == b for a, b in zip(rows[GOLD_ASR], rows[WHOLE])]))
    return scores


def structure_summary(kinds, labels):
    """Counts of missed / split / merged / clean gold turns, and each path's accuracy on each kind."""
    summary = {}
    for kind in ("missed", "split", "merged", "clean"):
        picked = [i for i, k in enumerate(kinds) if (kind in k if kind != "clean" else not k)]
        summary[kind] = {"turns": len(picked)}
        for path, values in labels.items():
            if path != "reference" and picked:
                summary[kind][f"accuracy, {path}"] = float(np.mean([values[i] == labels["reference"][i]
                                                                    for i in picked]))
    return summary


def set_constants(assignments):
    """--set NAME=VALUE: replace a constant of hcam.processing.recording (a variant of the turn finding)."""
    from hcam.processing import recording

    for assignment in assignments or []:
        name, _, value = assignment.partition("=")
        if not hasattr(recording, name) or name.startswith("DEFAULT_"):  # defaults are bound into find_turns
            sys.exit(f"--set: hcam.processing.recording has no constant {name} read at run time (for its defaults "
                     "use --min_pause, --max_turn_seconds)")
        setattr(recording, name, type(getattr(recording, name))(value))


def bootstrap_gap(rows, resamples=1000, seed=0):
    """95 % interval of the pooled whole path - gold turns + ASR weighted F1, recordings drawn with replacement
    (scikit-learn's f1_score, which evaluate's "f1" that head_scores loads wraps: the same score, a thousand times
    faster)."""
    from sklearn.metrics import f1_score

    names = sorted({label for r in rows for k in ("reference", WHOLE, GOLD_ASR) for label in r["labels"][k]})
    ids = [{k: np.array([names.index(label) if label != "(none)" else -1 for label in r["labels"][k]])
            for k in ("reference", WHOLE, GOLD_ASR)} for r in rows]
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(resamples):
        drawn = [ids[i] for i in rng.integers(len(rows), size=len(rows))]
        joined = {k: np.concatenate([d[k] for d in drawn]) for k in ("reference", WHOLE, GOLD_ASR)}
        gaps.append(f1_score(joined["reference"], joined[WHOLE], average="weighted")
                    - f1_score(joined["reference"], joined[GOLD_ASR], average="weighted"))
    return [float(np.percentile(gaps, 2.5)), float(np.percentile(gaps, 97.5))]


def summarise(results, resamples=1000):
    """Per voice set and speaker group: means of the recordings' scores, and with labels the paths' weighted F1 (mean,
    standard deviation over recordings, pooled over all turns), the whole path's gap to gold turns + ASR (with a
    bootstrap interval over recordings), the recogniser's WER and the per-turn structure."""
    def mean(key, rows, sub=None):
        values = [r[key][sub] if sub else r[key] for r in rows if key in r]
        return float(np.mean(values)) if values else None

    summary, groups = {}, []
    for voices in dict.fromkeys(r["voices"] for r in results):
        of = [r for r in results if r["voices"] == voices]
        groups += [(f"{voices}, 2-3 speakers", [r for r in of if r["speakers"] <= 3]),
                   (f"{voices}, 4 speakers", [r for r in of if r["speakers"] == 4])]
    for group, rows in groups + [("all", results)]:
        if not rows:
            continue
        summary[group] = {"recordings": len(rows), "minutes": sum(r["seconds"] for r in rows) / 60,
                          "gold_turns": sum(r["gold_turns"] for r in rows),
                          "der": mean("der", rows), "der_collar_0.5": mean("der_collar_0.5", rows),
                          "boundary_f1_starts": mean("boundary_f1", rows, "starts"),
                          "boundary_f1_ends": mean("boundary_f1", rows, "ends"),
                          "speaker_count_right": sum(r["found_speakers"] == r["speakers"] for r in rows)}
        if "labels" in rows[0]:
            paths = [k for k in rows[0]["weighted_f1"]]
            summary[group]["weighted_f1_mean"] = {k: mean("weighted_f1", rows, k) for k in paths}
            summary[group]["weighted_f1_std"] = {
                k: float(np.std([r["weighted_f1"][k] for r in rows], ddof=1)) if len(rows) > 1 else None
                for k in paths}
            # every gold turn of the group scored at once: steadier than the mean of 40-turn recordings' scores
            pooled = {k: [label for r in rows for label in r["labels"][k]] for k in ["reference"] + paths}
            summary[group].update(score_paths(pooled))
            summary[group]["weighted_f1_pooled"] = summary[group].pop("weighted_f1")
            differences = [r["weighted_f1"][WHOLE] - r["weighted_f1"][GOLD_ASR] for r in rows]
            summary[group]["whole_path_minus_gold_turns_asr"] = {
                "pooled": summary[group]["weighted_f1_pooled"][WHOLE] - summary[group]["weighted_f1_pooled"][GOLD_ASR],
                "mean": float(np.mean(differences)),
                "std": float(np.std(differences, ddof=1)) if len(rows) > 1 else None,
                "pooled_95_interval": bootstrap_gap(rows, resamples) if len(rows) > 1 and resamples else None}
            if all("asr_wer_whole_recording" in r for r in rows):
                summary[group]["asr_wer_whole_recording"] = {k: mean("asr_wer_whole_recording", rows, k)
                                                              for k in rows[0]["asr_wer_whole_recording"]}
            summary[group]["turn_kinds"] = structure_summary([k for r in rows for k in r["turn_kinds"]], pooled)
            summary[group]["real_time_factor"] = (sum(r["whole_path_seconds"] for r in rows)
                                                  / sum(r["seconds"] for r in rows))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", nargs="+", help="folders written by bench/make_recordings.py")
    parser.add_argument("--summarise", nargs="+", metavar="JSON",
                        help="instead of running: summarise the recordings of earlier --json files together")
    parser.add_argument("--model", help="a trained HCAM checkpoint: adds the emotion weighted F1 of the five paths")
    parser.add_argument("--asr", default="whisper", choices=["whisper", "pocketsphinx"])
    parser.add_argument("--known_speakers", action="store_true", help="give find_turns the true number of speakers")
    parser.add_argument("--min_pause", type=float, default=None, help="find_turns' min_pause (default: its own)")
    parser.add_argument("--max_turn_seconds", type=float, default=None,
                        help="find_turns' max_turn_seconds (default: its own)")
    parser.add_argument("--tolerance", type=float, default=0.5, help="turn-boundary tolerance in seconds")
    parser.add_argument("--only", nargs="*", help="names of the recordings to run (default: all)")
    parser.add_argument("--gold_from", help="an earlier --json of the same recordings and model: reuse its gold-turn "
                                            "paths' labels instead of running them again")
    parser.add_argument("--set", nargs="*", metavar="NAME=VALUE",
                        help="variant: replace constants of hcam.processing.recording (e.g. MIN_SPEAKER_SEGMENT=0.4)")
    parser.add_argument("--whole_path_only", action="store_true",
                        help="of the found-turn paths, only the whole path (variants: quicker)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*uem.*")
    import torch
    from pyannote.metrics.diarization import DiarizationErrorRate

    from hcam.trainer.predict import load_pipeline, predict, read_recording

    if args.summarise:
        runs = [json.loads(Path(f).read_text()) for f in args.summarise]
        report = {"summarises": [{k: run[k] for k in ("command", "date", "revision", "machine")} for run in runs],
                  "summary": summarise([r for run in runs for r in run["recordings"]])}
        print(json.dumps(report, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        return
    if not args.recordings:
        parser.error("give --recordings (or --summarise)")
    set_constants(args.set)
    from hcam.processing import recording

    args.min_pause = recording.DEFAULT_MIN_PAUSE if args.min_pause is None else args.min_pause
    args.max_turn_seconds = recording.DEFAULT_MAX_TURN_SECONDS if args.max_turn_seconds is None else \
        args.max_turn_seconds
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "0")) or torch.get_num_threads()))
    listing = []
    for folder in map(Path, args.recordings):
        listing += [(folder, item) for item in json.loads((folder / "recordings.json").read_text())]
    if args.only:
        listing = [(folder, item) for folder, item in listing if item["name"] in args.only]
    earlier = {}
    if args.gold_from:
        earlier = {r["name"]: r for r in json.loads(Path(args.gold_from).read_text())["recordings"]}
    pipe = load_pipeline(args.model) if args.model else None
    results = []
    for folder, item in listing:
        name = item["name"]
        with open(folder / f"{name}.turns.csv", encoding="utf-8") as f:
            gold = list(csv.DictReader(f))
        path = folder / f"{name}.wav"
        cutting = {"min_pause": args.min_pause, "max_turn_seconds": args.max_turn_seconds}
        options = {**cutting, "num_speakers": item["speakers"] if args.known_speakers else None}
        result = {"name": name, "voices": re.match(r"[a-z-]*", name).group() or "voices",
                  "speakers": item["speakers"], "seconds": item["seconds"], "gold_turns": len(gold),
                  "load_before": load()}
        started = time.perf_counter()
        conversations = read_recording(path, **options)
        result["find_turns_seconds"] = time.perf_counter() - started
        turns = [{"start": t["start"], "end": t["end"], "speaker": t["speaker"]} for t in conversations[0]["turns"]]
        result["found_turns"] = len(turns)
        result["found_speakers"] = len({t["speaker"] for t in turns})
        reference, hypothesis = annotation(gold), annotation(turns)
        result["der"] = DiarizationErrorRate(collar=0.0)(reference, hypothesis)
        result["der_collar_0.5"] = DiarizationErrorRate(collar=0.5)(reference, hypothesis)
        result["boundary_f1"] = boundary_f1(gold, turns, args.tolerance)
        kinds = turn_structure(gold, turns)
        result["gold_turns_missed_split_merged"] = [sum(kind in k for k in kinds) for kind in
                                                    ("missed", "split", "merged")]
        if pipe is not None:
            labels = {"reference": [t["label"] for t in gold]}
            if name in earlier:
                labels.update({k: earlier[name]["labels"][k] for k in (GOLD_TEXT, GOLD_ASR)})
            with tempfile.TemporaryDirectory() as scratch:
                scratch = Path(scratch)
                if name not in earlier:
                    write_segments(scratch / "gold.csv", gold, ["start", "end", "speaker"])
                    run = {}
                    for key, segments, asr in ((GOLD_TEXT, folder / f"{name}.turns.csv", "none"),
                                               (GOLD_ASR, scratch / "gold.csv", args.asr)):
                        rows = []
                        predict(read_recording(path, segments), pipe, scratch / "out.jsonl", asr=asr,
                                progress=False, rows=rows)
                        labels[key] = labels_on_gold_turns(gold, rows)
                        run[key] = rows
                    transcripts = {GOLD_ASR: [r["text"] for r in run[GOLD_ASR]]}
                else:
                    transcripts = {GOLD_ASR: earlier[name]["transcripts"][GOLD_ASR]} if "transcripts" in earlier[name] \
                        else {}
                # the whole path: what predict_recording does (read_recording above, then predict)
                whole = []
                started = time.perf_counter()
                predict(conversations, pipe, scratch / "out.jsonl", asr=args.asr, progress=False, rows=whole,
                        asr_progress=True)
                result["whole_path_seconds"] = time.perf_counter() - started + result["find_turns_seconds"]
                result["real_time_factor"] = result["whole_path_seconds"] / item["seconds"]
                result["turns_left_out_by_predict"] = len(turns) - len(whole)
                # the same found turns and transcripts (an empty one is transcribed again), the gold speakers' names
                texts = {(r["start"], r["end"]): r["text"] for r in whole if not r["text_source"].endswith(":empty")}
                named = [{**t, "text": texts.get((t["start"], t["end"]), "")} for t in with_gold_speakers(turns, gold)]
                write_segments(scratch / "named.csv", named, ["start", "end", "speaker", "text"])
                if not args.whole_path_only:
                    with open(folder / f"{name}.speech.csv", encoding="utf-8") as f:
                        oracle_turns = turns_with_gold_speakers(path, list(csv.DictReader(f)), **cutting)
                    write_segments(scratch / "oracle.csv", oracle_turns, ["start", "end", "speaker"])
                    result["gold_speakers_der"] = DiarizationErrorRate(collar=0.0)(reference, annotation(oracle_turns))
                    result["gold_speakers_boundary_f1"] = boundary_f1(gold, oracle_turns, args.tolerance)
                    oracle_kinds = turn_structure(gold, oracle_turns)
                    result["gold_speakers_missed_split_merged"] = [sum(kind in k for k in oracle_kinds)
                                                                   for kind in ("missed", "split", "merged")]
                    oracle = []
                    predict(read_recording(path, scratch / "oracle.csv"), pipe, scratch / "out.jsonl", asr=args.asr,
                            progress=False, rows=oracle)
                    speakers_gold = []
                    predict(read_recording(path, scratch / "named.csv"), pipe, scratch / "out.jsonl", asr=args.asr,
                            progress=False, rows=speakers_gold)
            transcripts[WHOLE] = [r["text"] for r in whole]
            result["transcripts"] = transcripts
            if "text" in pipe.model.config.modalities:
                from hcam.processing.asr import word_error_rate

                # turn by turn on the gold turns; and all of a recording's words at once, in time order, on the gold
                # turns and on the found turns (what cutting the recording differently costs the recogniser)
                if GOLD_ASR in transcripts:
                    result["asr_wer_on_gold_turns"] = word_error_rate([t["text"] for t in gold], transcripts[GOLD_ASR])
                spoken = " ".join(t["text"] for t in gold)
                result["asr_wer_whole_recording"] = {key: word_error_rate([spoken], [" ".join(heard)])
                                                     for key, heard in transcripts.items()}
            if not args.whole_path_only:
                labels[ORACLE_SPEAKERS] = labels_on_gold_turns(gold, oracle)
                labels[GOLD_SPEAKERS] = labels_on_gold_turns(gold, speakers_gold)
            labels[WHOLE] = labels_on_gold_turns(gold, whole)
            result["labels"] = labels
            result["turn_kinds"] = kinds
            result.update(score_paths(labels))
        result["load_after"] = load()
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k not in ("labels", "turn_kinds", "transcripts")}),
              flush=True)

    summary = summarise(results)
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
