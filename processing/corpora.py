"""The corpus registry: everything hcam knows about one dataset, in one entry.

A :class:`Corpus` holds the reader, the label settings (label names in id order, the first setting is the
default), the split protocol, the reader's options, and the words the data report and the model card use.
`run_stage.py`, `hcam-data-check`, the demo and the card read corpora only through :func:`get_corpus`, so
nothing else spells a dataset's name. Adding a corpus = one reader file + one entry in :data:`CORPORA`. The label
settings themselves (names, label lists, the rules from raw annotations) are ``labels.py``'s; this module imports
them, never the other way round.

How `--dataset_name` is resolved (:func:`get_corpus`): a registry name first (iemocap, meld, mosi, demo, manifest,
any case), then an existing local folder written by `datasets`' ``save_to_disk``, then a Hub dataset id
(``namespace/name``, read with ``load_dataset``); anything else is an error naming the three. A 🤗 dataset is read
by ``hf_datasets.read_hf_dataset``: its columns are mapped onto the schema by the same ``--*_column_name`` flags as
manifests, ``--dataset_config_name`` is its config and ``--dataset_revision`` its branch, tag or commit.

Reader options become command-line flags generically (:class:`CorpusArguments`, shared by `run_stage.py` and
`hcam-data-check`): every option of every corpus is one flag, and a flag given to a corpus that does not take it
is refused.

A corpus whose release has no validation split (IEMOCAP, a manifest with only train and test files) gets one
carved from its training dialogues (`--validation_fraction`, by dialogue, the same on every run and machine);
the report, the log and the card say so. Checkpoints are never selected on test.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .labels import DEMO_LABELS, DEMO_SETTINGS, IEMOCAP_SETTINGS, MELD_SETTINGS, MOSI_SETTINGS

# Share of the training dialogues held out for validation when a release has no validation split: 10% is
# what most IEMOCAP papers that report a validation split use, and leaves ~80 IEMOCAP dialogues for training.
DEFAULT_VALIDATION_FRACTION = 0.1


@dataclass(frozen=True)
class ReaderOption:
    """One reader option, exposed as the flag `--<name>` (same name in run_stage.py and hcam-data-check).

    Args:
        name: the flag and `CorpusArguments` field name.
        type: int, float, str or bool.
        help: what it does (the flag's help).
        reader_key: the reader's keyword argument, when it differs from `name`.
    """

    name: str
    type: type
    help: str
    reader_key: str | None = None


@dataclass(frozen=True)
class Corpus:
    """One dataset as hcam knows it.

    Args:
        name: the `--dataset_name`.
        display_name: the corpus's name on the card and in reports (e.g. "CMU-MOSI").
        reader: "module:function" of the reader in `hcam.processing`, imported when used. The reader takes the
            canonical `setting` and its `label_names` (worked out here by `load_hcam_dataset`: readers look nothing
            up), `audio`, `skip_bad`, the corpus's options, and `data_dir` (a release), the manifests (`reads_files`)
            or `source` (a 🤗 dataset); it returns (DatasetDict, DataReport).
        settings: setting name -> label names in id order; the first setting is the default.
        aliases: other spellings of the settings (e.g. "4-class" -> "4class").
        options: the reader's options (flags).
        protocol: options -> the split protocol in words (e.g. "sessions 1-4 train, session 5 test").
        literature: which published numbers the protocol corresponds to (README and card).
        nature: what the recordings are, for the card's limitations ("is acted: ...").
        language: language code of the corpus, None when unknown.
        hub_dataset_id: the corpus on the Hub, for the card's metadata (None: not named).
        labels_note: where the labels come from, for the card's limitations (None: human annotators, the generic
            caution about their disagreement).
        default_data_dir: where the corpus lives when `--data_dir` is not given (None: `--data_dir` needed).
        source: a 🤗 dataset (Hub id or ``save_to_disk`` folder) read whole, without `--data_dir` or manifests; its
            setting is the dataset's config name (None: a release or manifests with the settings above).
        reads_files: the reader takes `--train_file/--validation_file/--test_file` manifests.
        fixed_labels: whether the label set is the corpus's own (False: taken from the training split).
        folds: the values of its `fold` option that make up its cross-validation (empty: no folds).
    """

    name: str
    display_name: str
    reader: str
    settings: Mapping[str, list[str]] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    options: tuple[ReaderOption, ...] = ()
    protocol: Callable[[Mapping[str, Any]], str] = lambda options: "the release's splits"
    literature: str = ""
    nature: str = "may be acted or collected in particular conditions: check how it was recorded."
    language: str | None = None
    hub_dataset_id: str | None = None
    labels_note: str | None = None
    default_data_dir: Callable[[], Path | None] = lambda: None
    source: str | None = None
    reads_files: bool = False
    fixed_labels: bool = True
    folds: tuple[int, ...] = ()

    # -- settings and labels ----------------------------------------------------------------------------------
    @property
    def default_setting(self) -> str | None:
        return next(iter(self.settings), None)

    def canonical_setting(self, setting: str | None) -> str | None:
        """The setting's canonical name ("4-class" -> "4class"); None -> the default; unknown -> ValueError. A 🤗
        dataset's setting is its config name, passed on as given."""
        if self.source is not None:
            return setting
        if not self.settings:
            if setting is not None:
                raise ValueError(f"{self.name} has no label settings; drop --dataset_config_name {setting!r}")
            return None
        if setting is None:
            return self.default_setting
        key = str(setting).lower()
        key = self.aliases.get(key, key)
        if key not in self.settings:
            known = sorted(set(self.settings) | set(self.aliases))
            raise ValueError(f"Unknown setting {setting!r} for {self.name}; use one of {known}")
        return key

    def label_names(self, setting: str | None = None) -> list[str] | None:
        """Label names in id order for a setting; None when the labels come from the data (manifests)."""
        if not self.fixed_labels:
            return None
        return list(self.settings[self.canonical_setting(setting)])

    # -- options ----------------------------------------------------------------------------------------------
    def reader_kwargs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The reader's keyword arguments from option values (None = the reader's default). An option of another
        corpus that is set is an error naming the corpora that take it."""
        own = {option.name: option for option in self.options}
        kwargs = {}
        for name, value in values.items():
            if value is None:
                continue
            if name not in own:
                takers = [c.name for c in (*CORPORA.values(), HF_DATASET) if any(o.name == name for o in c.options)]
                raise ValueError(f"--{name} applies to {', '.join(takers) or 'no corpus'}, not to "
                                 f"--dataset_name {self.name}; drop it")
            kwargs[own[name].reader_key or name] = value
        return kwargs

    def read(self, **kwargs):
        import importlib

        module, function = self.reader.split(":")
        return getattr(importlib.import_module(module, __package__), function)(**kwargs)


# ----- the corpora ---------------------------------------------------------------------------------------------
def _iemocap_protocol(options):
    test = options.get("fold") or 5
    train = ", ".join(str(s) for s in range(1, 6) if s != test)
    rule = (f"leave-one-session-out fold {test}" if options.get("fold") else "the usual split")
    return f"{rule}: sessions {train} train, session {test} test"


def _shipped_demo_dir() -> Path | None:
    """The demo corpus in a source checkout (`<repo>/data/demo`) or where $HCAM_DEMO_DIR points."""
    candidates = [os.environ.get("HCAM_DEMO_DIR"), Path(__file__).resolve().parent.parent / "data" / "demo"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train.csv").is_file():
            return Path(candidate)
    return None


MANIFEST_COLUMNS = tuple(
    ReaderOption(f"{column}_column", str, f"manifests and 🤗 datasets: the column holding the {column} "
                                          f"(default {column!r})")
    for column in ("dialogue_id", "turn", "speaker", "text", "audio", "label")
)

CORPORA: dict[str, Corpus] = {}


def register(corpus: Corpus) -> Corpus:
    CORPORA[corpus.name] = corpus
    return corpus


register(Corpus(
    name="iemocap",
    display_name="IEMOCAP",
    reader=".iemocap:read_iemocap",
    settings=IEMOCAP_SETTINGS,
    aliases={"6-class": "6class", "6": "6class", "4-class": "4class", "4": "4class"},
    options=(ReaderOption("fold", int, "IEMOCAP: leave-one-session-out fold, 1..5 = the session used as test "
                                       "(default: sessions 1-4 train, 5 test)"),),
    protocol=_iemocap_protocol,
    literature=("6-class weighted F1 on session 5 is what HCAM (70.5) and most ERC papers report; 4-class "
                "(excited merged into happy) is the speech-emotion convention (HCAM: 85.9); many papers instead "
                "report the mean over the five leave-one-session-out folds (trainer/run_cv.py)."),
    nature="is acted: ten actors in scripted and improvised dyadic sessions recorded in a studio.",
    language="en",
    folds=(1, 2, 3, 4, 5),
))
register(Corpus(
    name="meld",
    display_name="MELD",
    reader=".meld:read_meld",
    settings=MELD_SETTINGS,
    aliases={"7class": "emotion", "3class": "sentiment"},
    options=(
        ReaderOption("audio_cache_dir", str, "MELD: where the clips' audio is extracted once, as 16 kHz wavs "
                                             "(default $HCAM_CACHE/meld, else $HF_HOME/hcam/meld)", reader_key="cache_dir"),
        ReaderOption("preprocessing_num_workers", int, "MELD: processes extracting the clips' audio (default 2)",
                     reader_key="num_workers"),
        ReaderOption("normalize_text", bool, "MELD: repair mojibake and map typographic punctuation to ASCII "
                                             "(default true)"),
    ),
    protocol=lambda options: "the official train/dev/test splits (dev is the validation split)",
    literature="7-emotion weighted F1 on the official test split is what HCAM (65.8) and MELD papers report.",
    nature="comes from the TV series Friends: scripted, acted dialogue with laughter tracks and overlapping speech.",
    language="en",
))
register(Corpus(
    name="mosi",
    display_name="CMU-MOSI",
    reader=".mosi:read_mosi",
    settings=MOSI_SETTINGS,
    aliases={"2class": "binary", "7-class": "7class"},
    options=(
        ReaderOption("label_file", str, "CMU-MOSI: the label CSV (default: label.csv, labels.csv or "
                                        "mosi_labels.csv in --data_dir)"),
        ReaderOption("split_column", str, "CMU-MOSI: split by this column of the label file instead of the "
                                          "standard folds"),
    ),
    protocol=lambda options: (f"splits from the label file's {options['split_column']!r} column"
                              if options.get("split_column") else
                              "CMU-MultimodalSDK's standard folds (52/10/31 videos train/validation/test)"),
    literature=("binary accuracy/weighted F1 on the standard test fold is what HCAM (85.8) reports; 'binary' counts "
                "a score of 0 as non-negative, 'binary_nonzero' drops it (papers differ: say which)."),
    nature="holds opinion monologues from YouTube videos, one speaker at a time, not conversations.",
    language="en",
))
register(Corpus(
    name="demo",
    display_name="hcam demo corpus",
    reader=".manifest:read_manifest_corpus",
    settings=DEMO_SETTINGS,
    options=(),
    protocol=lambda options: "the shipped train/validation/test split (90/60/60 dialogues)",
    literature="synthetic: no published numbers; it shows every stage working offline.",
    nature="is synthetic: espeak-ng voices reading template sentences, with emotion rendered by pitch and rate.",
    labels_note=("**Labels are given by construction.** The demo corpus is generated: each utterance was synthesised "
                 "for its label, nothing was recorded from people or annotated. Its scores show the training and "
                 "inference working end to end; they say nothing about recognising emotions in real speech."),
    language="en",
    default_data_dir=_shipped_demo_dir,
    reads_files=True,
))
register(Corpus(
    name="manifest",
    display_name="custom manifests",
    reader=".manifest:read_manifest_corpus",
    options=MANIFEST_COLUMNS,
    protocol=lambda options: "the manifests' own splits",
    reads_files=True,
    fixed_labels=False,
))


# A 🤗 dataset: what every one shares. `get_corpus` makes one entry per Hub id or folder from this template.
DATASET_REVISION = ReaderOption("dataset_revision", str, "A Hub dataset (--dataset_name namespace/name): the "
                                "branch, tag or commit to read (default: main)", reader_key="revision")
HF_DATASET = Corpus(
    name="<Hub dataset id or save_to_disk folder>",
    display_name="a 🤗 dataset",
    reader=".hf_datasets:read_hf_dataset",
    options=(*MANIFEST_COLUMNS, DATASET_REVISION),
    fixed_labels=False,
)


def get_corpus(name: str | None) -> Corpus:
    """The corpus `--dataset_name` names (None = "manifest"): a registry entry first, then a local folder written by
    `datasets`' ``save_to_disk``, then a Hub dataset id (namespace/name). ValueError when none matches."""
    name = name or "manifest"
    if name.lower() in CORPORA:
        return CORPORA[name.lower()]
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / marker).is_file() for marker in ("dataset_dict.json", "state.json")):
            raise ValueError(
                f"{name} is a folder, but not one written by datasets' save_to_disk (no dataset_dict.json or "
                f"state.json). Manifests: --dataset_name manifest --data_dir {name}; a corpus release: --dataset_name "
                f"{{{','.join(c for c in CORPORA if not CORPORA[c].reads_files)}}} --data_dir {name}")
        # named by its absolute path: the stage marker records it, and a card written from another folder finds it
        return _hf_dataset(str(path.resolve()), path.name, source=str(path.resolve()), where=f"the folder {name}")
    if _is_hub_id(name):
        return _hf_dataset(name, name, source=name, where=f"the Hub dataset {name}", hub_dataset_id=name)
    close = difflib.get_close_matches(name.lower(), CORPORA, n=1)
    raise ValueError(f"Unknown dataset {name!r}: not a built-in corpus ({', '.join(sorted(CORPORA))}), not an existing "
                     "folder written by datasets' save_to_disk, and not a Hub dataset id (namespace/name)"
                     + (f"; did you mean {close[0]}?" if close else ""))


