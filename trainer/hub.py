"""The Hub side of a finished stage: pipeline files, model card, confusion-matrix picture, push.

`finalize_stage_folder` runs in `run_stage.py` after the best checkpoint is in the output folder and before the stage
marker is written, so a finished folder always holds the card (README.md), confusion_matrix.png and the pipeline
(`pipeline("emotion-recognition-in-conversation", model=folder, trust_remote_code=True)`).
`push_finished_stage` pushes a finished folder to branch `stage1-audio` … `stage3` of a Hub repo (stage 3 to main
too). Everything the card says is read back from the folder (all_results.json, test/eval_report.json, config.json)
and the stage marker, so a push retried by rerunning the command builds the same card from the same numbers.
"""

import dataclasses
import logging
import os
import shlex
import sys

from hcam.hub_cards.card import HCAMCardData, build_model_card, render_confusion_matrix_png
from hcam.modeling_hcam.pipeline_hcam import add_pipeline_to_folder
from hcam.processing.corpora import get_corpus
from hcam.trainer.stage_folder import (
    CARD,
    CONFIG,
    DATA_REPORT,
    CONFUSION_PNG,
    PUSH_RECORD,
    RESULTS,
    StageFolder,
    read_json,
    report_file,
    write_atomic,
)

logger = logging.getLogger("hcam.trainer.hub")


HEAD_TITLES = {
    "audio_utterance": "Stage I audio (utterance)",
    "text_utterance": "Stage I text (utterance)",
    "audio_context": "Stage II audio (dialogue context)",
    "text_context": "Stage II text (dialogue context)",
    "fusion": "Stage III (co-attention fusion)",
    "ensemble": "Ensemble of the stages (the model's output)",
}
HEAD_ORDER = list(HEAD_TITLES)

# TrainingArguments (and our additions) that decide the result; the rest (logging, paths, ...) stays out of the card.
TRAINING_KEYS = (
    "learning_rate", "encoder_learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "per_device_eval_batch_size", "optim", "lr_scheduler_type", "warmup_steps",
    "weight_decay", "max_grad_norm", "early_stopping_patience", "metric_for_best_model", "class_weighting",
    "seed", "bf16", "fp16",
)
CONFIG_KEYS = (
    "gru_hidden_size", "num_attention_heads", "fusion_hidden_size", "dropout", "supcon_weight", "supcon_temperature",
    "focal_gamma", "class_weights", "use_speaker_masks", "max_audio_seconds", "max_text_tokens", "ensemble_stages",
    "context",
)


# ----- what the card says -----------------------------------------------------------------------------------------
SECRET_FLAGS = ("--hub_token", "--token")  # never written into a card, a marker or a log


def _redact(words):
    out, hide_next = [], False
    for word in words:
        if hide_next:
            out.append("<HUB_TOKEN>")
            hide_next = False
        elif word in SECRET_FLAGS:
            out.append(word)
            hide_next = True
        elif word.startswith(tuple(flag + "=" for flag in SECRET_FLAGS)):
            out.append(word.split("=", 1)[0] + "=<HUB_TOKEN>")
        else:
            out.append(word)
    return out


def _launcher_words():
    """The launcher's command (torchrun / accelerate launch / python -m torch.distributed.run) when this process
    was started by one: the parent process's command line, if it names this script."""
    launched = any(k in os.environ for k in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID")) or any(
        k.startswith("ACCELERATE_") for k in os.environ)
    if not launched:
        return None
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            words = [w.decode(errors="replace") for w in f.read().split(b"\0") if w]
    except OSError:
        return None
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "run_stage.py"
    if not any(os.path.basename(w) == script for w in words):
        return None
    # "/venv/bin/python /venv/bin/torchrun ..." -> "torchrun ..."; "/venv/bin/python -m x" -> "python -m x"
    if len(words) > 1 and os.path.basename(words[0]).startswith("python"):
        if words[1].startswith("-"):
            return ["python", *words[1:]]
        return [os.path.basename(words[1]), *words[2:]]
    return [os.path.basename(words[0]), *words[1:]]


def command_line(argv=None):
    """The command that ran this stage, launcher included, with --hub_token and --token hidden.

    `argv` is what `run_stage.main` was given (None = the process's own command line)."""
    if argv is None:
        words = _launcher_words() or ["python", *sys.argv]
    else:
        words = ["python", "trainer/run_stage.py", *argv]
    return shlex.join(_redact(words))


