"""MELD as distributed: the three CSVs plus the three clip folders.

Layout read (``data_dir`` itself, or a ``MELD.Raw/`` folder inside it)::

    train_sent_emo.csv   dev_sent_emo.csv   test_sent_emo.csv
    train_splits/dia{D}_utt{U}.mp4
    dev_splits_complete/dia{D}_utt{U}.mp4
    output_repeated_splits_test/dia{D}_utt{U}.mp4

Splits: train / validation (= dev) / test; a split whose CSV is absent is left out (noted in the
report). ``dialogue_id`` is ``"{train|dev|test}_dia{D}"``, ``utterance_id`` is ``"dia{D}_utt{U}"``,
``turn`` follows Utterance_ID; the label is the Emotion (``setting="emotion"``, default) or the
Sentiment (``setting="sentiment"``); both stay as extra columns ``emotion``/``sentiment``.

Audio: with the clip folders present, each clip's audio is extracted ONCE to a 16 kHz mono wav under
``cache_dir`` (default ``$HCAM_CACHE/meld``, else ``$HF_HOME/hcam/meld``: hcam.processing.cache), in a
small process pool with a progress bar, via ``hcam.modeling_hcam.feature_extraction_hcam.load_audio`` (imageio-ffmpeg's
binary). A cached wav newer than its clip is reused. Missing or corrupt clips (MELD has some) are
skipped and listed in the report (``skip_bad=True``) or raise one error listing them. Without the
clip folders (or with ``audio=False``) the CSVs give a text-only dataset (``audio == ""``).

Text: MELD's CSVs contain typographic punctuation (’ “ ” … —) and, in some copies, mojibake from a
cp1252/UTF-8 mix-up (``â€™``, ``Â``, stray C1 bytes such as ``\\x92``). With
``normalize_text=True`` (default) mojibake is repaired and typographic punctuation is mapped to
ASCII (’ → ', “ ” → ", … → ..., – — → -), so text matches what tokenizers and ASR transcripts
produce; letters such as é are kept. ``normalize_text=False`` keeps the text exactly as in the CSV.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from hcam.modeling_hcam.feature_extraction_hcam import SAMPLING_RATE
from .manifest import check_rows, read_table, rows_to_dataset, SPLIT_ORDER
from .report import DataReport, HCAMDataError, Problem, raise_or_skip

# split -> (csv file, clip folder, dialogue id prefix)
MELD_LAYOUT = {
    "train": ("train_sent_emo.csv", "train_splits", "train"),
    "validation": ("dev_sent_emo.csv", "dev_splits_complete", "dev"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test", "test"),
}
MELD_COLUMNS = ["Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"]

_MOJIBAKE = re.compile("[ÂÃâ][\u0080-\u00bf\u2018-\u203a\u20ac\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u02c6\u02dc]")
# cp1252 bytes 0x80-0x9f that were decoded as latin-1 (C1 control characters)
_C1 = {0x85: "\u2026", 0x91: "\u2018", 0x92: "\u2019", 0x93: "\u201c", 0x94: "\u201d", 0x96: "\u2013",
       0x97: "\u2014", 0xa0: " "}
_ASCII_PUNCT = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u201c": '"',
                              "\u201d": '"', "\u201e": '"', "\u2013": "-", "\u2014": "-", "\u2026": "...",
                              "\u00a0": " "})


def fix_meld_text(text: str, ascii_punctuation: bool = True) -> str:
    """Repair MELD's encoding artifacts; optionally map typographic punctuation to ASCII."""
    if _MOJIBAKE.search(text):
        for encoding in ("cp1252", "latin-1"):
            try:
                text = text.encode(encoding).decode("utf-8")
                break
            except (UnicodeEncodeError, UnicodeDecodeError):
                continue
    text = text.translate(_C1)
    if ascii_punctuation:
        text = text.translate(_ASCII_PUNCT)
    return re.sub(r"\s+", " ", text).strip()


def _find(data_dir: Path, name: str) -> Path | None:
    for candidate in (data_dir / name, data_dir / "MELD.Raw" / name):
        if candidate.exists():
            return candidate
    return None


def default_cache_dir() -> Path:
    from .cache import cache_path

    return cache_path("meld-audio")


