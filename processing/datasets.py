"""One entry point for every corpus: ``load_hcam_dataset(name, ...) -> (DatasetDict, DataReport)``.

What a corpus is (reader, label settings, protocol, options) lives in :mod:`hcam.processing.corpora`; this module
applies the rules every corpus shares:

- a corpus without a validation split gets one carved from its training dialogues (by dialogue, deterministic);
- the label set is the corpus's own, or for manifests the training split's; a label seen only in validation or
  test is an error naming it, its split and rows;
- with ``check_audio=True`` every clip is decoded once: silent clips (no signal, or 40 dB below the corpus's
  typical level) are problems like corrupt ones;
- the report says which protocol was read (``report.protocol``) and which labels, in id order (``report.labels``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

from hcam.modeling_hcam.feature_extraction_hcam import SAMPLING_RATE
from .corpora import DEFAULT_VALIDATION_FRACTION, get_corpus
from .report import DataReport, HCAMDataError, Problem, raise_or_skip

logger = logging.getLogger(__name__)

# A clip counts as silent when its peak is below this (16-bit dither is ~3e-5) ...
SILENCE_PEAK = 1e-4
# ... or its RMS level is this many dB below the median clip of the corpus (speech varies by ~20-30 dB).
SILENCE_BELOW_MEDIAN_DB = 40.0


def load_hcam_dataset(name: str | None = None, data_dir=None, train_file=None, validation_file=None,
                      test_file=None, setting: str | None = None, *, audio: bool | None = None,
                      skip_bad: bool = True, validation_fraction: float | None = None, check_audio: bool = False,
                      progress: bool = True, **options):
    """Read a corpus into a ``DatasetDict`` (dialogue_id, turn, speaker, text, audio, label, ...) and a report.

    Args:
        name: a registry name (``hcam.processing.corpora.CORPORA``: "iemocap", "meld", "mosi", "demo",
            "manifest"; None = "manifest"), else a folder written by ``save_to_disk``, else a Hub dataset id
            (``hcam.processing.corpora.get_corpus`` resolves it; ``hcam.processing.hf_datasets`` reads it).
        data_dir: the release folder, or a folder of train/validation/test manifests; the demo's default is the
            shipped corpus.
        train_file, validation_file, test_file: manifests ("manifest" and "demo").
        setting: label setting (e.g. "6class"/"4class" IEMOCAP); None = the corpus's default. For a Hub dataset:
            its config name.
        audio: None = use audio when present; False = text only; True = audio required.
        skip_bad: leave bad items out and list them in the report (True), or raise one error.
        validation_fraction: share of training dialogues held out for validation when the corpus has none
            (default 0.1); an error when the corpus has its own validation split.
        check_audio: decode every clip once and report silent or undecodable ones.
        progress: show progress bars for long steps.
        **options: the corpus's reader options (e.g. ``fold`` for IEMOCAP, ``audio_cache_dir`` for MELD,
            ``label_file`` for MOSI, ``text_column`` for manifests); another corpus's option is an error.
    Returns:
        (DatasetDict, DataReport)
    """
    try:
        corpus = get_corpus(name)
    except ValueError as error:
        raise HCAMDataError(f"--dataset_name: {error}") from None
    setting = corpus.canonical_setting(setting)
    # The reader gets the canonical setting and its label names (None: labels from the data); it looks nothing up.
    kwargs = dict(corpus.reader_kwargs(options), setting=setting, label_names=corpus.label_names(setting),
                  audio=audio, skip_bad=skip_bad)
    files = {"train_file": train_file, "validation_file": validation_file, "test_file": test_file}
    given = [f"--{k}" for k, v in files.items() if v]
    if corpus.source is not None:  # a 🤗 dataset (Hub id or save_to_disk folder): read whole
        if given or data_dir is not None:
            raise HCAMDataError(f"--dataset_name {corpus.name} is a 🤗 dataset, read whole with its own splits: drop "
                                f"{' '.join(given + (['--data_dir'] if data_dir is not None else []))} (manifests: "
                                "--dataset_name manifest)")
        kwargs.update(source=corpus.source, progress=progress)
    elif corpus.reads_files:
        data_dir = data_dir or (None if any(files.values()) else corpus.default_data_dir())
        if data_dir is None and not any(files.values()):
            raise HCAMDataError(f"{corpus.name}: pass --train_file/--validation_file/--test_file or --data_dir "
                                "with train/validation/test .csv/.tsv/.jsonl files" + (
                                    " (the demo corpus ships in the source tree, data/demo/: run from a clone, or "
                                    "set HCAM_DEMO_DIR)" if corpus.name == "demo" else ""))
        kwargs.update(files, data_dir=data_dir)
    else:
        if given:
            raise HCAMDataError(f"{' '.join(given)} read manifests; --dataset_name {corpus.name} reads its release "
                                "from --data_dir")
        kwargs.update(data_dir=_need_dir(corpus, data_dir))
    dataset, report = corpus.read(**kwargs)
    if check_audio:  # before the validation split is carved: problems keep the release's split names
        dataset = check_audio_clips(dataset, report, skip_bad=skip_bad, progress=progress)
    protocol = corpus.protocol(options)
    if "validation" not in dataset and "train" in dataset:
        fraction = DEFAULT_VALIDATION_FRACTION if validation_fraction is None else validation_fraction
        total = len(set(dataset["train"]["dialogue_id"]))
        dataset, carved = carve_validation(dataset, fraction)
        if carved:
            protocol += (f"; validation: {carved} of {total} training "
                         f"dialogues held out by dialogue (validation_fraction {fraction}; the release has no "
                         "validation split)")
            report.note(f"validation split carved from train: {carved} dialogues (validation_fraction {fraction})")
        else:
            report.note("no validation split, and train has fewer than 2 dialogues to hold one out of")
    elif validation_fraction is not None:
        raise ValueError(f"--validation_fraction: {corpus.display_name} has its own validation split; drop the flag")
    labels = corpus.label_names(setting) or training_labels(dataset)
    check_unseen_labels(dataset, labels, report, fixed=corpus.fixed_labels)
    report.corpus, report.setting, report.protocol, report.labels = corpus.name, setting, protocol, labels
    report.fill_stats(dataset)
    return dataset, report


def _need_dir(corpus, data_dir) -> Path:
    if data_dir is None:
        raise HCAMDataError(f"{corpus.name}: pass --data_dir <folder of the {corpus.display_name} release>")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise HCAMDataError(f"{corpus.name}: --data_dir {path} is not a folder")
    return path


def validation_dialogues(dialogue_ids, fraction: float) -> set[str]:
    """round(fraction * n) dialogues (at least one, never all) chosen by a hash of their ids: the same on every run
    and machine, and independent of the order the reader found them in."""
    ids = sorted(set(dialogue_ids), key=lambda d: hashlib.sha1(str(d).encode()).hexdigest())
    if fraction <= 0 or len(ids) < 2:
        return set()
    return set(ids[:min(len(ids) - 1, max(1, round(fraction * len(ids))))])


def carve_validation(dataset, fraction: float):
    """Move `fraction` of the training dialogues into a new validation split. Returns (DatasetDict, dialogues moved)."""
    from datasets import DatasetDict

    if not 0 < fraction < 1:
        raise ValueError(f"--validation_fraction must be in (0, 1), got {fraction}: stage training selects its "
                         "checkpoint on validation, never on test")
    train = dataset["train"]
    held_out = validation_dialogues(train["dialogue_id"], fraction)
    if not held_out:  # fewer than 2 dialogues
        return dataset, 0
    in_validation = [d in held_out for d in train["dialogue_id"]]
    splits = {"train": train.select([i for i, v in enumerate(in_validation) if not v]),
              "validation": train.select([i for i, v in enumerate(in_validation) if v])}
    splits.update({k: v for k, v in dataset.items() if k != "train"})
    order = [s for s in ("train", "validation", "test") if s in splits]
    return DatasetDict({s: splits[s] for s in order}), len(held_out)


def training_labels(dataset) -> list[str]:
    """Sorted label names of the training split (manifests: the model learns what train holds)."""
    source = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    return sorted(set(source["label"]))


def check_unseen_labels(dataset, labels, report: DataReport, fixed: bool) -> None:
    """A label of validation/test that train never has: an error naming it (a typo, say) when the labels come
    from the data; a note when the corpus's own label set has it but the training split lacks it."""
    if "train" not in dataset:
        return
    in_train = set(dataset["train"]["label"])
    for split, ds in dataset.items():
        if split == "train":
            continue
        rows: dict[str, list[str]] = {}
        for dialogue_id, turn, label in zip(ds["dialogue_id"], ds["turn"], ds["label"]):
            if label not in in_train:
                rows.setdefault(label, []).append(f"{dialogue_id}#{turn}")
        for label, where in rows.items():
            ids = where[:5]
            more = f" and {len(where) - 5} more" if len(where) > 5 else ""
            if not fixed or label not in labels:
                raise HCAMDataError(
                    f"Label {label!r} occurs in the {split} split ({len(where)} rows: {', '.join(ids)}{more}) but never "
                    f"in train, so the model cannot learn it. Fix the label (a typo?), add training examples, or drop "
                    f"these rows.")
            report.note(f"label {label!r} is in {split} ({len(where)} rows) but not in this training split")


