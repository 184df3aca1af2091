"""🤗 datasets as hcam corpora: a Hub dataset (``load_dataset``) or a folder written by ``save_to_disk``
(``load_from_disk``).

``run_stage.py --dataset_name <namespace/name or folder>`` (and ``hcam-data-check``) read one through here;
``hcam.processing.corpora.get_corpus`` resolves the name: a built-in corpus first, then an existing folder, then a
Hub id. What comes out is the standard schema (``manifest.py``), checked and reported like manifests:

- **Columns** are mapped by the manifests' flags ``--dialogue_id_column_name``, ``--turn_column_name``,
  ``--speaker_column_name``, ``--text_column_name``, ``--audio_column_name`` and ``--label_column_name`` (defaults:
  the schema's names; ``manifest.map_columns``). A ``ClassLabel`` column gives its names (-1 = no label). Other
  columns holding one value per row are kept as extra columns; lists, dicts and audio are left out, with a note.
- **Audio** is decoded by hcam itself (soundfile, else ffmpeg), never by ``datasets``, so no torchcodec or FFmpeg
  libraries are needed. A ``datasets.Audio`` column is read undecoded: its bytes are written once to the hcam cache
  (``datasets_audio/``, named by their content; ``hcam-cache``), or its path is used when it holds no bytes. A column
  of decoded audio, ``{"array", "sampling_rate"}``, is written there as a float wav. A string column holds paths
  (relative ones resolve against the working directory, as in ``datasets``). Any other column type is refused,
  naming it.
- **Splits**: train, validation (also named valid or dev) and test, as the dataset has them; other splits are left
  out with a note. Without a validation split, ``load_hcam_dataset`` carves one from train, as for manifests. A
  folder holding one ``Dataset`` (no splits) is read as train.
- **Checks**: ``manifest.check_rows`` (empty dialogue id, non-integer turn, empty label, empty text, missing or
  corrupt audio, duplicate (dialogue, turn)): skipped and listed in the report, or one error with ``skip_bad=False``.
- ``--dataset_config_name`` is the Hub dataset's config and ``--dataset_revision`` its branch, tag or commit (a
  ``save_to_disk`` folder has neither). ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` apply as usual.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

from .manifest import SPLIT_NAMES, build_dataset_dict, map_columns, schema_row
from .report import DataReport, HCAMDataError

# Signatures of the formats a nameless Audio entry may hold (the suffix helps readers that go by file name).
_MAGIC = ((b"RIFF", ".wav"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"))


def read_hf_dataset(*, source: str, setting: str | None = None, label_names=None, audio: bool | None = None,
                    skip_bad: bool = True, revision: str | None = None, progress: bool = True, **column_names):
    """Read a 🤗 dataset into a DatasetDict in the standard schema, with its DataReport.

    Args:
        source: a Hub dataset id (namespace/name) or a folder written by ``save_to_disk``.
        setting: the Hub dataset's config name (None: its default).
        label_names: allowed labels (None: any non-empty label; the training split's set becomes the model's).
        audio: None = use the audio column when there is one; False = text only; True = audio required.
        skip_bad: leave bad rows out and list them in the report (True), or raise one error listing them.
        revision: the Hub dataset's branch, tag or commit (None: main).
        progress: progress bars while rows are read.
        **column_names: ``dialogue_id_column``, ``turn_column``, ``speaker_column``, ``text_column``,
            ``audio_column``, ``label_column`` (None to drop an optional one; ``label_column=None``: unlabelled).
    Returns:
        (DatasetDict, DataReport)
    """
    name = Path(source).name if Path(source).is_dir() else source
    report = DataReport(dataset=name)
    splits = _standard_splits(load_source(source, setting, revision), report, name)
    if audio is False:
        column_names["audio_column"] = None
        report.note("text only (audio=False)")
    rows_by_split, has_text, has_audio = {}, True, False
    for split, dataset in splits.items():
        mapping = map_columns(dataset.column_names, f"{name} ({split} split)", report, **column_names)
        rows_by_split[split] = _schema_rows(dataset, split, mapping, report, name, progress)
        has_text &= mapping["text"] is not None
        has_audio |= mapping["audio"] is not None
    return build_dataset_dict(
        rows_by_split, report, skip_bad=skip_bad, what=f"the dataset {name}", label_names=label_names,
        require_text=has_text, require_audio=has_audio if audio is None else bool(audio),
        require_label=column_names.get("label_column", "label") is not None,
    ), report


def load_source(source: str, config: str | None = None, revision: str | None = None):
    """The DatasetDict (or Dataset) of a ``save_to_disk`` folder or a Hub dataset id; HCAMDataError saying what to
    check when it cannot be read."""
    import datasets

    if Path(source).is_dir():
        given = [flag for flag, value in (("--dataset_config_name", config), ("--dataset_revision", revision)) if value]
        if given:
            raise HCAMDataError(f"{source} is a folder written by save_to_disk: it has no configs or revisions; drop "
                                f"{' '.join(given)}")
        try:
            return datasets.load_from_disk(source)
        except Exception as error:  # any failure of the folder's files is the data's problem
            raise HCAMDataError(f"{source} cannot be read with datasets.load_from_disk ({type(error).__name__}: "
                                f"{error}); write it again with save_to_disk") from error
    try:
        return datasets.load_dataset(source, config, revision=revision)
    except Exception as error:  # not found, no such config or revision, offline, unauthorised ...
        at = "".join(f" {what} {value!r}" for what, value in (("config", config), ("revision", revision)) if value)
        from huggingface_hub import constants

        raise HCAMDataError(
            f"The Hub dataset {source}{at} cannot be loaded ({type(error).__name__}: {error}). Check the id, "
            f"--dataset_config_name and --dataset_revision, the endpoint ({constants.ENDPOINT}; HF_ENDPOINT), a token "
            "for a private dataset (HF_TOKEN or `hf auth login`), and, offline (HF_HUB_OFFLINE=1), that it is in the "
            f"cache. No folder named {source} exists here either.") from error


def _standard_splits(loaded, report: DataReport, name: str) -> dict:
    """{train/validation/test: Dataset} from the dataset's own split names (SPLIT_NAMES); others noted, left out."""
    import datasets

    if isinstance(loaded, datasets.Dataset):
        report.note(f"{name} is one Dataset without splits: read as the train split")
        return {"train": loaded}
    found, taken = {}, {}
    for split_name, dataset in loaded.items():
        split = next((s for s, names in SPLIT_NAMES.items() if str(split_name).lower() in names), None)
        if split is None:
            report.note(f"split {split_name!r} left out (hcam reads train, validation (valid, dev) and test)")
            continue
        if split in found:
            raise HCAMDataError(f"{name} has two {split} splits, {taken[split]!r} and {split_name!r}: keep one")
        found[split], taken[split] = dataset, split_name
    if not found:
        raise HCAMDataError(f"{name} has no train, validation or test split (splits: {list(loaded)}); rename them")
    return {split: found[split] for split in SPLIT_NAMES if split in found}


