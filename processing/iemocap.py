"""IEMOCAP as distributed (IEMOCAP_full_release).

Layout read (``data_dir`` = the folder holding ``Session1`` ... ``Session5``)::

    Session{s}/dialog/EmoEvaluation/<dialog>.txt     [START - END]\\tSes01F_impro01_F000\\tneu\\t[V, A, D]
    Session{s}/dialog/transcriptions/<dialog>.txt    Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
    Session{s}/sentences/wav/<dialog>/<utterance>.wav

- One dialogue per EmoEvaluation file; ``dialogue_id`` = the file name (e.g. ``Ses01F_impro01``).
- Turn order = utterance start times; ``speaker`` = session + the gender letter of the utterance
  id's last part (``Ses01F_impro01_F000`` -> ``Ses01_F``); ``duration`` = END - START.
- Labels: ``setting="6class"`` (happy, sad, neutral, angry, excited, frustrated) or ``"4class"``
  (angry, happy + excited, neutral, sad). Utterances with other codes (xxx, oth, sur, fea, dis) are
  left out and counted in ``report.excluded``; an unknown code is a problem.
- Splits: ``fold=None`` -> train = sessions 1-4, test = session 5 (the usual protocol);
  ``fold=k`` (1..5) -> leave-one-session-out: test = session k, train = the other four.
  The release has no validation split: ``load_hcam_dataset`` holds one out of the training
  dialogues (``--validation_fraction``, by dialogue, the same on every run and machine).
- Extra columns: ``utterance_id``, ``duration``, ``session``, ``raw_label``, ``valence``,
  ``arousal``, ``dominance``.
- Files whose names start with "." (macOS ``._`` copies inside the release) are ignored.
"""
from __future__ import annotations

import re
from pathlib import Path

from .labels import IEMOCAP_RAW_CODES, iemocap_label
from .manifest import build_dataset_dict
from .report import DataReport, HCAMDataError, Problem, raise_or_skip

_EVAL_LINE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]")
_TRANSCRIPT_LINE = re.compile(r"^(\S+)\s+\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]:\s?(.*)$")


def speaker_of(utterance_id: str) -> str:
    """``Ses01F_impro01_F000`` -> ``Ses01_F``: session + the gender letter of the last id part."""
    return f"{utterance_id[:5]}_{utterance_id.rsplit('_', 1)[-1][:1]}"


def parse_emo_evaluation(path: Path) -> list[dict]:
    """Utterance lines of an EmoEvaluation file: utterance_id, start, end, raw_label, V, A, D."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _EVAL_LINE.match(line.strip())
        if not match:
            continue
        start, end, utterance_id, code, vad = match.groups()
        try:
            v, a, d = (float(x) for x in vad.split(","))
        except ValueError:
            v = a = d = float("nan")
        out.append({"utterance_id": utterance_id, "start": float(start), "end": float(end),
                    "raw_label": code, "valence": v, "arousal": a, "dominance": d})
    return out


def parse_transcription(path: Path) -> dict[str, str]:
    """utterance id -> text of a transcription file (lines without a timed utterance id are ignored)."""
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _TRANSCRIPT_LINE.match(line.strip())
        if match:
            out[match.group(1)] = match.group(4).strip()
    return out


def read_iemocap(data_dir, *, setting: str, label_names: list[str], fold: int | None = None,
                 skip_bad: bool = True, audio: bool | None = True):
    """Read IEMOCAP into a DatasetDict in the standard schema.

    Args:
        data_dir: the release folder holding Session1..Session5.
        setting: "6class" or "4class", canonical (``load_hcam_dataset`` resolves aliases and the default through
            the corpus registry).
        label_names: the setting's label names in id order.
        fold: None = sessions 1-4 train / 5 test; 1..5 = leave that session out as test.
        skip_bad: skip bad utterances and list them in the report, or raise one error listing them.
        audio: False reads text only (audio == "", wavs not required); None or True: the wavs are required.
    Returns:
        (DatasetDict, DataReport)
    """
    data_dir = Path(data_dir).expanduser().resolve()
    audio = audio is not False
    if fold is not None and fold not in (1, 2, 3, 4, 5):
        raise ValueError(f"fold must be None or 1..5 (the session left out for test), got {fold!r}")
    test_session = 5 if fold is None else fold
    report = DataReport(dataset=f"iemocap ({setting}, test session {test_session})")
    sessions = sorted(p for p in data_dir.glob("Session[1-5]") if p.is_dir())
    if not sessions:
        raise HCAMDataError(f"No Session1..Session5 folders in {data_dir}; point data_dir at IEMOCAP_full_release")
    found_sessions = {int(p.name[-1]) for p in sessions}
    if len(found_sessions) < 5:
        report.note(f"only sessions {sorted(found_sessions)} found")
    rows_by_split: dict[str, list[dict]] = {"train": [], "test": []}
    problems: list[Problem] = []
    for session_dir in sessions:
        session = int(session_dir.name[-1])
        eval_files = sorted(p for p in (session_dir / "dialog" / "EmoEvaluation").glob("*.txt")
                            if not p.name.startswith("."))
        if not eval_files:
            report.note(f"{session_dir.name}: no EmoEvaluation files")
        for eval_file in eval_files:
            dialogue_id = eval_file.stem
            split = "test" if session == test_session else "train"
            transcript_file = session_dir / "dialog" / "transcriptions" / f"{dialogue_id}.txt"
            texts = parse_transcription(transcript_file) if transcript_file.is_file() else {}
            if not transcript_file.is_file():
                report.note(f"{dialogue_id}: no transcription file {transcript_file}")
            utterances = sorted(parse_emo_evaluation(eval_file), key=lambda u: (u["start"], u["utterance_id"]))
            for position, utt in enumerate(utterances):
                code = utt["raw_label"]
                item = f"{split}/{utt['utterance_id']}"
                if code not in IEMOCAP_RAW_CODES:
                    problems.append(Problem(item, "unknown_label", f"unknown IEMOCAP code {code!r} in {eval_file}", split))
                    continue
                label = iemocap_label(code, setting)
                if label is None:
                    report.exclude(f"IEMOCAP code {code!r} not in the {setting} setting")
                    continue
                if utt["utterance_id"] not in texts:
                    problems.append(Problem(item, "missing_transcript",
                                            f"no line for it in {transcript_file}", split))
                    continue
                wav = session_dir / "sentences" / "wav" / dialogue_id / f"{utt['utterance_id']}.wav"
                rows_by_split[split].append({
                    "_item": item, "dialogue_id": dialogue_id, "turn": position,
                    "speaker": speaker_of(utt["utterance_id"]), "text": texts[utt["utterance_id"]],
                    "audio": str(wav) if audio else "", "label": label,
                    "utterance_id": utt["utterance_id"], "duration": utt["end"] - utt["start"],
                    "session": session, "raw_label": code, "valence": utt["valence"],
                    "arousal": utt["arousal"], "dominance": utt["dominance"],
                })
    raise_or_skip(problems, report, skip_bad, what="IEMOCAP")
    rows_by_split = {split: rows for split, rows in rows_by_split.items() if rows}
    if not rows_by_split:
        raise HCAMDataError(f"No labelled IEMOCAP utterances found in {data_dir}")
    if not audio:
        report.note("text only (audio=False)")
    dataset_dict = build_dataset_dict(rows_by_split, report, skip_bad=skip_bad, what="IEMOCAP",
                                      label_names=label_names, require_text=True,
                                      require_audio=audio, read_durations=False)
    return dataset_dict, report