def clip_levels(waveform) -> tuple[float, float]:
    """(peak, RMS) of a decoded clip; (0, 0) when it is empty."""
    import numpy as np

    waveform = np.asarray(waveform, dtype=np.float64)
    if waveform.size == 0:
        return 0.0, 0.0
    return float(np.abs(waveform).max()), float(np.sqrt(np.mean(waveform ** 2)))


def near_silence_floor(levels) -> tuple[float, float]:
    """(median, floor) of the RMS levels of the clips that pass SILENCE_PEAK: a clip whose RMS is under the floor
    (SILENCE_BELOW_MEDIAN_DB below the median) is near-silent."""
    import numpy as np

    median = float(np.median(levels))
    return median, median * 10 ** (-SILENCE_BELOW_MEDIAN_DB / 20)


def _measure(path, sampling_rate):
    """(file sampling rate or 0 when not a libsndfile format, peak, RMS) of one clip, decoded at `sampling_rate`."""
    import soundfile as sf

    from hcam.modeling_hcam.feature_extraction_hcam import load_audio

    try:
        rate = sf.info(path).samplerate
    except Exception:
        rate = 0  # not a libsndfile format (mp4 ...): load_audio decodes it with ffmpeg
    return (rate, *clip_levels(load_audio(path, sampling_rate=sampling_rate)))