def describe_data(marker, labels):
    """What the card says about the data, from the stage marker and the corpus registry.

    Returns (corpus, setting phrase, bullet lines: protocol, split sizes, data problems, comparable numbers)."""
    data = marker.get("data") or {}
    try:
        corpus = get_corpus(data.get("corpus") or None)
    except ValueError:  # a save_to_disk folder moved or deleted since the stage trained: named as it was recorded
        corpus = dataclasses.replace(get_corpus(None), display_name=os.path.basename(str(data["corpus"]).rstrip("/")))
    setting = data.get("setting")
    phrase = ", ".join(([setting] if setting else []) + [f"{len(labels)} labels"])
    lines = []
    if data.get("protocol"):
        lines.append(f"**Splits:** {data['protocol']}; checkpoints selected on validation only")
    if data.get("splits"):
        sizes = ", ".join(f"{split} {n['dialogues']} dialogues / {n['utterances']} utterances"
                          for split, n in data["splits"].items())
        limits = data.get("limits") or {}
        limited = " (limited by " + ", ".join(f"--{k} {v}" for k, v in limits.items()) + ")" if limits else ""
        lines.append(f"**Split sizes:** {sizes}{limited}")
    if "problems" in data:
        kinds = ", ".join(f"{kind}: {n}" for kind, n in (data.get("problem_kinds") or {}).items())
        lines.append(f"**Data problems:** {data['problems']} found, {data.get('skipped', 0)} items skipped"
                     + (f" ({kinds})" if kinds else "") + f"; listed in `{data.get('report_file', DATA_REPORT)}`")
    if corpus.literature:
        lines.append(f"**Comparable numbers:** {corpus.literature}")
    return corpus, phrase, lines


def stage_table(results, heads):
    """One row per head of the model (each stage alone) and the ensemble, on test and validation."""
    rows = []
    for head in sorted(heads, key=lambda h: HEAD_ORDER.index(h) if h in HEAD_ORDER else len(HEAD_ORDER)):
        row = {"name": HEAD_TITLES.get(head, head)}
        for prefix, split in (("test", "Test"), ("eval", "Validation")):
            for metric, title in (("weighted_f1", "weighted F1"), ("accuracy", "accuracy"), ("macro_f1", "macro F1")):
                key = f"{prefix}_{head}_{metric}"
                if key in results and not (prefix == "eval" and metric != "weighted_f1"):
                    row[f"{split} {title}"] = results[key]
        rows.append(row)
    return rows


def per_class_scores(head_report, labels, support):
    """Precision/recall from the confusion matrix (rows = true), F1 as the metric computed it, support."""
    matrix = head_report["confusion_matrix"]
    scores = {}
    for i, label in enumerate(labels):
        predicted = sum(row[i] for row in matrix)
        scores[label] = {
            "precision": matrix[i][i] / predicted if predicted else 0.0,
            "recall": matrix[i][i] / support[i] if support[i] else 0.0,
            "f1": head_report["per_class_f1"][label],
            "support": int(support[i]),
        }
    return scores


def hyperparameters(marker, config):
    training = marker.get("training_arguments", {})
    values = {}
    for key in TRAINING_KEYS:
        value = training.get(key)
        if value is None or (key == "max_steps" and value <= 0) or (key == "encoder_learning_rate" and marker["stage"] != 1):
            continue  # stages 2 and 3 train no encoder
        values[key] = value
    if marker.get("num_processes"):
        values["num_processes"] = marker["num_processes"]
        values["effective_train_batch_size"] = (
            training.get("per_device_train_batch_size", 0) * training.get("gradient_accumulation_steps", 1)
            * marker["num_processes"]
        )
    for key in CONFIG_KEYS:
        value = config.get(key)
        if value is not None:
            values[f"config.{key}"] = value
    return values


def build_stage_card(folder, marker, repo_id, revision=None, revisions=None):
    """The model card of a stage folder (README.md content), from its files and its stage marker.

    Returns (card, confusion matrix, labels)."""
    config, results = read_json(folder, CONFIG), read_json(folder, RESULTS)
    split_prefix = "test" if os.path.isfile(os.path.join(folder, report_file("test"))) else "eval"
    report = read_json(folder, report_file(split_prefix))
    labels = report["labels"]
    stage = StageFolder(folder, marker).stage
    selected = stage.primary_head
    head = "ensemble" if "ensemble" in report["heads"] else selected  # what the model outputs leads the card
    matrix = report["heads"][head]["confusion_matrix"]
    corpus, setting, data_lines = describe_data(marker, labels)
    # Hub ids only: the card lists a local encoder folder from the config already
    base_models = [marker.get(k) for k in ("audio_encoder", "text_encoder")
                   if marker.get(k) and not os.path.isabs(marker[k]) and not os.path.isdir(marker[k])]
    card = build_model_card(HCAMCardData(
        config,
        results,
        stage_table=stage_table(results, report["heads"]),
        per_class=per_class_scores(report["heads"][head], labels, report["support"]),
        confusion_matrix=matrix,
        labels=labels,
        setting=setting,
        command=marker.get("command") or "(not recorded)",
        hyperparameters=hyperparameters(marker, config),
        dataset_name=corpus.display_name,
        dataset_id=corpus.hub_dataset_id,
        dataset_config=(marker.get("data") or {}).get("setting"),
        language=corpus.language,
        dataset_nature=corpus.nature,
        data_lines=data_lines,
        repo_id=repo_id,
        base_models=base_models,
        revision=revision,
        revisions=revisions,
        confusion_matrix_file=CONFUSION_PNG,
        confusion_matrix_split="test" if split_prefix == "test" else "validation",
        transcripts="the corpus's reference transcripts (not ASR output)",
        extra_tags=[stage.tag],
        reported_head="ensemble" if head == "ensemble" else None,
        selected_head=HEAD_TITLES.get(selected, selected),
        labels_note=corpus.labels_note,
    ))
    return card, matrix, labels


