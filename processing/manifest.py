"""The standard schema, the shared row checks, and the plain manifest reader (CSV / TSV / JSONL).

Schema (see spec/INTERFACES.md): one row per utterance with ``dialogue_id`` (str), ``turn`` (int,
0-based order inside the dialogue), ``speaker`` (str), ``text`` (str), ``audio`` (str: absolute path
or ""), ``label`` (str: label name), plus optional extra columns (``utterance_id``, ``duration`` in
seconds, ``sentiment``, ...). Rows are sorted by (dialogue order of first appearance, turn).

Turns are renumbered 0, 1, 2, ... inside each dialogue after sorting and after bad rows are
skipped, so the model always sees a gap-free sequence; the source's own ids stay in
``utterance_id`` where the format has them.

A manifest is a CSV (``.csv``), TSV (``.tsv``) or JSON-lines file (``.jsonl``/``.json``) with the
columns above; names can be overridden (``text_column="transcript"``), like transformers' example
scripts. Audio paths are relative to the manifest file (absolute paths are kept). Optional columns:
``turn`` (default: order of appearance in the dialogue), ``speaker`` (default ""), ``audio``
(default "", text-only), ``text`` (absent = audio-only dataset: text "" everywhere), ``label``
(``label_column=None``: unlabelled data, label ""). Any other column is kept as an extra column.

`read_table` is the one reader of CSV/TSV/JSON-lines tables (the corpus readers and hcam-predict's transcripts and
segments tables use it too); `read_conversations` reads one manifest as conversations for inference (what
``hcam-predict --manifest`` runs).
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

from datasets import Dataset, DatasetDict, Features, Value

from .report import DataReport, HCAMDataError, Problem, raise_or_skip

SCHEMA_COLUMNS = ["dialogue_id", "turn", "speaker", "text", "audio", "label"]
SCHEMA_FEATURES = {"dialogue_id": Value("string"), "turn": Value("int64"), "speaker": Value("string"),
                   "text": Value("string"), "audio": Value("string"), "label": Value("string")}
SPLIT_ORDER = ("train", "validation", "test")
# The names a split goes by in manifests' file names and 🤗 datasets' split names (lower case).
SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}
# libsndfile reads these headers cheaply; other formats (mp4, m4a, ...) get duration NaN here.
_SOUNDFILE_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au"}


# --------------------------------------------------------------------------------------------
# Shared by every reader
# --------------------------------------------------------------------------------------------
def audio_duration(path: str) -> float:
    """Duration in seconds read from the file header (NaN when libsndfile can't read the format).

    Raises ``ValueError`` when a wav/flac/ogg/mp3 header is unreadable (a corrupt file).
    """
    if Path(path).suffix.lower() not in _SOUNDFILE_EXTENSIONS:
        return float("nan")
    import soundfile as sf

    try:
        info = sf.info(path)
    except Exception as err:  # soundfile raises LibsndfileError/RuntimeError depending on version
        raise ValueError(str(err)) from err
    return info.frames / float(info.samplerate) if info.samplerate else 0.0


def check_rows(split: str, rows: list[dict[str, Any]], *, label_names: Iterable[str] | None = None,
               require_text: bool = True, require_audio: bool = False, require_label: bool = True,
               read_durations: bool = True) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Check rows of one split; return (good rows, problems). Rows may carry ``_item`` (a source id; it stays in the
    row, and `rows_to_dataset` leaves it out like every ``_`` key).

    Checks: empty dialogue id, non-integer turn, empty/unknown label, empty text (when required),
    missing/empty/corrupt audio file, duplicate (dialogue_id, turn). Fills ``duration`` from the
    audio header when the row has none.
    """
    allowed = set(label_names) if label_names is not None else None
    good, problems, seen = [], [], {}
    for row in rows:
        item = row.get("_item") or f"{split}/{row.get('dialogue_id')}#{row.get('turn')}"

        def bad(kind: str, message: str) -> None:
            problems.append(Problem(item=item, kind=kind, message=message, split=split))

        dialogue_id = str(row.get("dialogue_id") or "").strip()
        if not dialogue_id:
            bad("bad_row", "empty dialogue id; every row needs the id of its dialogue")
            continue
        row["dialogue_id"] = dialogue_id
        try:
            turn = row.get("turn")
            if isinstance(turn, float) and not turn.is_integer():
                raise ValueError
            row["turn"] = int(str(turn).strip()) if isinstance(turn, str) else int(turn)
        except (TypeError, ValueError):
            bad("bad_turn", f"turn {row.get('turn')!r} is not an integer; give 0, 1, 2, ... per dialogue")
            continue
        label = "" if row.get("label") is None else str(row["label"]).strip()  # 0 is a label (an id column)
        row["label"] = label
        if require_label and not label:
            bad("unknown_label", "empty label")
            continue
        if require_label and allowed is not None and label not in allowed:
            bad("unknown_label", f"label {label!r} is not one of {sorted(allowed)}; fix it or drop the row")
            continue
        row["text"] = "" if row.get("text") is None else str(row["text"]).strip()
        if require_text and not row["text"]:
            bad("empty_text", "empty text; give the transcript (or an ASR transcript) for this utterance")
            continue
        row["speaker"] = "" if row.get("speaker") is None else str(row["speaker"]).strip()
        audio = str(row.get("audio") or "")
        row["audio"] = audio
        if audio:
            if not os.path.isfile(audio):
                bad("missing_audio", f"audio file not found: {audio}")
                continue
            if os.path.getsize(audio) == 0:
                bad("empty_audio", f"audio file is empty (0 bytes): {audio}")
                continue
            duration = row.get("duration")
            if read_durations and (duration is None or (isinstance(duration, float) and math.isnan(duration))):
                try:
                    row["duration"] = audio_duration(audio)
                except ValueError as err:
                    bad("corrupt_audio", f"cannot read {audio}: {err}; re-export or remove the file")
                    continue
                if row["duration"] == 0:
                    bad("empty_audio", f"audio file has no samples: {audio}")
                    continue
        elif require_audio:
            bad("missing_audio", "no audio path given, but this dataset has audio")
            continue
        key = (dialogue_id, row["turn"])
        if key in seen:
            bad("duplicate_id", f"dialogue {dialogue_id!r} turn {row['turn']} appears twice "
                                f"(first: {seen[key]}); the first one is kept")
            continue
        seen[key] = item
        good.append(row)
    return good, problems


def sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checked rows sorted by (order of their dialogue's first appearance, turn)."""
    order: dict[str, int] = {}
    for row in rows:
        order.setdefault(row["dialogue_id"], len(order))
    return sorted(rows, key=lambda r: (order[r["dialogue_id"]], r["turn"]))


def rows_to_conversations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checked rows as conversations ``{"dialogue_id", "turns": [rows in turn order]}``, in order of first
    appearance. The rows keep their source ``turn`` numbers (a conversation's position is its list index)."""
    conversations: dict[str, list] = {}
    for row in sort_rows(rows):
        conversations.setdefault(row["dialogue_id"], []).append(row)
    return [{"dialogue_id": dialogue_id, "turns": turns} for dialogue_id, turns in conversations.items()]


def rows_to_dataset(rows: list[dict[str, Any]]) -> Dataset:
    """Sort rows by (dialogue first appearance, turn), renumber turns 0.., and build a Dataset."""
    rows = sort_rows(rows)
    position: dict[str, int] = {}
    for row in rows:
        row["turn"] = position.get(row["dialogue_id"], 0)
        position[row["dialogue_id"]] = row["turn"] + 1

    extras: list[str] = []
    for row in rows:
        for key in row:
            if key not in SCHEMA_FEATURES and key not in extras and not key.startswith("_"):
                extras.append(key)
    features = dict(SCHEMA_FEATURES)
    for key in extras:
        values = [row.get(key) for row in rows if row.get(key) is not None]
        if values and all(isinstance(v, bool) for v in values):
            features[key] = Value("bool")
        elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            features[key] = Value("int64")
        elif values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            features[key] = Value("float64")
        else:
            features[key] = Value("string")
    columns = {}
    for key, feature in features.items():
        column = [row.get(key) for row in rows]
        if feature.dtype == "string":
            column = [None if v is None else str(v) for v in column]
        elif feature.dtype == "float64":
            column = [float("nan") if v is None else float(v) for v in column]
        columns[key] = column
    return Dataset.from_dict(columns, features=Features(features))


def build_dataset_dict(rows_by_split: dict[str, list[dict[str, Any]]], report: DataReport, *,
                       skip_bad: bool = True, what: str = "", problems: list[Problem] | None = None,
                       **check_kwargs) -> DatasetDict:
    """Check every split's rows, skip or raise on problems, build the DatasetDict, fill the report.

    ``problems`` found earlier (e.g. malformed lines) are raised or recorded together with these.
    """
    checked, problems = {}, list(problems or [])
    for split, rows in rows_by_split.items():
        good, found = check_rows(split, rows, **check_kwargs)
        checked[split] = good
        problems.extend(found)
    raise_or_skip(problems, report, skip_bad, what=what)
    splits = sorted(checked, key=lambda s: SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER))
    dataset_dict = DatasetDict({split: rows_to_dataset(checked[split]) for split in splits})
    report.fill_stats(dataset_dict)
    return dataset_dict


# --------------------------------------------------------------------------------------------
# Manifest files
# --------------------------------------------------------------------------------------------
def read_table(path, split: str | None = None) -> tuple[list[str], list[tuple[int, dict]], list[Problem]]:
    """The one reader of CSV (``.csv``, ``.txt``), TSV (``.tsv``) and JSON-lines (``.jsonl``, ``.json``) tables.

    Args:
        path: the file.
        split: the split its rows belong to, for the problems (None: not part of a split).
    Returns:
        (column names in file order, rows as (line number, {column: value}), problems): a malformed row (wrong field
        count, a line that is not a JSON object) is a `Problem` named ``<file>:<line>``, left to the caller
        (`raise_or_skip`). A missing, empty, non-UTF-8 or unparsable file raises `HCAMDataError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise HCAMDataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    problems: list[Problem] = []
    rows: list[tuple[int, dict]] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            if suffix in (".jsonl", ".json"):
                columns: list[str] = []
                for line_no, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as err:
                        problems.append(Problem(f"{path.name}:{line_no}", "bad_row",
                                                f"not valid JSON ({err.msg}); fix the line", split))
                        continue
                    if not isinstance(record, dict):
                        problems.append(Problem(f"{path.name}:{line_no}", "bad_row",
                                                "a JSON-lines table needs one object per line", split))
                        continue
                    columns.extend(k for k in record if k not in columns)
                    rows.append((line_no, record))
                return columns, rows, problems
            if suffix not in (".csv", ".tsv", ".txt"):
                raise HCAMDataError(f"{path}: unknown table format {suffix!r}; use .csv, .tsv or .jsonl")
            reader = csv.reader(f, delimiter="\t" if suffix == ".tsv" else ",", strict=True)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise HCAMDataError(f"{path} is empty; a table needs a header row and one row per utterance")
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except csv.Error as err:
                    raise HCAMDataError(f"{path} is not a valid CSV near line {reader.line_num}: {err}. "
                                        "Check quoting (a field with commas or newlines must be quoted).")
                if not fields or all(not x.strip() for x in fields):
                    continue
                if len(fields) != len(header):
                    problems.append(Problem(f"{path.name}:{reader.line_num}", "bad_row",
                                            f"{len(fields)} fields but the header has {len(header)}; "
                                            "quote fields containing the delimiter", split))
                    continue
                rows.append((reader.line_num, dict(zip(header, fields))))
            return header, rows, problems
    except UnicodeDecodeError as err:
        raise HCAMDataError(f"{path} is not UTF-8 text (byte {err.start}): save it as UTF-8") from err


def map_columns(columns: list[str], where: str, report: DataReport, *, short: str | None = None,
                dialogue_id_column: str = "dialogue_id",
                turn_column: str | None = "turn", speaker_column: str | None = "speaker", text_column: str | None = "text",
                audio_column: str | None = "audio", label_column: str | None = "label") -> dict[str, str | None]:
    """Which of a table's `columns` holds each schema field: {field: column, or None when it has none}.

    Shared by manifests and 🤗 datasets (the same ``--*_column_name`` flags). A missing dialogue id or label column,
    or neither a text nor an audio column, or an optional one asked for by another name than the schema's, is an
    error naming the flag to pass; a missing optional column under its schema name (turn, speaker, text or audio) is
    a note in the report. `where` names the table in errors, `short` in notes (default
    `where`). ``label_column=None``: unlabelled data."""

    def need(column, option):
        if column is None or column not in columns:
            raise HCAMDataError(f"{where}: column {column!r} not found (columns: {columns}); rename it or pass "
                                f"--{option}_name <your column> ({option}= in Python)")

    need(dialogue_id_column, "dialogue_id_column")
    if label_column is not None:
        need(label_column, "label_column")
    for field, column in (("turn", turn_column), ("speaker", speaker_column), ("text", text_column),
                          ("audio", audio_column)):
        if column is not None and column != field:  # a name asked for, not the default: a typo is an error
            need(column, f"{field}_column")
    found = {field: column if column is not None and column in columns else None for field, column in (
        ("turn", turn_column), ("speaker", speaker_column), ("text", text_column), ("audio", audio_column))}
    if found["text"] is None and found["audio"] is None:
        raise HCAMDataError(f"{where}: neither a text column ({text_column!r}) nor an audio column "
                            f"({audio_column!r}) found (columns: {columns}); pass --text_column_name or "
                            "--audio_column_name")
    for name, what in (("text", " (audio-only)"), ("audio", " (text-only)"), ("turn", " (turn = order of rows)"),
                       ("speaker", " (speaker = \"\")")):
        if found[name] is None:
            report.note(f"{short or where}: no {name} column{what}")
    return {"dialogue_id": dialogue_id_column, **found, "label": label_column}


def schema_row(raw: dict, mapping: dict[str, str | None], turns: dict[str, int]) -> dict:
    """One source row in the schema, not yet checked (`check_rows` does): each field from its column (`map_columns`),
    ``turn`` = the order of rows in the dialogue when there is no turn column (`turns` counts them), ``audio`` the
    column's raw value (None without one: the caller makes it a path), and every other column kept as an extra."""
    dialogue_id = raw.get(mapping["dialogue_id"])
    dialogue_id = "" if dialogue_id is None else str(dialogue_id).strip()
    if mapping["turn"] is not None:
        turn = raw.get(mapping["turn"])
    else:
        turn = turns.get(dialogue_id, 0)
        turns[dialogue_id] = turn + 1
    row = {"dialogue_id": dialogue_id, "turn": turn}
    for field in ("speaker", "text", "label"):
        row[field] = raw.get(mapping[field], "") if mapping[field] is not None else ""
    row["audio"] = raw.get(mapping["audio"]) if mapping["audio"] is not None else None
    mapped = set(mapping.values())
    for key, value in raw.items():
        if key not in mapped and key not in SCHEMA_FEATURES:
            row[key] = _parse_extra(key, value)
    return row


def read_manifest_file(path, split: str, report: DataReport, **column_names) -> tuple[list[dict], list[Problem], dict]:
    """Rows of one manifest file in the standard schema (not yet checked) and the file's traits."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise HCAMDataError(f"Manifest for split {split!r} not found: {path}")
    columns, raw_rows, problems = read_table(path, split)
    rows, traits = _manifest_rows(path, split, report, columns, raw_rows, **column_names)
    return rows, problems, traits


def _manifest_rows(path: Path, split: str, report: DataReport, columns: list[str], raw_rows: list[tuple[int, dict]],
                   **column_names) -> tuple[list[dict], dict]:
    """A manifest's rows in the schema (`map_columns`, `schema_row`; audio paths resolved against its folder), not
    yet checked, and its traits."""
    mapping = map_columns(columns, str(path), report, short=path.name, **column_names)
    base = path.parent
    rows, turns = [], {}
    for line_no, raw in raw_rows:
        row = schema_row(raw, mapping, turns)
        audio = row["audio"]
        if audio in (None, ""):
            row["audio"] = ""
        else:
            audio_path = Path(str(audio).strip()).expanduser()
            row["audio"] = str(audio_path if audio_path.is_absolute() else (base / audio_path).resolve())
        rows.append({"_item": f"{split}/{row['dialogue_id']}#{row['turn']} ({path.name}:{line_no})", **row})
    return rows, {"has_text": mapping["text"] is not None, "has_audio": mapping["audio"] is not None}


def read_conversations(path, *, split: str = "input", report: DataReport | None = None,
                       **column_names) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The conversations of one manifest, for inference (what ``hcam-predict --manifest`` reads).

    Args:
        path: a CSV/TSV/JSONL manifest (audio paths relative to it).
        split: the name its rows' problems carry.
        report: receives the notes (a column the file lacks); a new one when None.
        **column_names: as `read_manifest` (``text_column=...``; None = the default name). The label column is
            read when the file has it; one named explicitly must exist.
    Returns:
        (conversations ``[{"dialogue_id", "turns": [rows in the standard schema, in turn order]}]`` in order of
        first appearance, problems of the rows left out). Rows are checked for what any use needs: a dialogue id,
        an integer turn, an audio file that exists and is not empty when one is named, no duplicate turn; text,
        audio and labels may be missing (an audio-only or text-only model, unlabelled input). Each row keeps its
        source id in ``_item`` (``input/<dialogue>#<turn> (<file>:<line>)``). The problems are not raised: the
        caller decides with `raise_or_skip`, together with any it finds itself.
    """
    path = Path(path).expanduser().resolve()
    report = report if report is not None else DataReport(dataset=path.name)
    columns, raw_rows, problems = read_table(path, split)
    column_names = {name: value for name, value in column_names.items() if value is not None}
    if "label_column" not in column_names and "label" not in columns:
        column_names["label_column"] = None  # unlabelled input
    rows, _ = _manifest_rows(path, split, report, columns, raw_rows, **column_names)
    good, found = check_rows(split, rows, require_text=False, require_audio=False, require_label=False,
                             read_durations=False)
    return rows_to_conversations(good), problems + found


def _parse_extra(key: str, value: Any) -> Any:
    if key == "duration":
        try:
            return float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None
    return value


def read_manifest(train_file=None, validation_file=None, test_file=None, *, data_files: dict | None = None,
                  label_names: Iterable[str] | None = None, skip_bad: bool = True, require_audio: bool | None = None,
                  dataset_name: str = "manifest", **column_names) -> tuple[DatasetDict, DataReport]:
    """Read manifest files into a DatasetDict in the standard schema.

    Args:
        train_file, validation_file, test_file: paths of the split manifests (any may be None).
        data_files: alternatively {split: path}.
        label_names: allowed label names; other labels are problems (None = accept any non-empty label).
        skip_bad: leave bad rows out and list them in the report (True) or raise one error listing them.
        require_audio: every row must have an existing audio file (default: when the manifest has an
            audio column).
        **column_names: ``dialogue_id_column``, ``turn_column``, ``speaker_column``, ``text_column``,
            ``audio_column``, ``label_column`` (None to drop an optional one).
    Returns:
        (DatasetDict, DataReport)
    """
    files = dict(data_files or {})
    for split, path in (("train", train_file), ("validation", validation_file), ("test", test_file)):
        if path is not None:
            files[split] = path
    if not files:
        raise HCAMDataError("No manifest given: pass train_file/validation_file/test_file (or data_files)")
    report = DataReport(dataset=dataset_name)
    rows_by_split, problems, has_text, has_audio = {}, [], True, False
    for split, path in files.items():
        rows, found, traits = read_manifest_file(path, split, report, **column_names)
        rows_by_split[split] = rows
        problems.extend(found)
        has_text &= traits["has_text"]
        has_audio |= traits["has_audio"]
    return build_dataset_dict(
        rows_by_split, report, skip_bad=skip_bad, what="the manifest", problems=problems, label_names=label_names,
        require_text=has_text, require_audio=has_audio if require_audio is None else require_audio,
        require_label=column_names.get("label_column", "label") is not None,
    ), report


def manifest_files(folder) -> dict[str, Path]:
    """The train/validation/test manifests of a folder (validation also as dev/valid; .csv, .tsv or .jsonl)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise HCAMDataError(f"--data_dir {folder} is not a folder")
    found = {}
    for split, names in SPLIT_NAMES.items():
        path = next((folder / f"{stem}{ext}" for stem in names for ext in (".csv", ".tsv", ".jsonl")
                     if (folder / f"{stem}{ext}").is_file()), None)
        if path is not None:
            found[split] = path
    if not found:
        raise HCAMDataError(f"No train/validation/test .csv/.tsv/.jsonl manifest in {folder}")
    return found


def read_manifest_corpus(data_dir=None, *, setting=None, audio: bool | None = None, skip_bad: bool = True,
                         train_file=None, validation_file=None, test_file=None, label_names=None, **column_names):
    """The registry's reader for manifests (and the demo corpus): explicit files, else the manifests of `data_dir`.

    `setting` is unused (a manifest's labels are its own); `audio=False` reads text only."""
    files = {split: path for split, path in (("train", train_file), ("validation", validation_file),
                                             ("test", test_file)) if path}
    if not files:
        files = manifest_files(data_dir)
    if audio is False:
        column_names["audio_column"] = None
    return read_manifest(data_files=files, label_names=label_names, skip_bad=skip_bad,
                         require_audio=True if audio else None, **column_names)
