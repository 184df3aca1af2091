"""CMU-MOSI: the label-CSV distribution plus a folder of segment wavs.

Layout read (``data_dir``)::

    label.csv          (or labels.csv / mosi_labels.csv, or ``label_file=``): one row per segment with
                       columns video_id, clip_id, text, label (sentiment in [-3, 3]); extra columns
                       (e.g. ``mode``, ``annotation`` in the MMSA release) are ignored. Column names can
                       be overridden (``video_id_column=`` ...).
    wav/<video_id>/<clip_id>.wav                   (MMSA layout), or
    wav/<video_id>_<clip_id>.wav, or
    Raw/Audio/WAV_16000/Segmented/<video_id>_<clip_id>.wav   (the CMU release's segmented audio)

No wav folder (or ``audio=False``) gives a text-only dataset. Each video is one "dialogue" (a
monologue): ``dialogue_id`` = video id, ``turn`` = clip order (numeric clip ids sort numerically),
``speaker`` = video id, ``utterance_id`` = ``"{video_id}_{clip_id}"``, ``sentiment`` = the score.

Labels (see labels.py): ``setting="binary"`` (default: negative < 0 <= positive), ``"binary_nonzero"``
(score 0 excluded), ``"7class"`` (rounded score).

Splits: the standard video-level folds below (52 / 10 / 31 of the 93 videos), copied verbatim from
CMU-MultimodalSDK, mmsdk/mmdatasdk/dataset/standard_datasets/CMU_MOSI/cmu_mosi_std_folds.py
(PyPI cmu-multimodal-sdk 0.0.6). ``split_column="mode"`` uses a split column of the label file
instead (values train/valid|validation|dev/test).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from .labels import mosi_label
from .manifest import build_dataset_dict, read_table
from .report import DataReport, HCAMDataError, Problem, raise_or_skip

# Source: CMU-MultimodalSDK cmu_mosi_std_folds.py (standard_train_fold / _valid_fold / _test_fold).
MOSI_TRAIN_VIDEOS = [
    '2iD-tVS8NPw', '8d-gEyoeBzc', 'Qr1Ca94K55A', 'Ci-AH39fi3Y', '8qrpnFRGt2A', 'Bfr499ggo-0',
    'QN9ZIUWUXsY', '9T9Hf74oK10', '7JsX8y1ysxY', '1iG0909rllw', 'Oz06ZWiO20M', 'BioHAh1qJAQ',
    '9c67fiY0wGQ', 'Iu2PFX3z_1s', 'Nzq88NnDkEk', 'Clx4VXItLTE', '9J25DZhivz8', 'Af8D0E4ZXaw',
    'TvyZBvOMOTc', 'W8NXH0Djyww', '8OtFthrtaJM', '0h-zjBukYpk', 'Vj1wYRQjB-o', 'GWuJjcEuzt8',
    'BI97DNYfe5I', 'PZ-lDQFboO8', '1DmNV9C1hbY', 'OQvJTdtJ2H4', 'I5y0__X72p0', '9qR7uwkblbs',
    'G6GlGvlkxAQ', '6_0THN4chvY', 'Njd1F0vZSm4', 'BvYR0L6f2Ig', '03bSnISJMiM', 'Dg_0XKD0Mf4',
    '5W7Z1C_fDaE', 'VbQk4H8hgr0', 'G-xst2euQUc', 'MLal-t_vJPM', 'BXuRRbG0Ugk', 'LSi-o-IrDMs',
    'Jkswaaud0hk', '2WGyTLYerpo', '6Egk_28TtTM', 'Sqr0AcuoNnk', 'POKffnXeBds', '73jzhE8R1TQ',
    'OtBXNcAL_lE', 'HEsqda8_d0Q', 'VCslbP0mgZI', 'IumbAb8q2dM',
]
MOSI_VALID_VIDEOS = [
    'WKA5OygbEKI', 'c5xsKMxpXnc', 'atnd_PF-Lbs', 'bvLlb-M3UXU', 'bOL9jKpeJRs', '_dI--eQ6qVU',
    'ZAIRrfG22O0', 'X3j2zQgwYgE', 'aiEXnCPZubE', 'ZUXBRvtny7o',
]
MOSI_TEST_VIDEOS = [
    'tmZoasNr4rU', 'zhpQhgha_KU', 'lXPQBPVc5Cw', 'iiK8YX8oH1E', 'tStelxIAHjw', 'nzpVDcQ0ywM',
    'etzxEpPuc6I', 'cW1FSBF59ik', 'd6hH302o4v8', 'k5Y_838nuGo', 'pLTX3ipuDJI', 'jUzDDGyPkXU',
    'f_pcplsH_V0', 'yvsjCA6Y5Fc', 'nbWiPyCm4g0', 'rnaNMUZpvvg', 'wMbj6ajWbic', 'cM3Yna7AavY',
    'yDtzw_Y-7RU', 'vyB00TXsimI', 'dq3Nf_lMPnE', 'phBUpBr1hSo', 'd3_k5Xpfmik', 'v0zCBqDeKcE',
    'tIrG4oNLFzE', 'fvVhgmXxadc', 'ob23OKe5a9Q', 'cXypl4FnoZo', 'vvZ4IcEtiZc', 'f9O3YtZ2VfI',
    'c7UH_rxdZv4',
]

MOSI_FOLDS = {"train": MOSI_TRAIN_VIDEOS, "validation": MOSI_VALID_VIDEOS, "test": MOSI_TEST_VIDEOS}
_SPLIT_OF_VIDEO = {video: split for split, videos in MOSI_FOLDS.items() for video in videos}
_SPLIT_NAMES = {"train": "train", "valid": "validation", "validation": "validation", "dev": "validation",
                "test": "test"}
LABEL_FILE_NAMES = ("label.csv", "labels.csv", "mosi_labels.csv")


def _wav_for(data_dir: Path, video_id: str, clip_id: str) -> Path | None:
    for candidate in (data_dir / "wav" / video_id / f"{clip_id}.wav", data_dir / "wav" / f"{video_id}_{clip_id}.wav",
                      data_dir / "Raw" / "Audio" / "WAV_16000" / "Segmented" / f"{video_id}_{clip_id}.wav"):
        if candidate.is_file():
            return candidate
    return None


def _has_audio_folder(data_dir: Path) -> bool:
    return (data_dir / "wav").is_dir() or (data_dir / "Raw" / "Audio" / "WAV_16000" / "Segmented").is_dir()


def _clip_key(clip_id: str):
    return (0, int(clip_id), "") if re.fullmatch(r"\d+", clip_id) else (1, 0, clip_id)


def _split_and_score(raw, item, video_id, split_column, label_column):
    """(split, sentiment score, None) of a label-file row, or (split or None, None, the Problem with it)."""
    if split_column is None:
        split = _SPLIT_OF_VIDEO.get(video_id)
        if split is None:
            return None, None, Problem(item, "unknown_split", f"video {video_id!r} is in none of the 93 "
                                       "standard-fold videos; use split_column= to split by a column", None)
    else:
        split = _SPLIT_NAMES.get(str(raw[split_column]).strip().lower())
        if split is None:
            return None, None, Problem(item, "unknown_split", f"split {raw[split_column]!r} is not "
                                       "train/valid/test", None)
    try:
        score = float(raw[label_column])
        if math.isnan(score):
            raise ValueError
    except ValueError:
        return split, None, Problem(item, "unknown_label", f"sentiment {raw[label_column]!r} is not a number", split)
    if not -3.0 <= score <= 3.0:
        return split, None, Problem(item, "unknown_label", f"sentiment {score} outside [-3, 3]", split)
    return split, score, None


def _number_turns(rows_by_split):
    """Clip ids like "10" and "9" sort numerically: rank them per video, then give the schema's integer turn."""
    for rows in rows_by_split.values():
        by_video: dict[str, list[dict]] = {}
        for row in rows:
            by_video.setdefault(row["dialogue_id"], []).append(row)
        for video_rows in by_video.values():
            for position, row in enumerate(sorted(video_rows, key=lambda r: r["turn"])):
                row["turn"] = position