class _LevelCache:
    """Clip levels measured before, keyed by path, size and modification time (<hcam cache>/audio_levels.json,
    hcam.processing.cache): every stage that reads audio checks every clip, and decodes only the new or changed ones.

    A file that does not parse or holds entries that are not `[rate, peak, rms]` numbers is damaged: one warning
    names it, its bad entries (all of them, when it does not parse) are measured again and the file is rewritten."""

    FORMAT = 1

    def __init__(self):
        from .cache import cache_path

        self.path = cache_path("audio-levels")
        self.entries, self.changed = {}, False
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "entries" in data:
                if data.get("format") != self.FORMAT:
                    raise ValueError(f"format {data.get('format')!r}, not {self.FORMAT}")
                data = data["entries"]
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object of entries")
        except (OSError, ValueError) as error:  # cut short, zero-filled, not JSON
            self._damaged(f"unreadable: {type(error).__name__}: {error}")
            return
        self.entries = {key: value for key, value in data.items() if self._valid(key, value)}
        if len(self.entries) < len(data):
            self._damaged(f"{len(data) - len(self.entries)} of its {len(data)} entries are not [rate, peak, rms]")
        logger.info("Audio levels of %d clips read from %s", len(self.entries), self.path)

    def _damaged(self, reason):
        from .cache import discard_damaged

        discard_damaged(self.path, reason)
        self.changed = True  # rewritten by save(), even if nothing new is measured

    @staticmethod
    def _valid(key, value):
        return (isinstance(key, str) and key.count("|") >= 2 and isinstance(value, list) and len(value) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                        for v in value))

    @staticmethod
    def _key(path):
        stat = os.stat(path)
        return f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"

    def get(self, path):
        try:
            return self.entries.get(self._key(path))
        except OSError:
            return None

    def put(self, path, rate, peak, rms):
        self.entries[self._key(path)] = [rate, peak, rms]
        self.changed = True
        return rate, peak, rms

    def save(self):
        from .cache import partial_name, remove_quietly, warn_not_written

        if not self.changed:
            return
        partial = partial_name(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "w", encoding="utf-8") as f:
                json.dump({"format": self.FORMAT, "entries": self.entries}, f)
            os.replace(partial, self.path)
        except OSError as error:  # a full disk or a read-only cache only costs the decoding again
            remove_quietly(partial)
            warn_not_written(self.path, error)
            return
        logger.info("Audio levels of %d clips written to %s", len(self.entries), self.path)