def write_stage_card(folder, marker, repo_id, revision=None, revisions=None):
    """Write README.md (our card, replacing anything else's) and confusion_matrix.png into `folder`."""
    card, matrix, labels = build_stage_card(folder, marker, repo_id, revision=revision, revisions=revisions)
    render_confusion_matrix_png(matrix, labels, os.path.join(folder, CONFUSION_PNG))
    write_atomic(os.path.join(folder, CARD), str(card))
    return card


def finalize_stage_folder(folder, marker, hub_model_id=None):
    """Called once the best model, processor, all_results.json and the reports are in `folder` (main process only).

    The card's usage snippet names `hub_model_id` when given, else the folder itself (it loads from there)."""
    add_pipeline_to_folder(folder)
    tag = StageFolder(folder, marker).stage.tag
    write_stage_card(folder, marker, hub_model_id or folder, revision=tag if hub_model_id else None)


# ----- the push -----------------------------------------------------------------------------------------------------
def read_push_record(folder):
    return read_json(folder, PUSH_RECORD)


def earlier_revisions(marker, repo_id):
    """stage tag -> revision of the earlier stages of this run that were pushed to `repo_id` (oldest first)."""
    found = {}
    for folder in marker.get("init_from") or []:
        earlier = StageFolder.find(folder)
        if earlier is None:  # moved or deleted since: its revision is not listed
            continue
        found.update(earlier_revisions(earlier.marker, repo_id))
        record = read_push_record(folder)
        if record and record.get("repo_id") == repo_id:
            found[record["revision"]] = record["revision"]
    return found


def _still_there(repo_id, revision, token, endpoint):
    """Whether the branch still holds the weights (the repo may have been deleted since the recorded push)."""
    from huggingface_hub import HfApi

    try:
        return "model.safetensors" in HfApi(endpoint=endpoint, token=token).list_repo_files(repo_id, revision=revision)
    except Exception:  # unreachable, missing repo or branch: push again
        return False


def push_finished_stage(folder, marker, hub_model_id, *, token=None, private=False, endpoint=None):
    """Push a finished stage folder to branch `stage…` of `hub_model_id` (stage 3: main too) with its card.

    The card is rebuilt for the repo (usage snippet, revisions) and written to the folder's README.md first, so the
    folder holds exactly what was pushed. A push already recorded for this repo and branch is not repeated.
    A failure raises; the folder is left complete, and rerunning the same command retries the push only."""
    from hcam.hub_cards.push import push_stage

    tag = StageFolder(folder, marker).stage.tag
    also_main = marker["stage"] == 3
    record = read_push_record(folder)
    if record and record.get("repo_id") == hub_model_id and record.get("revision") == tag and _still_there(
            hub_model_id, tag, token, endpoint):
        logger.info("%s was already pushed to %s@%s (%s): nothing to push (delete %s to push again).",
                    folder, hub_model_id, tag, record.get("commit_url"), PUSH_RECORD)
        return record
    revisions = {**dict(sorted(earlier_revisions(marker, hub_model_id).items())), tag: tag}
    if also_main:
        revisions["final model"] = "main"
    card = write_stage_card(folder, marker, hub_model_id, revision=None if also_main else tag, revisions=revisions)
    url = push_stage(folder, hub_model_id, tag, card=card, token=token, endpoint=endpoint, also_main=also_main,
                     private=private)
    record = {"repo_id": hub_model_id, "revision": tag, "also_main": also_main, "commit_url": url,
              "endpoint": endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"}
    write_atomic(os.path.join(folder, PUSH_RECORD), record)
    logger.info("Pushed %s to %s@%s%s: %s", folder, hub_model_id, tag, " and main" if also_main else "", url)
    return record