def _is_hub_id(name: str) -> bool:
    """namespace/name, valid by huggingface_hub's own rule."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return name.count("/") == 1


def _hf_dataset(name, display_name, *, source, where, hub_dataset_id=None) -> Corpus:
    def protocol(options):
        revision = options.get("dataset_revision")
        return f"the splits of {where}" + (f" at revision {revision}" if revision else "")

    return dataclasses.replace(HF_DATASET, name=name, display_name=display_name, source=source, protocol=protocol,
                               hub_dataset_id=hub_dataset_id)


def all_options() -> list[ReaderOption]:
    """Every corpus's options, each name once (corpora that share an option share its meaning)."""
    found: dict[str, ReaderOption] = {}
    for corpus in (*CORPORA.values(), HF_DATASET):
        for option in corpus.options:
            found.setdefault(option.name, option)
    return list(found.values())


def _corpus_arguments():
    base = [
        ("dataset_name", str | None, field(default=None, metadata={"help": (
            f"A built-in corpus ({', '.join(CORPORA)}; hcam.processing.corpora), else a folder written by "
            "datasets' save_to_disk, else a Hub dataset id (namespace/name, read with load_dataset; its columns "
            "mapped by the --*_column_name flags); none = manifests.")})),
        ("data_dir", str | None, field(default=None, metadata={"help": "Folder of the corpus release, or of "
                                                               "train/validation/test manifests."})),
        ("dataset_config", str | None, field(default=None, metadata={"help": "Label setting, e.g. IEMOCAP "
                                             "6class/4class, MELD emotion/sentiment, MOSI binary/binary_nonzero/7class; "
                                             "for a Hub dataset, its config name."})),
        ("train_file", str | None, field(default=None, metadata={"help": "Manifest (csv/tsv/jsonl) of the train split."})),
        ("validation_file", str | None, field(default=None, metadata={"help": "Manifest of the validation split."})),
        ("test_file", str | None, field(default=None, metadata={"help": "Manifest of the test split."})),
        ("validation_fraction", float | None, field(default=None, metadata={"help": (
            "When the corpus has no validation split (IEMOCAP, manifests without one): the share of training "
            f"dialogues held out for validation, by dialogue (default {DEFAULT_VALIDATION_FRACTION}).")})),
        ("skip_bad", bool, field(default=True, metadata={"help": "Leave bad items (corrupt/silent/missing audio, "
                                 "empty text, unknown labels) out and list them in data_report.json; false = stop "
                                 "with one error listing them."})),
    ]
    options = [(o.name, o.type | None, field(default=None, metadata={"help": o.help})) for o in all_options()]
    cls = dataclasses.make_dataclass("CorpusArguments", base + options)
    cls.__module__ = __name__
    cls.__doc__ = ("Which corpus to read and how: `--dataset_name`, its folder or manifests, its label setting, "
                   "and every reader option of the registry as a flag.")
    return cls


def corpus_kwargs(arguments) -> dict[str, Any]:
    """`load_hcam_dataset` keyword arguments from a `CorpusArguments` (or any object with some of its fields)."""
    names = [f.name for f in dataclasses.fields(CorpusArguments)]
    values = {name: getattr(arguments, name, None) for name in names}
    values["skip_bad"] = values["skip_bad"] is not False
    values["name"] = values.pop("dataset_name")
    values["setting"] = values.pop("dataset_config")
    return values


CorpusArguments = _corpus_arguments()

__all__ = ["Corpus", "ReaderOption", "CORPORA", "CorpusArguments", "get_corpus", "register", "all_options", "corpus_kwargs",
           "DEFAULT_VALIDATION_FRACTION", "DEMO_LABELS", "HF_DATASET"]