def check_audio_clips(dataset, report: DataReport, *, skip_bad: bool = True, progress: bool = True,
                      sampling_rate: int = SAMPLING_RATE):
    """Decode every clip once; corrupt and silent clips are problems (skipped with `skip_bad`, else one error).

    Silent = peak below SILENCE_PEAK, or RMS more than SILENCE_BELOW_MEDIAN_DB under the corpus's median clip.
    Also notes the sampling rates found. Returns the DatasetDict without the skipped rows."""
    from datasets import DatasetDict
    from tqdm.auto import tqdm

    levels, problems, rates = {}, [], {}
    known = _LevelCache()
    items = {split: [f"{split}/{d}#{t}" for d, t in zip(ds["dialogue_id"], ds["turn"])] for split, ds in dataset.items()}
    for split, ds in dataset.items():
        for index, path in enumerate(tqdm(ds["audio"], desc=f"checking audio ({split})", disable=not progress)):
            if not path:
                continue
            item = items[split][index]
            try:
                rate, peak, rms = known.get(path) or known.put(path, *_measure(path, sampling_rate))
            except Exception as err:
                problems.append(Problem(item, "corrupt_audio", f"{path} cannot be decoded ({err}); re-export or "
                                        "drop it", split))
                continue
            if rate:
                rates[rate] = rates.get(rate, 0) + 1
            if peak < SILENCE_PEAK:
                problems.append(Problem(item, "silent_audio", f"{path} is silent (peak < {SILENCE_PEAK}); check the "
                                        "recording or drop the utterance", split))
                continue
            levels[(split, index)] = (item, path, rms)
    known.save()
    if levels:
        median, floor = near_silence_floor([level for _, _, level in levels.values()])
        for (split, _), (item, path, level) in levels.items():
            if level < floor:
                db = 20 * math.log10(max(level, 1e-12) / median)
                problems.append(Problem(item, "silent_audio", f"{path} is {-db:.0f} dB below the corpus's median "
                                        "clip: near-silent (a muted channel?); check the recording or drop it", split))
    if rates:
        summary = ", ".join(f"{rate} Hz: {n}" for rate, n in sorted(rates.items()))
        report.note(f"sampling rates ({summary})" + ("" if set(rates) == {sampling_rate} else
                                                       f"; resampled to {sampling_rate} Hz when loaded"))
    raise_or_skip(problems, report, skip_bad, what="the audio check")
    if not problems:
        return dataset
    bad = {p.item for p in problems}
    kept = {}
    for split, ds in dataset.items():
        keep = [i for i, item in enumerate(items[split]) if item not in bad]
        kept[split] = ds.select(keep) if len(keep) < len(ds) else ds
    return DatasetDict(kept)


__all__ = ["load_hcam_dataset", "carve_validation", "check_audio_clips", "DataReport"]
