"""hcam-predict: run a trained HCAM checkpoint on your own conversations and write one prediction per turn.

Four ways to give the conversations (exactly one):
  --audio_dir DIR [--transcripts FILE]   a folder of clips, one per turn. FILE (CSV/TSV/JSONL) has columns
                                         file,text[,speaker][,dialogue_id][,label], in turn order; without it
                                         every audio file of DIR, sorted by name, is one conversation (use --asr).
  --conversations_dir DIR [--transcripts NAME]
                                         one subfolder per conversation, each read as --audio_dir (NAME: the
                                         transcripts table inside each subfolder, e.g. transcripts.csv).
  --manifest FILE                        the hcam manifest schema: dialogue_id,turn,speaker,text,audio[,label]
                                         (audio paths relative to the manifest; other column names with
                                         run_stage.py's --text_column_name etc.).
  --recording FILE --segments FILE       one long recording cut by a segments table with columns
                                         start,end[,speaker][,text][,label] in seconds.
  --recording FILE                       one long recording, nothing else: voice activity cuts it into turns
                                         (a pause shorter than --min_pause stays inside a turn; --max_turn_seconds),
                                         speakers are told apart by their voices (--num_speakers N, or estimated;
                                         --channels_are_speakers for a stereo call), turns are transcribed with
                                         --asr whisper. Needs pip install "hcam[recordings]".

Every turn is checked before the model runs (text when the model reads text; audio that exists, decodes and is
neither silent nor too short when it reads speech). As in run_stage.py, --skip_bad (the default) leaves bad rows and
turns out, all listed on stderr and in <output>.data_report.json (a conversation is predicted without its bad turns);
--skip_bad false stops with one error listing them all, and writes no predictions.

Output: .jsonl (one JSON object per turn), .csv, .json (one JSON document: the list of the same rows, what
pandas.read_json and datasets' "json" loader read as a table) or - (JSON lines on standard output; messages go to
stderr). A Hub model is loaded at --revision (run_stage.py pushes each stage to its own branch), with --token for a
private repo. --threads sets the CPU threads (default 1 on CPU unless OMP_NUM_THREADS is set: see --help).

Live (a causal model, trained with --context causal): --live predicts each turn the moment it arrives and writes it
as one flushed JSON line. Turns come as JSON lines on standard input (one object per turn with the pipeline's keys:
"audio" (a path) and/or "text", "speaker", and optionally "dialogue_id" to keep several conversations apart, or
{"dialogue_id": ..., "close": true} to forget one), or from any input above, turn by turn; --realtime plays a
--recording's segments at real speed (each turn is given to the model when its segment ends). A bad turn is
reported (stderr, and an {"error": ...} line) and left out; the conversation goes on.

    some-dialler | hcam-predict --model outputs/demo-causal/stage3 --live --output -
    hcam-predict --model outputs/demo-causal/stage3 --live --recording call.wav --segments call.csv --realtime \
        --output - --asr whisper

Turns without text are transcribed with --asr whisper|pocketsphinx (needs `pip install "hcam[asr]"`) when the model
reads text. --asr_for_eval replaces every gold transcript with the recogniser's, to measure how HCAM holds up on ASR
transcripts. --evaluate scores every stage head and the ensemble when the input has labels. Conversations run
--batch_size at a time (default 8; the results do not depend on it). --plot timeline.png draws the first conversation
as an emotion timeline (pip install "hcam[plot]"); --plot_attention_turn N adds stage II's attention arcs for turn N.

    hcam-predict --model outputs/demo/stage3 --manifest data/demo/test.csv --output preds.jsonl --evaluate
    hcam-predict --model outputs/demo/stage3 --manifest data/demo/test.csv --output asr.jsonl --evaluate \
        --asr_for_eval whisper
    hcam-predict --model outputs/demo/stage3 --manifest data/demo/test.csv --output preds.jsonl \
        --plot conversation.png --plot_attention_turn 5
    hcam-predict --model outputs/demo/stage3 --recording call.wav --asr whisper --output call.csv --plot call.png

The same from Python (what the web page hcam-app runs): hcam.trainer.recordings.predict_recording.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

from hcam.trainer.predict_inputs import (  # noqa: F401  (the readers and PredictError are hcam-predict's Python API)
    PredictError, check_labels, check_turns, conversation_turns, read_audio_dir, read_conversations_dir,
    read_live_lines, read_manifest_conversations, read_recording, report_bad_turns)

DEFAULT_THREADS = 1  # --threads on CPU when neither it nor OMP_NUM_THREADS is given (bench/bench_threads.py)
# ----------------------------------------------------------------------------------------------------- model loading
def load_pipeline(model_name_or_path: str, device=None, revision: str | None = None, token: str | None = None):
    """The HCAM pipeline for a checkpoint (folder, or Hub repo id at `revision` with `token`), built from the
    installed hcam classes.

    The installed package is used rather than the checkpoint's remote code, so checkpoints saved without the pipeline
    file (see `add_pipeline_to_folder`) work too. A Hub repo pushed by run_stage.py holds each stage on its own branch
    (`stage1-audio` ... `stage3`; main = the final model): `revision` picks one.
    """
    from transformers import AutoModel, AutoProcessor

    import hcam.modeling_hcam  # noqa: F401  (registers the HCAM classes with the Auto classes)
    from hcam.modeling_hcam.pipeline_hcam import HCAMEmotionPipeline

    name = str(model_name_or_path)
    if os.path.isdir(name):
        if revision is not None:
            raise PredictError(f"--revision {revision} picks a branch of a Hub repo; {name} is a local folder")
    elif os.path.exists(name):
        raise PredictError(f"--model {name} is a file; give the checkpoint's folder (or a Hub repo id)")
    elif (name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name.replace("/", "")
          or Path(name).parent.name and Path(name).parent.is_dir()):  # a path, not an org/name repo id
        raise PredictError(f"--model {name}: no such folder (a Hub model is given by its repo id, e.g. org/name)")
    hub = {"revision": revision, "token": token}
    model = AutoModel.from_pretrained(name, **hub)
    if type(model).__name__ != "HCAMForEmotionRecognition":
        raise PredictError(f"{name} holds a {type(model).__name__}, not an HCAM checkpoint")
    try:
        processor = AutoProcessor.from_pretrained(name, **hub)
    except (OSError, ValueError) as error:
        raise PredictError(
            f"no HCAMProcessor found with the checkpoint {name} ({error}); the trainer saves one next to "
            "the model (processor.save_pretrained(folder))"
        ) from error
    return HCAMEmotionPipeline(model=model, processor=processor, device=device)


# ------------------------------------------------------------------------------------------------------ prediction
def _output_row(turn: dict, result: dict) -> dict:
    row = {"dialogue_id": turn["dialogue_id"], "turn": result["turn"], "speaker": turn["speaker"],
           "text": turn.get("used_text", turn["text"]), "text_source": turn.get("text_source", "given")}
    if "gold_text" in turn:
        row["gold_text"] = turn["gold_text"]
    if isinstance(turn["audio"], str):
        row["audio"] = turn["audio"]
    for key in ("start", "end"):
        if key in turn:
            row[key] = turn[key]
    if turn["label"]:
        row["reference"] = turn["label"]
    row.update(label=result["label"], score=result["score"], probabilities=result["probabilities"],
               stages=result["stages"])
    return row


OUTPUT_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}


def output_format(output) -> str:
    """"jsonl", "json" or "csv" for an --output name (`-`, standard output, is JSON lines); else an error."""
    if str(output) == "-":
        return "jsonl"
    suffix = Path(output).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise PredictError(f"--output {output}: use a .jsonl (JSON lines), .json (one JSON list of rows) or .csv "
                           "file name, or - for standard output (JSON lines)")
    return OUTPUT_FORMATS[suffix]


class _Writer:
    """Rows to a .jsonl, .json or .csv file, or JSON lines to standard output (`-`); `flush()` after each row when
    live. A .json file is one JSON document, the list of the rows (the .jsonl and .csv rows, the same fields)."""

    def __init__(self, path: Path, labels: list[str], heads: list[str], atomic: bool = False):
        self.path, self.labels, self.heads = path, labels, heads
        self.csv, self.rows = None, []
        self.format = output_format(path)
        if str(path) == "-":
            self.file = sys.stdout
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # offline outputs are written beside and renamed at the end, so that a failed run leaves no half file
        self.target = path
        self.path = path.with_name(f".{path.name}.partial") if atomic else path
        self.file = open(self.path, "w", encoding="utf-8", newline="")

    def error(self, row: dict):
        """A JSON line saying which turn was left out and why (JSON-lines outputs only)."""
        if self.format == "jsonl":
            self.file.write(json.dumps(row, ensure_ascii=False) + "\n")

    def flush(self):
        self.file.flush()

    def write(self, row: dict):
        if self.format == "jsonl":
            self.file.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        if self.format == "json":
            self.rows.append(row)
            return
        flat = {k: v for k, v in row.items() if k not in ("probabilities", "stages")}
        flat.update({f"prob_{label}": row["probabilities"][label] for label in self.labels})
        flat.update({f"stage_{head}": row["stages"][head] for head in self.heads})
        if self.csv is None:
            fields = ["dialogue_id", "turn", "speaker", "text", "text_source", "gold_text", "audio", "start", "end",
                      "reference", "label", "score"] + [f"prob_{l}" for l in self.labels] + [f"stage_{h}" for h in self.heads]
            self.csv = csv.DictWriter(self.file, fieldnames=fields, extrasaction="ignore")
            self.csv.writeheader()
        self.csv.writerow(flat)

    def close(self, completed: bool = True):
        """Close the output; with an atomic writer, put it in place when `completed`, else remove it."""
        if self.format == "json" and completed:
            json.dump(self.rows, self.file, ensure_ascii=False, indent=1)
            self.file.write("\n")
        if self.file is sys.stdout:
            self.file.flush()
            return
        self.file.close()
        if self.path != self.target:
            if completed:
                os.replace(self.path, self.target)
            else:
                self.path.unlink(missing_ok=True)


def _record_transcript(turn, result, backend):
    """Keep the recogniser's transcript of `turn` for its output row: the pipeline's "asr" / "asr:empty" becomes
    "asr:<backend>" / "asr:<backend>:empty"."""
    turn["used_text"] = result["text"]
    turn["text_source"] = f"asr:{backend}" + result["text_source"][len("asr"):]


def _write_metrics(references, predictions, asr_pairs, asr_for_eval, output, metrics_file):
    """Weighted F1 etc. per head (and the ASR word error rate), printed and written beside `output` (with `output`
    standard output: printed to stderr, so that stdout holds only the rows, and written to `metrics_file` if any)."""
    metrics = evaluate_predictions(references, predictions)
    metrics["transcripts"] = f"asr:{asr_for_eval}" if asr_for_eval != "none" else "gold"
    if asr_pairs:
        from hcam.processing.asr import word_error_rate

        metrics["asr_word_error_rate"] = word_error_rate(*zip(*asr_pairs))
    metrics["num_turns"] = len(references)
    to_stdout = str(output) == "-"
    _print_metrics(metrics, sys.stderr if to_stdout else sys.stdout)
    if to_stdout and not metrics_file:
        return metrics
    metrics_file = Path(metrics_file) if metrics_file else Path(output).with_suffix(".metrics.json")
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"metrics written to {metrics_file}", file=sys.stderr)
    return metrics


def _decoded_or_span(turn):
    """What the pipeline gets as a checked turn's audio: its decoded waveform, or a recording's span (read again by the
    pipeline when the model needs it)."""
    waveform = turn.pop("waveform", None)
    return waveform if waveform is not None else turn["audio"]


def predict(conversations, pipe, output, asr="none", asr_for_eval="none", evaluate=False, progress=True,
            metrics_file=None, batch_size=8, plot=None, plot_dialogues=1, plot_attention_turn=None, rows=None,
            asr_progress=False, skip_bad=True, problems=None, asr_options=None, source="the input"):
    """Run `pipe` on every conversation, `batch_size` at a time, write one row per turn to `output` (and, with
    `plot`, a timeline picture of the first `plot_dialogues` conversations, with stage II's attention arcs for turn
    `plot_attention_turn`); return the metrics (or None).

    Each conversation's turns are checked just before the model reads them (text; audio that exists, decodes and that
    the feature extractor takes: not silent, not too short; the decoded audio goes on to the model, read once). Those
    problems and the readers' (`problems`) are decided together at the end: with `skip_bad` the bad turns are left
    out (each conversation is predicted without them) and listed on stderr and in <output>.data_report.json; without
    it, prediction stops at the first problem, every remaining turn is still checked, one error lists them all and
    no output file is left.

    Speech recognition goes through the pipeline's `transcriber` (`hcam.processing.asr.Transcriber(asr,
    **asr_options)`): turns without text (or, with `asr_for_eval`, every turn, its gold text kept in `gold_text`) are
    transcribed batch by batch (with `asr_progress`, 64 turns at a time under a progress bar of their own: a long
    recording is one conversation). The output file appears only once every row is written; `rows`, a list, also
    receives each output row.
    """
    from tqdm.auto import tqdm

    config = pipe.model.config
    labels = [config.id2label[i] for i in range(len(config.id2label))]
    heads = config.stage_heads()
    uses_text, uses_audio = "text" in config.modalities, "audio" in config.modalities
    asr_backend = asr_for_eval if asr_for_eval != "none" else asr
    transcriber = None
    if uses_text and asr_backend != "none":
        from hcam.processing.asr import Transcriber

        transcriber = Transcriber(asr_backend, **(asr_options or {}))
    if evaluate:
        check_labels(conversations, labels)
    if transcriber is not None and asr_progress:
        from hcam.processing.asr import ProgressTranscriber

        transcriber = ProgressTranscriber(transcriber, progress=progress)
    feature_extractor = pipe.processor.feature_extractor
    found = list(problems or [])  # the readers' problems, then each conversation's bad turns as it is checked
    kept = []  # the conversations given to the pipeline, without their bad turns, in order
    total = sum(len(c["turns"]) for c in conversations)
    bar = tqdm(total=total, desc="hcam-predict" + (f" (ASR: {asr_backend})" if transcriber else ""), unit="turn",
               disable=not progress, file=sys.stderr)

    def inputs():
        """Each conversation checked just before the model reads it (its audio decoded once, for both); after a
        problem without `skip_bad`, nothing more is predicted but every turn is still checked, to list them all."""
        for conversation in conversations:
            found.extend(check_turns([conversation], feature_extractor, uses_text, uses_audio, transcriber,
                                        asr_for_eval))
            turns = [t for t in conversation["turns"] if not t["bad"]]
            stop = found and not skip_bad
            bar.update(len(conversation["turns"]) - (0 if stop else len(turns)))
            if stop or not turns:
                for turn in conversation["turns"]:
                    turn.pop("waveform", None)
                continue
            kept.append({**conversation, "turns": turns})
            yield {"dialogue_id": conversation["dialogue_id"],
                   "turns": [{"audio": _decoded_or_span(t) if (uses_audio or t["transcribe"]) else None,
                              "sampling_rate": feature_extractor.sampling_rate,
                              "text": "" if t["transcribe"] else (t["text"] if uses_text else None),
                              "speaker": t["speaker"] or None} for t in turns]}

    writer = _Writer(Path(output), labels, heads, atomic=True)
    completed = False
    references, predictions, asr_pairs = [], {h: [] for h in ["ensemble"] + heads}, []
    kwargs = {"transcriber": transcriber} if transcriber is not None else {}
    plotted = []
    try:
        for index, results in enumerate(pipe(inputs(), batch_size=batch_size, progress=bar.update,
                                             output_attentions=plot_attention_turn is not None, **kwargs)):
            conversation = kept[index]
            for turn, result in zip(conversation["turns"], results):
                if turn["transcribe"]:
                    source = result["text_source"]  # "asr" or "asr:empty"
                    _record_transcript(turn, result, asr_backend)
                    if "gold_text" in turn:
                        asr_pairs.append((turn["gold_text"], "" if source == "asr:empty" else result["text"]))
                row = _output_row(turn, result)
                writer.write(row)
                if rows is not None:
                    rows.append(row)
                if turn["label"]:
                    references.append(config.label2id[turn["label"]] if turn["label"] in config.label2id else -1)
                    predictions["ensemble"].append(config.label2id[result["label"]])
                    for head in heads:
                        predictions[head].append(config.label2id[result["stages"][head]])
            if plot is not None and len(plotted) < plot_dialogues:
                plotted.append(_plot_input(conversation, results))
        completed = bool(kept) and (skip_bad or not found)
    except ValueError as error:
        raise PredictError(str(error)) from error
    finally:
        bar.close()
        writer.close(completed)
    report_bad_turns(found, skip_bad, output, source, total, total - sum(len(c["turns"]) for c in kept))
    if not kept:
        raise PredictError(f"no turn left to predict: every one of {source} was left out (listed above)")
    conversations = kept
    if plot is not None and plotted:
        from hcam.hub_cards.plots import plot_conversations

        plot_conversations(plotted, plot, labels=labels, attention_turn=plot_attention_turn)
        print(f"timeline written to {plot}", file=sys.stderr)
    empty = sum(1 for c in conversations for t in c["turns"] if t.get("text_source", "").endswith(":empty"))
    if empty:
        print(f"warning: ASR returned nothing for {empty} turn(s); they were given the text '[inaudible]' "
              "(text_source ends with ':empty' in the output)", file=sys.stderr)
    if not evaluate:
        return None
    return _write_metrics(references, predictions, asr_pairs, asr_for_eval, output, metrics_file)


def _plot_input(conversation, results):
    """What the timeline needs of one conversation: the pipeline's results plus times and references."""
    turns = []
    for turn, result in zip(conversation["turns"], results):
        turns.append({**result, **{k: turn[k] for k in ("start", "end") if k in turn},
                      **({"reference": turn["label"]} if turn["label"] else {})})
    return {"dialogue_id": conversation["dialogue_id"], "turns": turns}


def evaluate_predictions(references, predictions) -> dict:
    """Weighted F1, macro F1 and accuracy of every head and the ensemble."""
    from hcam.trainer.evaluation import head_scores

    references = np.asarray(references)
    return {"heads": {head: head_scores(np.asarray(p), references) for head, p in predictions.items()}}


def _print_metrics(metrics, file=None):
    print(f"\nevaluation on {metrics['num_turns']} turns, transcripts: {metrics['transcripts']}"
          + (f" (WER {metrics['asr_word_error_rate']:.3f})" if "asr_word_error_rate" in metrics else ""), file=file)
    print(f"{'head':<18}{'weighted F1':>12}{'accuracy':>10}{'macro F1':>10}", file=file)
    for head, scores in metrics["heads"].items():
        print(f"{head:<18}{scores['weighted_f1']:>12.4f}{scores['accuracy']:>10.4f}{scores['macro_f1']:>10.4f}",
              file=file)


# ------------------------------------------------------------------------------------------------------------ live
def predict_live(turns, pipe, output, asr="none", asr_options=None, skip_bad=True):
    """Predict each turn the moment it arrives with the pipeline's conversation stream (one per dialogue_id), write
    it as a flushed line; returns how many turns were predicted and how many left out. A bad turn is reported and
    left out (the conversation goes on); without `skip_bad` it ends the run (the lines already written stay)."""
    config = pipe.model.config
    labels = [config.id2label[i] for i in range(len(config.id2label))]
    transcriber = None
    if "text" in config.modalities and asr != "none":
        from hcam.processing.asr import Transcriber

        transcriber = Transcriber(asr, **(asr_options or {}))
    pipe.start_conversation()  # a model that is not causal is refused here, before any turn is read
    writer = _Writer(Path(output), labels, config.stage_heads())
    streams, done, bad = {}, 0, 0
    try:
        for turn in turns:
            dialogue = turn["dialogue_id"]
            if turn.get("close") is True:
                streams.pop(dialogue, None)
                continue
            try:
                if turn.get("error"):
                    raise PredictError(turn["error"])
                if isinstance(turn["audio"], str) and turn["audio"] and not os.path.isfile(turn["audio"]):
                    raise PredictError(f"audio file not found: {turn['audio']}")
                # (not `streams.get(...) or ...`: a stream is a sized object, empty until its first turn)
                stream = streams[dialogue] if dialogue in streams else pipe.start_conversation(transcriber=transcriber)
                result = stream.add_turn(audio=turn["audio"] if len(turn["audio"]) else None,
                                         text=turn["text"] or None, speaker=turn["speaker"] or None)
            except (ValueError, OSError) as error:  # the turn is left out; the conversation goes on
                if not skip_bad:
                    raise PredictError(f"{turn['item']}: {error} (--skip_bad false stops here; --skip_bad leaves a "
                                       "bad turn out and goes on)") from error
                bad += 1
                print(f"hcam-predict: {turn['item']}: {error}", file=sys.stderr, flush=True)
                writer.error({"dialogue_id": dialogue, "item": turn["item"], "error": str(error)})
                writer.flush()
                continue
            streams[dialogue] = stream
            if result.get("text_source", "given") != "given":
                _record_transcript(turn, result, asr)
            writer.write(_output_row(turn, result))
            writer.flush()
            done += 1
    finally:
        writer.close()
    return done, bad


# ------------------------------------------------------------------------------------------------------- the command
def _data_arguments():
    """run_stage.py's manifest column flags and --skip_bad, as `hcam.processing.corpora.CorpusArguments` declares
    them (names, defaults, help and the old names' aliases: one declaration for both commands)."""
    import dataclasses

    from hcam.processing.corpora import MANIFEST_COLUMNS, CorpusArguments

    declared = {f.name: f for f in dataclasses.fields(CorpusArguments)}
    names = [option.name for option in MANIFEST_COLUMNS] + ["skip_bad"]
    cls = dataclasses.make_dataclass("PredictDataArguments", [
        (name, declared[name].type, dataclasses.field(default=declared[name].default, metadata=declared[name].metadata))
        for name in names])
    cls._argument_group_name = "--manifest columns and bad turns (the same flags as run_stage.py)"
    return cls, [option.name for option in MANIFEST_COLUMNS]


def resolve_threads(threads: int | None, device=None) -> int | None:
    """Set torch's CPU threads for this process and return the number (None: left as torch chose): `threads` >= 1
    as given, 0 = one per core (torch's default); None = DEFAULT_THREADS on a CPU run, unless OMP_NUM_THREADS is
    set (then it decides, as in any torch program) or the model runs on a GPU."""
    import torch

    if threads is not None and threads < 0:
        raise PredictError(f"--threads must be 0 (one per core) or more, got {threads}")
    if threads is None:
        on_cpu = str(device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cpu")
        if os.environ.get("OMP_NUM_THREADS") or not on_cpu:
            return None
        threads = DEFAULT_THREADS
    if threads == 0:
        threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def build_parser():
    from hcam.processing.cli import HCAMArgumentParser

    parser = HCAMArgumentParser([], prog="hcam-predict", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model", required=True, help="trained HCAM checkpoint: folder or Hub repo id")
    parser.add_argument("--revision", default=None,
                        help="with a Hub repo id: the branch, tag or commit to load; run_stage.py pushes each stage to "
                             "its own branch (stage1-audio, stage1-text, stage2-audio, stage2-text, stage3; main = "
                             "the final model)")
    parser.add_argument("--token", default=None,
                        help="Hub token for a private repo (default: the saved login or $HF_TOKEN)")
    source = parser.add_argument_group(
        "input (exactly one of --audio_dir, --conversations_dir, --manifest, --recording)")
    source.add_argument("--audio_dir", help="folder of audio clips, one per turn: one conversation")
    source.add_argument("--conversations_dir",
                        help="folder with one subfolder per conversation, each read as --audio_dir (with "
                             "--transcripts NAME: the table of that name inside each subfolder)")
    source.add_argument("--transcripts", help="CSV/TSV/JSONL with file,text[,speaker][,dialogue_id][,label]")
    source.add_argument("--manifest", help="hcam manifest: dialogue_id,turn,speaker,text,audio[,label] (other column "
                                           "names: the --*_column_name flags below)")
    source.add_argument("--recording", help="one long recording of a conversation")
    source.add_argument("--segments", help="CSV/TSV/JSONL with start,end[,speaker][,text][,label] in seconds")
    turns = parser.add_argument_group(
        "a --recording without --segments: turns found by voice activity, speakers by their voices "
        "(needs pip install \"hcam[recordings]\")")
    turns.add_argument("--min_pause", type=float, default=None,
                       help="a speaker's pause this long (seconds) ends their turn; shorter ones stay inside it "
                            "(default 1.0)")
    turns.add_argument("--max_turn_seconds", type=float, default=None,
                       help="longer turns are cut at their longest pause (default 30)")
    turns.add_argument("--num_speakers", type=int, default=None,
                       help="how many people speak (default: estimated from the voices)")
    turns.add_argument("--channels_are_speakers", action="store_true",
                       help="a stereo call with one speaker per channel: channel 1 is S1, channel 2 is S2")
    parser.add_argument("--output",
                        help="predictions file: .jsonl (JSON lines), .json (one JSON list of the rows) or .csv; or - "
                             "for standard output (JSON lines; the default with --live)")
    parser.add_argument("--live", action="store_true",
                        help="predict each turn as it arrives (a causal model): JSON lines from standard input, or "
                             "the turns of --manifest/--audio_dir/--recording one by one; one flushed line per turn")
    parser.add_argument("--realtime", action="store_true",
                        help="with --live --recording: give each turn to the model when its segment ends, at real speed")
    asr = parser.add_argument_group("speech recognition (needs pip install \"hcam[asr]\")")
    asr.add_argument("--asr", default="none", choices=["none", "whisper", "pocketsphinx"],
                     help="transcribe turns that have no text")
    asr.add_argument("--asr_for_eval", default="none", choices=["none", "whisper", "pocketsphinx"],
                     help="replace every gold transcript with this recogniser's (robustness to ASR)")
    asr.add_argument("--asr_model", default=None,
                     help="whisper: a faster-whisper model folder or name (default: $HCAM_WHISPER_MODEL, else the "
                          "packaged tiny English model)")
    asr.add_argument("--asr_language", default=None,
                     help="whisper: the language code of the speech, e.g. en, de (default en; a multilingual model "
                          "is needed for others)")
    parser.add_argument("--evaluate", action="store_true",
                        help="score every stage and the ensemble against the labels (weighted F1, accuracy, macro F1)")
    parser.add_argument("--metrics_file", help="where --evaluate writes its JSON (default: <output>.metrics.json; "
                                               "none with --output -)")
    parser.add_argument("--device", default=None,
                        help="torch device for the model and Whisper, e.g. cpu or cuda:0 (default: GPU 0 if any for "
                             "the model; Whisper runs on the CPU unless --device names a GPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"CPU threads of this process (torch, and Whisper): N, or 0 for one per core (torch's "
                             f"default). Default on CPU: {DEFAULT_THREADS}, unless OMP_NUM_THREADS is set; several "
                             "processes side by side then do not slow each other down (bench/bench_threads.py)")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="conversations per forward pass (and per ASR call); results do not depend on it")
    parser.add_argument("--plot", help="also draw an emotion timeline of the first conversation(s) to this .png/.svg/.pdf "
                                       "(needs pip install \"hcam[plot]\")")
    parser.add_argument("--plot_dialogues", type=int, default=1, help="how many conversations --plot draws (default 1)")
    parser.add_argument("--plot_attention_turn", type=int, default=None,
                        help="with --plot: arcs from this turn to the turns stage II attended to most (stage-2/3 models)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser._add_dataclass_arguments(_data_arguments()[0])  # HCAMArgumentParser: bare booleans, old names as aliases
    return parser


def _asr_options(args) -> dict:
    """hcam.processing.asr.Transcriber's options from the flags (only those given)."""
    backends = {args.asr, args.asr_for_eval} - {"none"}
    given = [flag for flag, value in (("--asr_model", args.asr_model), ("--asr_language", args.asr_language)) if value]
    if given and backends != {"whisper"}:
        raise PredictError(f"{', '.join(given)} go with --asr whisper (or --asr_for_eval whisper)")
    options = {"model": args.asr_model, "language": args.asr_language, "device": args.device}
    return {key: value for key, value in options.items() if value is not None}


def main(argv=None):
    from hcam.processing.cli import warn_renamed_flags

    parser = build_parser()
    args = parser.parse_args(argv)
    warn_renamed_flags(sys.argv[1:] if argv is None else argv)
    sources = [name for name in ("audio_dir", "conversations_dir", "manifest", "recording") if getattr(args, name)]
    columns = {name: getattr(args, name) for name in _data_arguments()[1] if getattr(args, name) is not None}
    try:
        if len(sources) > 1 or (not sources and not args.live):
            raise PredictError("give exactly one input: --audio_dir, --conversations_dir, --manifest or --recording "
                               "(with or without --segments); "
                               "or --live alone to read turns as JSON lines from standard input")
        turn_options = {k: v for k, v in (("min_pause", args.min_pause), ("max_turn_seconds", args.max_turn_seconds),
                                          ("num_speakers", args.num_speakers),
                                          ("channels_are_speakers", args.channels_are_speakers or None))
                        if v is not None}
        if turn_options and not args.recording:
            raise PredictError(f"{', '.join('--' + k for k in turn_options)} go with --recording (without --segments)")
        if args.segments and not args.recording:
            raise PredictError("--segments goes with --recording")
        if args.transcripts and not (args.audio_dir or args.conversations_dir):
            raise PredictError("--transcripts goes with --audio_dir or --conversations_dir")
        if columns and not args.manifest:
            raise PredictError(f"{', '.join('--' + k + '_name' for k in columns)} name the columns of --manifest")
        if args.realtime and not (args.live and args.recording):
            raise PredictError("--realtime plays a --recording's segments at real speed: use it with --live --recording")
        if args.live:
            offline_only = [flag for flag, on in (("--evaluate", args.evaluate), ("--plot", args.plot),
                                                  ("--asr_for_eval", args.asr_for_eval != "none")) if on]
            if offline_only:
                raise PredictError(f"{', '.join(offline_only)} work on finished conversations: drop them with --live "
                                   "(a causal model gives the same predictions offline)")
            args.output = args.output or "-"
            if output_format(args.output) == "json":
                raise PredictError(f"--output {args.output}: a .json file is one document, written at the end; with "
                                   "--live use .jsonl (one line per turn as it comes) or -")
        elif not args.output:
            raise PredictError("--output is required: a .jsonl, .json or .csv file, or - for standard output")
        output_format(args.output)
        asr_options = _asr_options(args)
        threads = resolve_threads(args.threads, args.device)
        if threads is not None:
            asr_options["cpu_threads"] = threads
        problems = []
        if args.audio_dir:
            conversations = read_audio_dir(args.audio_dir, args.transcripts, problems)
        elif args.conversations_dir:
            conversations = read_conversations_dir(args.conversations_dir, args.transcripts, problems)
        elif args.manifest:
            conversations = read_manifest_conversations(args.manifest, problems, **columns)
        elif args.recording and args.segments:
            conversations = read_recording(args.recording, args.segments, problems=problems, **turn_options)
        pipe = load_pipeline(args.model, device=args.device, revision=args.revision, token=args.token)
        if args.recording and not args.segments:  # after loading the model: a wrong one fails before the segmentation
            conversations = read_recording(args.recording, progress=not args.no_progress, **turn_options)
        if args.live:
            if sources:  # the readers' problems; each turn is checked by the stream as it comes
                report_bad_turns(problems, args.skip_bad, args.output, getattr(args, sources[0]))
            turns = conversation_turns(conversations, args.realtime) if sources else read_live_lines(sys.stdin)
            done, bad = predict_live(turns, pipe, args.output, asr=args.asr, asr_options=asr_options,
                                     skip_bad=args.skip_bad)
            print(f"hcam-predict: {done} turn(s) predicted live" + (f", {bad} left out (see above)" if bad else ""),
                  file=sys.stderr)
            return 0
        if args.batch_size < 1:
            raise PredictError(f"--batch_size must be at least 1, got {args.batch_size}")
        if args.plot is None and args.plot_attention_turn is not None:
            raise PredictError("--plot_attention_turn goes with --plot FILE.png")
        if args.plot is not None:
            from hcam.hub_cards.plots import pyplot

            pyplot()  # fail now, not after the predictions, when matplotlib is missing
        predict(conversations, pipe, args.output, asr=args.asr, asr_for_eval=args.asr_for_eval,
                evaluate=args.evaluate, progress=not args.no_progress, metrics_file=args.metrics_file,
                batch_size=args.batch_size, plot=args.plot, plot_dialogues=args.plot_dialogues,
                plot_attention_turn=args.plot_attention_turn,
                asr_progress=bool(args.recording and not args.segments), skip_bad=args.skip_bad, problems=problems,
                asr_options=asr_options, source=getattr(args, sources[0]))
    except (PredictError, ImportError, ValueError, OSError) as error:
        from hcam.processing.cli import debugging

        if debugging():
            raise
        from hcam.processing.report import HCAMDataError

        print(f"hcam-predict: error: {error}" + ("" if isinstance(error, (PredictError, HCAMDataError)) else
                                                 "\n(HCAM_DEBUG=1 shows the traceback.)"), file=sys.stderr)
        return 2
    print(f"predictions written to {'standard output' if args.output == '-' else args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
