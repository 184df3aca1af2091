"""hcam-predict's inputs: the conversations read from a folder of clips, a folder of such folders, a manifest, a
recording (with or without a segments table) or JSON lines, and the check of every turn against what the model reads
(text; audio that exists, decodes and that the feature extractor takes), decided by --skip_bad as in run_stage.py:
bad turns left out and listed in one report beside the output, or one error listing them all.

Every reader returns conversations {"dialogue_id", "turns": [turn dicts (`_turn`)]}; tables are read by
`hcam.processing.manifest.read_table` and manifests by `hcam.processing.manifest.read_conversations`.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from hcam.modeling_hcam.feature_extraction_hcam import SAMPLING_RATE

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".mp4", ".aac", ".opus", ".webm", ".mkv", ".aiff", ".aif"}


class PredictError(ValueError):
    """Bad command-line input: the message names the item and what to do."""


# ---------------------------------------------------------------------------------------------------- reading inputs
# Every reader returns conversations {"dialogue_id", "turns": [_turn dicts]} and puts what is wrong with a row or a
# turn into `problems` (hcam.processing.report.Problem); `predict` adds the turns the model cannot read, and
# `--skip_bad` (the default) leaves them all out with one report, or stops with one error listing them all. A reader
# called without a `problems` list raises that error itself.
def _table(path: Path, problems: list, needed: list[str]) -> list[tuple[str, dict]]:
    """Rows of a CSV/TSV/JSONL table (hcam.processing.manifest.read_table) as (item, row): malformed rows go to
    `problems`; a missing file or column is an error."""
    from hcam.processing.manifest import read_table

    columns, rows, found = read_table(path)
    problems.extend(found)
    columns = [str(c).strip() for c in columns]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise PredictError(f"{path}: column(s) {missing} missing (columns: {columns})")
    if not rows and not found:
        raise PredictError(f"{path} has no rows")
    return [(f"{path.name}:{line}", {str(k).strip(): v for k, v in row.items()}) for line, row in rows]


def _finish_reading(problems, found, what):
    """A reader's end: its problems `found` go to the caller's `problems` list, or, with none given, are one error
    (hcam.processing.report.raise_or_skip)."""
    if problems is not None:
        problems.extend(found)
    elif found:
        from hcam.processing.report import DataReport, raise_or_skip

        raise_or_skip(found, DataReport(), skip_bad=False, what=what)


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


def read_audio_dir(audio_dir, transcripts=None, problems: list | None = None) -> list[dict]:
    """One conversation from a folder of clips (one per turn): every audio file sorted by name, or the rows of a
    `transcripts` table (file,text[,speaker][,dialogue_id][,label]) in turn order; dialogue id = the folder's name."""
    from hcam.processing.report import Problem

    audio_dir = Path(audio_dir).expanduser().resolve()
    if not audio_dir.is_dir():
        raise PredictError(f"--audio_dir {audio_dir} is not a folder")
    if transcripts is None:
        files = sorted(p for p in audio_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise PredictError(f"no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) in {audio_dir}")
        return _group([_turn(audio_dir.name, audio=str(p), item=f"{audio_dir.name}/{p.name}") for p in files])
    path = Path(transcripts).expanduser().resolve()
    name = f"{audio_dir.name}/{path.name}" if path.parent == audio_dir else path.name
    found = []
    turns = []
    for index, (source, row) in enumerate(_table(path, found, ["file"])):
        file = str(row.get("file") or "").strip()
        item = f"{name} row {index + 1} ({file or 'no file'})"
        if not file:
            found.append(Problem(f"{item} ({source})", "missing_audio",
                                 "empty 'file'; give the audio file name relative to the clips' folder", "input"))
            continue
        audio = Path(file).expanduser()
        audio = audio if audio.is_absolute() else audio_dir / audio
        turns.append(_turn(row.get("dialogue_id") or audio_dir.name, row.get("speaker"), row.get("text"), str(audio),
                           row.get("label"), item, file=file))
    _finish_reading(problems, found, str(path))
    return _group(turns)


def read_conversations_dir(folder, transcripts=None, problems: list | None = None) -> list[dict]:
    """One conversation per subfolder of `folder` (sorted by name), each read by `read_audio_dir`: its clips sorted
    by name, or, with `transcripts` (a file name, e.g. "transcripts.csv"), that table inside each subfolder. A
    subfolder that has no clips or lacks the table is a problem (left out with --skip_bad)."""
    from hcam.processing.report import Problem

    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise PredictError(f"--conversations_dir {folder} is not a folder")
    if transcripts is not None and Path(transcripts).name != str(transcripts):
        raise PredictError(f"with --conversations_dir, --transcripts is the table's file name inside each "
                           f"subfolder (e.g. transcripts.csv), not a path: {transcripts}")
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subfolders:
        raise PredictError(f"--conversations_dir {folder} has no subfolders: give one subfolder of clips per "
                           "conversation (a single conversation's clips go with --audio_dir)")
    found, conversations = [], []
    for subfolder in subfolders:
        table = None if transcripts is None else subfolder / transcripts
        if table is not None and not table.is_file():
            found.append(Problem(f"{subfolder.name}/", "missing_transcript", f"no {transcripts} in {subfolder}; add "
                                 "it, or drop --transcripts to read the clips sorted by name", "input"))
            continue
        first = len(found)
        try:
            conversations += read_audio_dir(subfolder, table, found)
        except PredictError as error:  # no clips in it
            found.append(Problem(f"{subfolder.name}/", "missing_audio", str(error), "input"))
        for problem in found[first:]:  # a table's problems name its file: say which subfolder's
            if not problem.item.startswith(f"{subfolder.name}/"):
                problem.item = f"{subfolder.name}/{problem.item}"
    _finish_reading(problems, found, str(folder))
    return conversations


def read_manifest_conversations(manifest, problems: list | None = None, **column_names) -> list[dict]:
    """The conversations of a manifest (hcam.processing.manifest.read_conversations; `column_names` as
    `read_manifest`'s, None = the default name) as hcam-predict's turns."""
    from hcam.processing.manifest import read_conversations

    path = Path(manifest).expanduser().resolve()
    conversations, found = read_conversations(path, **column_names)
    _finish_reading(problems, found, str(path))
    return [{"dialogue_id": c["dialogue_id"],
             "turns": [_turn(r["dialogue_id"], r["speaker"], r["text"], r["audio"], r["label"], r["_item"],
                             source_turn=r["turn"]) for r in c["turns"]]} for c in conversations]


def read_recording(recording, segments=None, sampling_rate=None, progress=False, problems: list | None = None,
                   **find_turns_options) -> list[dict]:
    """One conversation from a recording: cut by a `segments` table, or, without one, into the turns and speakers
    that `hcam.processing.recording.find_turns` finds (options: min_pause, max_turn_seconds, num_speakers,
    channels_are_speakers). `recording` is a file, or (without segments) an array with its `sampling_rate`."""
    if segments is None:
        return find_recording_turns(recording, sampling_rate, progress, **find_turns_options)
    if find_turns_options:
        raise PredictError(f"{', '.join('--' + k for k in find_turns_options)} find the turns of a recording without "
                           "--segments; a segments file already gives them")
    from hcam.modeling_hcam.feature_extraction_hcam import load_audio
    from hcam.processing.report import Problem

    if not isinstance(recording, (str, os.PathLike)):
        raise PredictError("a segments table goes with a recording file, not an array")
    recording = Path(recording).expanduser().resolve()
    path = Path(segments).expanduser().resolve()
    found = []
    rows = _table(path, found, ["start", "end"])
    waveform = load_audio(recording, SAMPLING_RATE)
    duration = len(waveform) / SAMPLING_RATE
    turns = []
    for index, (source, row) in enumerate(rows):
        item = f"{path.name} row {index + 1}"

        def bad(message):
            found.append(Problem(f"{item} ({source})", "bad_row", message, "input"))

        try:
            start, end = float(row["start"]), float(row["end"])
        except (TypeError, ValueError):
            bad(f"start/end must be numbers in seconds, got {row['start']!r}, {row['end']!r}")
            continue
        if not 0 <= start < end:
            bad(f"need 0 <= start < end, got start={start}, end={end}")
            continue
        if start >= duration:
            bad(f"starts at {start:.2f} s but {recording.name} is only {duration:.2f} s long")
            continue
        if end > duration + 0.05:
            print(f"warning: {item} ends at {end:.2f} s, after the recording's end ({duration:.2f} s); cut there",
                  file=sys.stderr)
        clip = waveform[int(round(start * SAMPLING_RATE)): int(round(end * SAMPLING_RATE))]
        turns.append(_turn(row.get("dialogue_id") or recording.stem, row.get("speaker"), row.get("text"), clip,
                           row.get("label"), item, start=start, end=end))
    _finish_reading(problems, found, str(path))
    return _group(turns)

def _audio_problem(turn, feature_extractor, check_levels):
    """((kind, message) or None, the decoded waveform or None): a problem when the turn's audio cannot be read, or,
    with `check_levels`, when the model's feature extractor would refuse it (too short, silent, NaN: its own rules)."""
    from hcam.modeling_hcam.feature_extraction_hcam import is_audio_span

    audio = turn["audio"]
    span = is_audio_span(audio)  # a turn of a long recording, read when the model needs it: checked, not kept
    if isinstance(audio, np.ndarray):  # a recording's clip (read_recording), at SAMPLING_RATE
        waveform = feature_extractor.waveform(audio, str(turn["item"]), SAMPLING_RATE)
    elif span:
        try:
            waveform = feature_extractor.waveform(audio, where=str(turn["item"]))
        except (ValueError, OSError) as error:
            return ("corrupt_audio", f"cannot read: {error}"), None
    else:
        if not audio:
            return ("missing_audio", "no audio, but this model (or ASR) needs each turn's speech"), None
        if not os.path.isfile(audio):
            return ("missing_audio", f"audio file not found: {audio}"), None
        if os.path.getsize(audio) == 0:
            return ("empty_audio", f"audio file is empty (0 bytes): {audio}"), None
        try:
            waveform = feature_extractor.waveform(audio, where=str(audio))
        except (ValueError, OSError) as error:
            return ("corrupt_audio", f"cannot decode: {error}; re-export or remove the file"), None
    if check_levels:
        try:
            feature_extractor([waveform], sampling_rate=feature_extractor.sampling_rate, return_tensors="np")
        except ValueError as error:  # HCAMAudioError: it names "dialogue 0, turn 0", the only one given here
            message = re.sub(r"^audio dialogue 0, turn 0 ", "audio ", str(error))
            kind = ("silent_audio" if "silent" in message else "short_audio" if "shorter than" in message
                    else "corrupt_audio")
            return (kind, message), None
    return None, None if span else waveform


def check_turns(conversations, feature_extractor, uses_text, uses_audio, transcriber, asr_for_eval) -> list:
    """Every turn the model cannot read, as problems (Problem.item is the turn's item; the turn is marked "bad"), and
    each turn's "transcribe" mark (ASR gives its text; its gold text is kept in "gold_text"). A turn whose audio is
    read keeps it decoded in "waveform" (at the feature extractor's rate) for the pipeline, except a span of a
    recording, which the pipeline reads again when it needs it (so a long recording's audio is never all in memory)."""
    from hcam.processing.report import Problem

    problems = []
    for turn in (turn for conversation in conversations for turn in conversation["turns"]):
        transcribe = transcriber is not None and (asr_for_eval != "none" or not turn["text"])
        if transcribe and turn["text"]:
            turn["gold_text"] = turn["text"]
        turn["transcribe"] = transcribe
        found = None
        if uses_text and not turn["text"] and transcriber is None:
            found = ("empty_text", "no text, and this model reads transcripts: give the text, or transcribe it with "
                                   "--asr whisper (pip install \"hcam[asr]\")")
        elif uses_audio or transcribe:
            found, turn["waveform"] = _audio_problem(turn, feature_extractor, check_levels=uses_audio)
        turn["bad"] = found is not None
        if found:
            problems.append(Problem(turn["item"], *found, "input"))
    return problems


def check_labels(conversations, labels):
    """--evaluate: every turn needs one of the model's labels."""
    unlabelled = [t["item"] for c in conversations for t in c["turns"] if not t["label"]]
    if unlabelled:
        raise PredictError(f"--evaluate needs a label for every turn; {len(unlabelled)} have none "
                           f"(first: {unlabelled[0]})")
    unknown = sorted({t["label"] for c in conversations for t in c["turns"]} - set(labels))
    if unknown:
        raise PredictError(f"labels {unknown} are not among the model's labels {labels}; map them first")


def report_path(output) -> Path | None:
    """Where the data report of a run writing `output` goes: <output>.data_report.json (None for standard output)."""
    return None if str(output) == "-" else Path(output).with_suffix(".data_report.json")


def report_bad_turns(problems, skip_bad, output, source, total=None, left_out=None):
    """One decision for every problem found (hcam.processing.report.raise_or_skip): with `skip_bad` they are listed
    on stderr and in the data report beside `output` (the bad turns were left out); without it one error lists them
    all (the report is written too). No problem: a report of an earlier run beside `output` goes."""
    from hcam.processing.report import DataReport, HCAMDataError, raise_or_skip

    report = DataReport(dataset=str(source))
    path = report_path(output)
    if not problems:
        if path is not None and path.is_file():
            path.unlink()  # it would describe other input
        return
    try:
        raise_or_skip(problems, report, skip_bad, what=str(source))
    except HCAMDataError as error:
        report.problems = list(problems)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            report.to_json(path)
        raise PredictError(f"{error}" + (f"\nAll of them are listed in {path}." if path is not None else "")) from None
    if left_out is not None:
        report.note(f"{left_out} turn(s) of {total} left out; each conversation was predicted without its bad turns")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        report.to_json(path)
    shown = "".join(f"\n  {p}" for p in problems[:10])
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    print(f"hcam-predict: {len(problems)} bad item(s) left out (--skip_bad, the default; --skip_bad false stops "
          f"instead):{shown}{more}" + (f"\nAll of them are listed in {path}." if path is not None else ""),
          file=sys.stderr)

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


def conversation_turns(conversations, realtime=False):
    """The turns of finished inputs, one conversation after another; with `realtime`, each is given when its segment
    ends (seconds after the start), as a live recording would deliver it."""
    import time

    started = time.monotonic()
    for conversation in conversations:
        for turn in sorted(conversation["turns"], key=lambda t: t.get("end", 0.0)) if realtime else conversation["turns"]:
            if realtime:
                time.sleep(max(0.0, started + turn["end"] - time.monotonic()))
            yield turn


def find_recording_turns(recording, sampling_rate=None, progress=False, lazy_audio=True, **options) -> list[dict]:
    """Voice activity, speakers and turn audio of a recording without a segments table (hcam.processing.recording).
    With `lazy_audio` (the default), a turn of a file soundfile reads carries the span of the file it covers, read by
    the pipeline when needed (memory does not grow with the recording); without, its audio array."""
    from tqdm.auto import tqdm

    from hcam.processing.recording import RecordingError, find_turns, turn_audio

    is_file = isinstance(recording, (str, os.PathLike))
    if is_file:
        recording = Path(recording).expanduser().resolve()
    name = recording.stem if is_file else "recording"
    total = None  # the recording's length, when it is cheap to know (the bar then shows what is left)
    try:
        import soundfile

        total = soundfile.info(str(recording)).duration if is_file else len(recording) / float(sampling_rate)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by find_turns, with what to do
        pass
    bar = tqdm(desc="finding turns and speakers", unit="s", total=total, disable=not progress, file=sys.stderr,
               bar_format="{desc}: {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}]" if total else
               "{desc}: {n:.0f} s of audio [{elapsed}]")
    try:
        turns = find_turns(recording, sampling_rate, progress=bar.update, **options)
        audio = turn_audio(recording, turns, sampling_rate, options.get("channels_are_speakers", False), lazy_audio)
        conversation = [_turn(name, t["speaker"], "", clip, "", f"{name} {t['start']:.2f}-{t['end']:.2f} s",
                              start=t["start"], end=t["end"]) for t, clip in zip(turns, audio)]
    except RecordingError as error:
        raise PredictError(str(error)) from error
    finally:
        bar.close()
    speakers = sorted({t["speaker"] for t in conversation})
    print(f"{name}: {len(conversation)} turn(s), {len(speakers)} speaker(s) ({', '.join(speakers)})", file=sys.stderr)
    return _group(conversation)