def _extract_clip(job: tuple[str, str, int]) -> tuple[str, str | None, float]:
    """Worker: clip -> 16 kHz mono PCM16 wav. Returns (wav path, error or None, duration)."""
    clip, wav, sampling_rate = job
    try:
        import soundfile as sf
        from hcam.modeling_hcam.feature_extraction_hcam import load_audio

        waveform = load_audio(clip, sampling_rate=sampling_rate)
        tmp = f"{wav}.tmp{os.getpid()}.wav"
        sf.write(tmp, waveform, sampling_rate, subtype="PCM_16")
        os.replace(tmp, wav)  # atomic: a crash never leaves a half-written cached wav
        return wav, None, len(waveform) / float(sampling_rate)
    except Exception as err:  # reported per clip, never fatal for the whole run
        return wav, f"{type(err).__name__}: {err}", float("nan")


def extract_audio(jobs: list[tuple[str, str]], num_workers: int = 2, sampling_rate: int = SAMPLING_RATE,
                  progress: bool = True) -> dict[str, tuple[str | None, float]]:
    """Extract many clips (clip path, wav path) in a process pool; {wav: (error, duration)}."""
    from tqdm.auto import tqdm

    work = [(clip, wav, sampling_rate) for clip, wav in jobs]
    results: dict[str, tuple[str | None, float]] = {}
    bar = tqdm(total=len(work), desc="MELD: extracting audio (16 kHz)", unit="clip", disable=not progress or not work)
    if num_workers <= 1 or len(work) < 4:
        for job in work:
            wav, error, duration = _extract_clip(job)
            results[wav] = (error, duration)
            bar.update()
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the parent may hold torch threads, which fork() can leave deadlocked
        with ProcessPoolExecutor(max_workers=num_workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for wav, error, duration in pool.map(_extract_clip, work, chunksize=8):
                results[wav] = (error, duration)
                bar.update()
    bar.close()
    return results


def read_meld(data_dir, *, setting: str, label_names: list[str], cache_dir=None, audio: bool | None = None,
              skip_bad: bool = True, num_workers: int = 2, normalize_text: bool = True,
              progress: bool = True, splits=SPLIT_ORDER):
    """Read MELD into a DatasetDict in the standard schema.

    Args:
        data_dir: folder holding the CSVs (and clip folders), or their parent with ``MELD.Raw/``.
        setting: ``"emotion"`` (7 classes) or ``"sentiment"`` (3 classes), canonical (the caller,
            ``load_hcam_dataset``, resolves aliases and the default through the corpus registry).
        label_names: the setting's label names; other labels are problems.
        cache_dir: where extracted wavs go (default ``<hcam cache>/meld``, hcam.processing.cache).
        audio: None = use clips when the clip folder exists; False = text only; True = clips required.
        skip_bad: skip bad rows/clips and list them in the report, or raise one error listing them.
        num_workers: processes extracting audio.
        normalize_text: repair mojibake and map typographic punctuation to ASCII (see module doc).
        splits: which splits to read.
    Returns:
        (DatasetDict, DataReport)
    """
    data_dir = Path(data_dir).expanduser().resolve()
    report = DataReport(dataset=f"meld ({setting})")
    cache_root = Path(cache_dir).expanduser().resolve() if cache_dir else default_cache_dir()

    rows_by_split, problems = {}, []
    for split in splits:
        csv_name, clip_folder, prefix = MELD_LAYOUT[split]
        csv_path = _find(data_dir, csv_name)
        if csv_path is None:
            report.note(f"{split}: {csv_name} not found in {data_dir}; split left out")
            continue
        columns, raw_rows, found = read_table(csv_path, split)
        problems.extend(found)
        missing = [c for c in MELD_COLUMNS if c not in columns]
        if missing:
            raise HCAMDataError(f"{csv_path}: missing MELD column(s) {missing} (columns: {columns}); "
                                "is this a MELD *_sent_emo.csv file?")
        rows = []
        for line_no, raw in raw_rows:
            try:
                d, u = int(raw["Dialogue_ID"]), int(raw["Utterance_ID"])
            except ValueError:
                problems.append(Problem(f"{csv_path.name}:{line_no}", "bad_row",
                                        f"Dialogue_ID {raw['Dialogue_ID']!r} / Utterance_ID "
                                        f"{raw['Utterance_ID']!r} are not integers", split))
                continue
            text = raw["Utterance"]
            if normalize_text:
                text = fix_meld_text(text)
            emotion, sentiment = raw["Emotion"].strip().lower(), raw["Sentiment"].strip().lower()
            rows.append({
                "_item": f"{split}/{prefix}_dia{d}_utt{u} ({csv_path.name}:{line_no})",
                "dialogue_id": f"{prefix}_dia{d}", "turn": u, "speaker": raw["Speaker"].strip(),
                "text": text, "audio": "", "label": emotion if setting == "emotion" else sentiment,
                "utterance_id": f"dia{d}_utt{u}", "emotion": emotion, "sentiment": sentiment,
            })
        good, found = check_rows(split, rows, label_names=label_names, require_text=True, read_durations=False)
        problems.extend(found)
        rows_by_split[split] = good
    if not rows_by_split:
        raise HCAMDataError(f"No MELD CSV found in {data_dir} (expected {[v[0] for v in MELD_LAYOUT.values()]})")
    raise_or_skip(problems, report, skip_bad, what="MELD")
    if normalize_text:
        report.note("text: mojibake repaired, typographic punctuation mapped to ASCII (normalize_text=True)")

    audio_problems = _attach_audio(data_dir, rows_by_split, report, cache_root, audio, num_workers, progress)
    raise_or_skip(audio_problems, report, skip_bad, what="MELD audio")
    from datasets import DatasetDict

    dataset_dict = DatasetDict({split: rows_to_dataset(rows) for split, rows in rows_by_split.items()})
    report.fill_stats(dataset_dict)
    return dataset_dict, report


def _attach_audio(data_dir, rows_by_split, report, cache_root, audio, num_workers, progress) -> list[Problem]:
    """Point rows at cached 16 kHz wavs (extracting what's missing); drop rows whose clip is bad."""
    jobs, pending, problems = [], {}, []
    for split, rows in rows_by_split.items():
        _, clip_folder, prefix = MELD_LAYOUT[split]
        clip_dir = _find(data_dir, clip_folder) if audio is not False else None
        if clip_dir is None:
            if audio:
                raise HCAMDataError(f"MELD clip folder {clip_folder}/ not found in {data_dir}; unpack "
                                    f"{prefix}.tar.gz there, or read text only with audio=False")
            report.note(f"{split}: text only (no {clip_folder}/ folder" + (")" if audio is None else ", audio=False)"))
            for row in rows:
                row["duration"] = float("nan")
            continue
        # keyed by the clip folder's path so two MELD copies never share cached wavs
        tag = hashlib.sha1(str(clip_dir).encode()).hexdigest()[:8]
        wav_dir = cache_root / f"{prefix}_{tag}"
        wav_dir.mkdir(parents=True, exist_ok=True)
        report.note(f"{split}: audio from {clip_dir}, cached as 16 kHz wav in {wav_dir}")
        kept = []
        for row in rows:
            clip = clip_dir / f"{row['utterance_id']}.mp4"
            wav = wav_dir / f"{row['utterance_id']}.wav"
            item = f"{split}/{prefix}_{row['utterance_id']}"
            if not clip.is_file():
                problems.append(Problem(item, "missing_audio", f"clip not found: {clip}", split))
                continue
            row["audio"] = str(wav)
            if wav.is_file() and wav.stat().st_mtime >= clip.stat().st_mtime and wav.stat().st_size > 44:
                import soundfile as sf

                try:
                    row["duration"] = sf.info(str(wav)).duration
                    kept.append(row)
                    continue
                except Exception:
                    pass  # a damaged cache entry: extract again
            jobs.append((str(clip), str(wav)))
            pending[str(wav)] = (row, item, split, clip)
            kept.append(row)
        rows_by_split[split] = kept
    if jobs:
        results = extract_audio(jobs, num_workers=num_workers, progress=progress)
        failed = set()
        for wav, (error, duration) in results.items():
            row, item, split, clip = pending[wav]
            if error is None:
                row["duration"] = duration
            else:
                problems.append(Problem(item, "corrupt_audio", f"cannot extract audio from {clip}: {error}", split))
                failed.add(id(row))
        if failed:
            for split in rows_by_split:
                rows_by_split[split] = [r for r in rows_by_split[split] if id(r) not in failed]
    return problems