def _schema_rows(dataset, split: str, mapping: dict, report: DataReport, name: str, progress: bool) -> list[dict]:
    """The split's rows in the schema (not yet checked), audio made files, ClassLabel values made names."""
    from datasets import Audio, ClassLabel, Value
    from tqdm.auto import tqdm

    audio_column = mapping["audio"]
    if audio_column is not None:
        feature = dataset.features[audio_column]
        if isinstance(feature, Audio):
            dataset = dataset.cast_column(audio_column, Audio(decode=False))  # hcam decodes: no torchcodec needed
        elif not _is_path_feature(feature) and not _is_array_feature(feature):
            raise HCAMDataError(f"{name} ({split} split): the audio column {audio_column!r} holds {feature}; hcam reads "
                                "a datasets.Audio column, a column of file paths, or {'array', 'sampling_rate'} "
                                "dicts. Pass --audio_column_name <another column>, or read text only")
    mapped = {column for column in mapping.values() if column is not None}
    # Other columns are extras when they hold one value per row; lists, dicts and audio are left out unread.
    left_out = [column for column, feature in dataset.features.items()
                if column not in mapped and not isinstance(feature, (Value, ClassLabel))]
    if left_out:
        dataset = dataset.remove_columns(left_out)
        report.note(f"{name} ({split} split): columns {left_out} hold lists, dicts or audio: left out")
    class_labels = {column: feature for column, feature in dataset.features.items() if isinstance(feature, ClassLabel)}
    rows, turns = [], {}
    for index, raw in enumerate(tqdm(dataset, desc=f"reading {name} ({split})", disable=not progress,
                                     total=len(dataset), unit=" rows")):
        for column, feature in class_labels.items():
            value = raw[column]
            raw[column] = feature.int2str(value) if isinstance(value, int) and value >= 0 else ""
        row = schema_row(raw, mapping, turns)
        row["audio"] = audio_file(row["audio"]) if audio_column is not None else ""
        rows.append({"_item": f"{split}/{row['dialogue_id']}#{row['turn']} (row {index})", **row})
    return rows


