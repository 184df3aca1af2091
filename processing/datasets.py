"""One entry point for every reader: ``load_hcam_dataset(name, ...) -> (DatasetDict, DataReport)``.

Names: "manifest" (your own CSV/TSV/JSONL files), "meld", "iemocap", "mosi", and "demo" (the small
synthetic corpus shipped in ``<repo>/data/demo/``, read with the manifest reader).
"""
from __future__ import annotations

from pathlib import Path

from .report import DataReport, HCAMDataError

DATASET_NAMES = ("manifest", "meld", "iemocap", "mosi", "demo")
DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"
_MANIFEST_KEYS = ("dialogue_id_column", "turn_column", "speaker_column", "text_column", "audio_column",
                  "label_column", "label_names", "require_audio")


def load_hcam_dataset(name: str, data_dir=None, train_file=None, validation_file=None, test_file=None,
                      setting: str | None = None, fold: int | None = None, skip_bad: bool = True,
                      cache_dir=None, audio: bool | None = None, num_workers: int = 2, **kwargs):
    """Read a dataset into a ``DatasetDict`` (schema of spec/INTERFACES.md) and a ``DataReport``.

    Args:
        name: "manifest", "meld", "iemocap", "mosi" or "demo".
        data_dir: the release folder (meld / iemocap / mosi), the demo folder (default
            ``<repo>/data/demo``), or, for "manifest", a folder holding train/validation/test .csv or .jsonl.
        train_file, validation_file, test_file: manifest files ("manifest"; also accepted by "demo").
        setting: label setting ("6class"/"4class" IEMOCAP, "emotion"/"sentiment" MELD,
            "binary"/"binary_nonzero"/"7class" MOSI).
        fold: IEMOCAP leave-one-session-out fold (1..5; None = sessions 1-4 train / 5 test).
        skip_bad: leave bad items out and list them in the report (True), or raise one error.
        cache_dir: MELD's extracted-audio cache (default ``~/.cache/hcam/meld``).
        audio: None = use audio when present; False = text only; True = audio required.
        num_workers: MELD audio extraction processes.
        **kwargs: passed to the reader (e.g. manifest column names, ``validation_fraction`` for IEMOCAP,
            ``normalize_text`` for MELD, ``label_file`` for MOSI).
    Returns:
        (DatasetDict, DataReport)
    """
    name = name.lower()
    if name == "meld":
        from .meld import read_meld

        return read_meld(_need_dir(name, data_dir), setting=setting, cache_dir=cache_dir, audio=audio,
                         skip_bad=skip_bad, num_workers=num_workers, **kwargs)
    if name == "iemocap":
        from .iemocap import read_iemocap

        return read_iemocap(_need_dir(name, data_dir), setting=setting, fold=fold, skip_bad=skip_bad,
                            audio=audio is not False, **kwargs)
    if name == "mosi":
        from .mosi import read_mosi

        return read_mosi(_need_dir(name, data_dir), setting=setting, audio=audio, skip_bad=skip_bad, **kwargs)
    if name in ("manifest", "demo"):
        from .manifest import read_manifest

        files = {"train": train_file, "validation": validation_file, "test": test_file}
        if name == "demo" and data_dir is None and not any(files.values()):
            data_dir = DEMO_DIR
            if not data_dir.is_dir():
                raise HCAMDataError(f"The demo corpus is not at {data_dir}: it ships in the source tree "
                                    "(data/demo/); pass data_dir=<path of the demo folder>")
        if data_dir is not None and not any(files.values()):
            files = _split_files(Path(data_dir))
        files = {split: path for split, path in files.items() if path is not None}
        if not files:
            raise HCAMDataError("manifest: pass train_file/validation_file/test_file, or data_dir with "
                                "train/validation/test .csv/.tsv/.jsonl files")
        unknown = [k for k in kwargs if k not in _MANIFEST_KEYS]
        if unknown:
            raise TypeError(f"manifest reader got unknown arguments {unknown}; known: {list(_MANIFEST_KEYS)}")
        if audio is False:
            kwargs["audio_column"] = None
        dataset_dict, report = read_manifest(data_files=files, skip_bad=skip_bad, dataset_name=name,
                                             require_audio=True if audio else None, **kwargs)
        return dataset_dict, report
    raise ValueError(f"Unknown dataset {name!r}; use one of {list(DATASET_NAMES)}")


def _need_dir(name: str, data_dir) -> Path:
    if data_dir is None:
        raise HCAMDataError(f"{name}: pass data_dir=<folder of the {name} release>")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise HCAMDataError(f"{name}: data_dir {path} is not a folder")
    return path


def _split_files(folder: Path) -> dict[str, Path | None]:
    """train/validation/test manifests in a folder (validation also as dev/valid)."""
    if not folder.is_dir():
        raise HCAMDataError(f"data_dir {folder} is not a folder")
    names = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}
    found: dict[str, Path | None] = {}
    for split, stems in names.items():
        found[split] = next((folder / f"{stem}{ext}" for stem in stems for ext in (".csv", ".tsv", ".jsonl")
                             if (folder / f"{stem}{ext}").is_file()), None)
    return found


__all__ = ["load_hcam_dataset", "DATASET_NAMES", "DataReport"]