def read_mosi(data_dir, *, setting: str, label_names: list[str], label_file=None, audio: bool | None = None,
              split_column: str | None = None, skip_bad: bool = True, video_id_column: str = "video_id",
              clip_id_column: str = "clip_id", text_column: str = "text", label_column: str = "label"):
    """Read CMU-MOSI into a DatasetDict in the standard schema.

    Args:
        data_dir: folder with the label file and the wav folder (see the module doc).
        setting: "binary", "binary_nonzero" or "7class", canonical (``load_hcam_dataset`` resolves aliases and the
            default through the corpus registry).
        label_names: the setting's label names in id order.
        label_file: path of the label CSV (default: the first of label.csv, labels.csv, mosi_labels.csv).
        audio: None = use wavs when a wav folder exists; False = text only; True = wavs required.
        split_column: None = the standard folds; else the label file's column holding the split.
        skip_bad: skip bad rows and list them in the report, or raise one error listing them.
    Returns:
        (DatasetDict, DataReport)
    """
    data_dir = Path(data_dir).expanduser().resolve()
    report = DataReport(dataset=f"mosi ({setting})")
    if label_file is None:
        label_file = next((data_dir / n for n in LABEL_FILE_NAMES if (data_dir / n).is_file()), None)
        if label_file is None:
            raise HCAMDataError(f"No MOSI label file in {data_dir} (looked for {list(LABEL_FILE_NAMES)}); "
                                "pass label_file=<path of the CSV with video_id, clip_id, text, label>")
    label_file = Path(label_file).expanduser().resolve()
    columns, raw_rows, problems = read_table(label_file, "?")
    needed = [video_id_column, clip_id_column, text_column, label_column] + ([split_column] if split_column else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise HCAMDataError(f"{label_file}: column(s) {missing} not found (columns: {columns}); pass "
                            "video_id_column= / clip_id_column= / text_column= / label_column= to map them")
    use_audio = _has_audio_folder(data_dir) if audio is None else audio
    if audio and not _has_audio_folder(data_dir):
        raise HCAMDataError(f"No MOSI wav folder in {data_dir} (wav/ or Raw/Audio/WAV_16000/Segmented/); "
                            "read text only with audio=False")
    if not use_audio:
        report.note("text only (no wav folder)" if audio is None else "text only (audio=False)")
    if split_column is None:
        report.note("splits: CMU-MultimodalSDK standard folds (52/10/31 videos)")
    rows_by_split: dict[str, list[dict]] = {}
    seen: dict[tuple[str, str], int] = {}
    for line_no, raw in raw_rows:
        video_id, clip_id = str(raw[video_id_column]).strip(), str(raw[clip_id_column]).strip()
        item = f"{video_id}_{clip_id} ({label_file.name}:{line_no})"
        if (video_id, clip_id) in seen:
            problems.append(Problem(item, "duplicate_id", f"clip {clip_id} of video {video_id} appears twice "
                                    f"(first on line {seen[video_id, clip_id]}); the first one is kept", None))
            continue
        seen[video_id, clip_id] = line_no
        split, score, problem = _split_and_score(raw, item, video_id, split_column, label_column)
        if problem is not None:
            problems.append(problem)
            continue
        label = mosi_label(score, setting)
        if label is None:
            report.exclude("sentiment exactly 0 (binary_nonzero setting)")
            continue
        wav = _wav_for(data_dir, video_id, clip_id) if use_audio else None
        if use_audio and wav is None:
            problems.append(Problem(item, "missing_audio", f"no wav for clip {clip_id} of video {video_id} "
                                    f"under {data_dir}", split))
            continue
        rows_by_split.setdefault(split, []).append({
            "_item": f"{split}/{item}", "dialogue_id": video_id, "turn": _clip_key(clip_id),
            "speaker": video_id, "text": raw[text_column], "audio": str(wav) if wav else "", "label": label,
            "utterance_id": f"{video_id}_{clip_id}", "sentiment": score,
        })
    raise_or_skip(problems, report, skip_bad, what="CMU-MOSI")
    _number_turns(rows_by_split)
    if not rows_by_split:
        raise HCAMDataError(f"No usable MOSI rows in {label_file}")
    dataset_dict = build_dataset_dict(rows_by_split, report, skip_bad=skip_bad, what="CMU-MOSI",
                                      label_names=label_names, require_text=True,
                                      require_audio=use_audio)
    return dataset_dict, report