def _is_path_feature(feature) -> bool:
    return getattr(feature, "dtype", None) in ("string", "large_string")


def _is_array_feature(feature) -> bool:
    return isinstance(feature, dict) and {"array", "sampling_rate"} <= set(feature)


def audio_file(value) -> str:
    """A file holding one row's audio: a path as given (absolute), or Audio bytes / a decoded array written to the
    cache. "" when the row has none (`check_rows` reports it where audio is required)."""
    if value is None or value == "":
        return ""
    if isinstance(value, (str, os.PathLike)):
        return str(Path(value).expanduser().resolve())
    if value.get("bytes"):
        path = value.get("path") or ""
        suffix = Path(path).suffix.lower()
        if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
            suffix = next((s for magic, s in _MAGIC if value["bytes"].startswith(magic)), "")
        return _cached(bytes(value["bytes"]), suffix)
    if value.get("array") is not None:
        return _cached(_wav_bytes(value["array"], value.get("sampling_rate")), ".wav")
    return audio_file(value.get("path"))


def _wav_bytes(array, sampling_rate) -> bytes:
    import numpy as np
    import soundfile as sf

    samples = np.asarray(array, dtype=np.float32)
    if samples.ndim == 2:  # datasets' decoded audio: (channels, samples)
        samples = samples.T
    if samples.ndim not in (1, 2) or not sampling_rate:
        raise HCAMDataError(f"decoded audio of shape {samples.shape} at sampling rate {sampling_rate!r}: hcam needs "
                            "samples (or channels x samples) and a sampling rate")
    buffer = io.BytesIO()
    sf.write(buffer, samples, int(sampling_rate), format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def _cached(data: bytes, suffix: str) -> str:
    """The cache file holding `data` (named by its SHA-256), written once, atomically."""
    from .cache import cache_path, disk_full_message, is_disk_full, partial_name, remove_quietly

    digest = hashlib.sha256(data).hexdigest()
    path = cache_path("dataset-audio") / digest[:2] / f"{digest}{suffix}"
    if path.is_file() and path.stat().st_size == len(data):
        return str(path)
    partial = partial_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as f:
            f.write(data)
        os.replace(partial, path)
    except OSError as error:  # unlike a cache entry, the file is needed: hcam reads audio from files
        remove_quietly(partial)
        reason = disk_full_message(path, error) if is_disk_full(error, path) else f"{type(error).__name__}: {error}"
        raise HCAMDataError(f"The dataset's audio cannot be written to {path} ({reason}); free space or point "
                            "HCAM_CACHE elsewhere") from error
    return str(path)


__all__ = ["read_hf_dataset", "load_source", "audio_file"]
