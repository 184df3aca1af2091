#!/usr/bin/env python
"""Train one HCAM stage.

    accelerate launch trainer/run_stage.py --stage 1 --modality text --dataset_name demo --output_dir outputs/demo/stage1-text
    python trainer/run_stage.py --stage 2 --modality text --init_from outputs/demo/stage1-text --dataset_name demo \\
        --output_dir outputs/demo/stage2-text
    torchrun --nproc_per_node 2 trainer/run_stage.py --stage 3 --init_from outputs/demo/stage2-audio \\
        outputs/demo/stage2-text --dataset_name demo --output_dir outputs/demo/stage3 --use_cpu

    python trainer/run_stage.py --stage 3 --joint_training --dataset_name demo --output_dir outputs/demo/joint

(the last: every stage at once, end to end from the encoders, without the hierarchy: an ablation, hcam.trainer.joint;
`--stage 2 --modality text --joint_training` does the same for one modality's stages I and II)

Every TrainingArguments flag works; with none, each stage uses its own defaults (trainer/stages.py), which
`--stage N --modality M --help` prints; the log and hcam_stage.json say which layer set each value.
`--recipe trainer/recipes/<name>.json` reads a recipe, and flags override it. Boolean options work bare or with a
value, and transformers' example names are the flags (hcam.processing.cli). `--do_predict` (test) and/or `--do_eval`
(validation) without `--do_train` evaluate the finished stage in --output_dir on the data the flags name, into
<output_dir>/evaluation/. A data or argument error prints its message and exits with status 2 (HCAM_DEBUG=1: the
traceback).

The output folder ends with the best checkpoint by validation weighted F1 (config, model.safetensors, processor,
the .py bundle: loads with AutoModel/AutoProcessor and trust_remote_code=True), all_results.json (eval_* and test_*),
eval_report.json/test_report.json (per-class F1 and confusion matrix per head) and hcam_stage.json, written last:
a folder without it is an unfinished stage. Rerunning the same command resumes from the last checkpoint.
The folder also holds the pipeline files (`pipeline("emotion-recognition-in-conversation", model=folder,
trust_remote_code=True)`), the model card README.md and confusion_matrix.png (hcam.trainer.hub).

`--push_to_hub --hub_model_id ORG/NAME` (with --hub_token, --hub_private_repo; HF_ENDPOINT from the environment) pushes
the finished stage to branch stage1-audio/stage1-text/stage2-audio/stage2-text/stage3 of that repo, stage 3 to main
too. The Trainer itself never pushes. If the push fails, the stage stays finished: rerun the same command to retry
the push only.

A run holds a lock on its output folder (hcam.trainer.run_lock): a second run on the same folder stops at once, naming
the first (process id and host); the lock of a killed run is taken over with a warning. Stages II and III cache
stage-I embeddings under $HCAM_CACHE (else $HF_HOME/hcam; hcam.processing.cache, `hcam-cache list`), shared by runs in
any folder.
"""

import contextlib
import copy
import logging
import os
import shutil
import sys

import datasets
import numpy as np
import torch
import transformers
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint

from hcam.modeling_hcam import HCAMConfig, HCAMForEmotionRecognition, HCAMProcessor
from hcam.processing.cache import cache_path, disk_full_message, is_disk_full
from hcam.processing.cli import command_errors
from hcam.trainer.arguments import LATER_STAGE_SETTINGS, parse_args
from hcam.trainer.data import (
    DialogueEmbeddingDataset,
    check_labels,
    check_modality_inputs,
    collate_dialogues,
    load_corpus,
    utterance_datasets,
)
from hcam.trainer.cross_fit import stage_embeddings
from hcam.trainer.evaluation import detailed_report
from hcam.trainer.hub import command_line, finalize_stage_folder, push_finished_stage
from hcam.trainer.joint import joint_datasets
from hcam.trainer.run_lock import output_folder_lock
from hcam.trainer.stage_folder import (
    DATA_REPORT,
    EVALUATION_DIR,
    FINAL_DIR,
    MARKER,
    RESULT_FILES,
    StageFolder,
    report_file,
    write_atomic,
)
from hcam.trainer.stages import Stage
from hcam.trainer.trainer import HCAMStageTrainer, build_stage_trainer, remove_folder, remove_leftovers

logger = logging.getLogger("hcam.trainer.run_stage")


class IncompatibleStageError(SystemExit):
    """An --init_from folder that this stage cannot start from (the message says why)."""


# ----- earlier stages ---------------------------------------------------------------------------------------------
def check_init_from(training_args, model_args, label_names, protocol=None):
    """The --init_from folders as `StageFolder`s, opened once and passed on; refuse a folder that is not a finished,
    compatible earlier stage, saying which part differs."""
    stage = Stage(training_args.stage, training_args.modality)
    folders = []
    for folder, want in zip(training_args.init_from, stage.starts_from):
        earlier = StageFolder.find(folder)
        if earlier is None:
            raise IncompatibleStageError(
                f"--init_from {folder}: not a finished HCAM stage ({MARKER} missing). Finish "
                f"{want.tag} there first (rerun its command to resume it)."
            )
        marker = earlier.marker
        if marker["stage"] != want.number:
            raise IncompatibleStageError(
                f"--init_from {folder}: it holds stage {marker['stage']}, stage {stage.number} starts from stage "
                f"{want.number}."
            )
        if marker["modality"] != want.modality:
            raise IncompatibleStageError(
                f"--init_from {folder}: its modality is {marker['modality']}, stage {stage.number} needs {want.modality} "
                + ("(--modality)." if stage.number == 2 else "(pass the audio folder first, then the text folder).")
            )
        earlier_protocol = (marker.get("data") or {}).get("protocol")
        if protocol and earlier_protocol and earlier_protocol != protocol:
            raise IncompatibleStageError(
                f"--init_from {folder}: it was trained on another split ({earlier_protocol}) than this run's "
                f"({protocol}); its training data may hold this run's test dialogues. Use the same --fold / "
                "--validation_fraction / data flags as its stage."
            )
        config = earlier.config
        for given, field, flag in (
            (model_args.audio_encoder, "audio_encoder_name_or_path", "--audio_encoder"),
            (model_args.text_encoder, "text_encoder_name_or_path", "--text_encoder"),
        ):
            if given is not None and want.modality in field and given != getattr(config, field):
                raise IncompatibleStageError(
                    f"--init_from {folder}: its {want.modality} encoder is {getattr(config, field)!r}, but {flag} "
                    f"{given!r} was given. Drop {flag} or retrain stage 1 with it."
                )
        model_labels = [config.id2label[i] for i in range(config.num_labels)]
        if model_labels != list(label_names):
            raise IncompatibleStageError(
                f"--init_from {folder}: its labels {model_labels} differ from this dataset's {list(label_names)}. "
                f"Use the same --dataset_name/--dataset_config_name as its stage 1."
            )
        folders.append(earlier)
    return folders


# ----- models -----------------------------------------------------------------------------------------------------
def config_overrides(model_args, training_args):
    overrides = {k: v for k, v in vars(model_args).items()
                 if v is not None and k not in ("audio_encoder", "text_encoder", "model_revision", "token")}
    for key in ("supcon_weight", "supcon_temperature", "focal_gamma"):
        if getattr(training_args, key) is not None:
            overrides[key] = getattr(training_args, key)
    return overrides


def class_weights(train_split, label_names):
    counts = np.bincount([label_names.index(x) for x in train_split["label"]], minlength=len(label_names)).astype(float)
    weights = counts.sum() / np.maximum(counts, 1) / len(label_names)
    return weights.round(4).tolist()


def build_stage1(model_args, training_args, label_names, modality=None):
    from hcam.processing.encoders import DEFAULT_TEXT_ENCODER, resolve_encoder_path

    modality = modality or training_args.modality
    text_encoder = model_args.text_encoder or DEFAULT_TEXT_ENCODER
    hub = {"revision": model_args.model_revision, "token": model_args.token}  # --model_revision/--token
    text_path = resolve_encoder_path(text_encoder, **hub)
    audio_path = resolve_encoder_path(model_args.audio_encoder, **hub) if model_args.audio_encoder else None
    # stage I is per utterance: --context (a stage-2/3 setting, e.g. from a recipe's common section) does not apply
    overrides = {k: v for k, v in config_overrides(model_args, training_args).items() if k != "context"}
    kwargs = dict(
        modalities=[modality], num_stages=1,
        id2label=dict(enumerate(label_names)), label2id={name: i for i, name in enumerate(label_names)},
        **overrides,
    )
    if modality == "text":
        config = HCAMConfig.from_encoders(text_encoder=text_encoder, text_encoder_path=text_path, **kwargs)
    else:
        config = HCAMConfig.from_encoders(audio_encoder=model_args.audio_encoder, audio_encoder_path=audio_path, **kwargs)
    model = HCAMForEmotionRecognition(config)
    if modality == "text":
        model.load_pretrained_encoders(text_encoder_path=text_path)
    elif model_args.audio_encoder:
        model.load_pretrained_encoders(audio_encoder_path=audio_path)
    feature_kwargs = {}
    if modality == "audio":  # the encoder's own feature-extractor settings (sampling rate, normalisation)
        from hcam.processing.encoders import speech_feature_settings

        feature_kwargs = {"max_duration_seconds": config.max_audio_seconds,
                          **speech_feature_settings(audio_path)}
    processor = HCAMProcessor.from_encoders(text_encoder, text_encoder_path=text_path,
                                            audio=modality == "audio", max_text_tokens=config.max_text_tokens,
                                            **feature_kwargs)
    return model, processor


def build_joint(model_args, training_args, label_names):
    """--joint_training (hcam.trainer.joint): a stage-3 model (or, `--stage 2 --modality M`, a stage-2 model of one
    modality) whose utterance encoders are built as stage 1 builds them, the rest new, nothing frozen."""
    overrides = {k: v for k, v in config_overrides(model_args, training_args).items() if k in LATER_STAGE_SETTINGS}
    if training_args.stage == 2:
        stage1, processor = build_stage1(model_args, training_args, label_names)
        for key, value in {"num_stages": 2, "joint_training": True, **overrides}.items():
            setattr(stage1.config, key, value)
        model = HCAMForEmotionRecognition(stage1.config)  # context encoder new, utterance encoder as stage 1 built it
        model.utterance_encoders.load_state_dict(stage1.utterance_encoders.state_dict())
        return model, processor
    (audio, audio_processor), (text, text_processor) = (
        build_stage1(model_args, training_args, label_names, modality=m) for m in ("audio", "text"))
    model = HCAMForEmotionRecognition.from_unimodal(audio, text, joint_training=True, **overrides)
    return model, combined_processor(audio_processor, text_processor)


def combined_processor(audio_processor, text_processor):
    """A stage-3 processor: the audio processor's feature extractor, the text processor's tokenizer."""
    return type(text_processor)(feature_extractor=audio_processor.feature_extractor,
                                tokenizer=text_processor.tokenizer, max_text_tokens=text_processor.max_text_tokens)




def build_later_stage(model_args, training_args, earlier):
    """A stage-2 or stage-3 model and processor from the `earlier` stage folders (`check_init_from`'s)."""
    stage = training_args.stage
    overrides = {k: v for k, v in config_overrides(model_args, training_args).items() if k in LATER_STAGE_SETTINGS}
    if stage == 3 and "context_self_attention" in overrides:
        raise SystemExit("--context_self_attention is a stage-2 setting: stage 3 keeps its stage-2 folders' choice "
                         "(pass it to both stage-2 runs instead).")
    if stage == 2:
        (folder,) = earlier
        config = copy.deepcopy(folder.config)
        config.num_stages = 2
        for key, value in overrides.items():
            setattr(config, key, value)
        model = folder.load_model(config)
        processor = folder.processor
    else:
        audio_folder, text_folder = earlier
        audio_model, text_model = audio_folder.load_model(), text_folder.load_model()
        directions = {audio_folder.path: audio_model.config.context, text_folder.path: text_model.config.context}
        if len(set(directions.values())) > 1 or overrides.get("context", audio_model.config.context) not in \
                set(directions.values()):
            raise IncompatibleStageError(
                f"--init_from: stage 3 fuses stage-2 models of one direction and keeps it; the stage-2 folders read "
                f"their context {directions}" + (f", and --context {overrides['context']} was given" if "context" in
                                                 overrides else "") + ". Train both stage-2 folders with the same "
                "--context (and drop --context here, or give theirs).")
        for key, value in overrides.items():
            setattr(audio_model.config, key, value)
        model = HCAMForEmotionRecognition.from_unimodal(audio_model, text_model)
        processor = combined_processor(audio_folder.processor, text_folder.processor)
    model.freeze_stages_below(stage)
    return model, processor


# ----- data -------------------------------------------------------------------------------------------------------
def embedding_datasets(model, processor, dataset, training_args, data_args, earlier=()):
    """Stages II/III: each split as dialogues of cached stage-I embeddings (computed once, by the main process);
    cross-fitting trains its fold models with the recipes of the stage-I folders under the `earlier` folders."""
    cache_dir = data_args.embedding_cache_dir or str(cache_path("embeddings"))
    stage1 = {m: folder.stage1_folder(m) for folder in earlier for m in folder.stage.modalities}
    modalities = model.config.modalities
    device = training_args.device
    model.to(device)
    result = {}
    with training_args.main_process_first(desc="stage-I embeddings"):
        for split, rows in dataset.items():
            embeddings = {
                m: stage_embeddings(model, processor, dataset, split, m, cache_dir, training_args, stage1.get(m),
                                    batch_size=training_args.per_device_eval_batch_size * 2, device=device)
                for m in modalities
            }
            result[split] = DialogueEmbeddingDataset(rows, embeddings, model.config.label2id)
    return result


# ----- output -----------------------------------------------------------------------------------------------------
def finish_output(trainer, output_dir, marker, hub_model_id=None):
    """Move the saved best model from the staging folder into output_dir, add the pipeline files, the model card and
    the confusion-matrix picture, write the marker last, drop checkpoints."""
    if not trainer.is_world_process_zero():
        return
    staging = os.path.join(output_dir, FINAL_DIR)
    for name in os.listdir(staging):
        if name == "training_args.bin":  # a pickle; the arguments are in hcam_stage.json
            continue
        os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
    shutil.rmtree(staging, ignore_errors=True)
    finalize_stage_folder(output_dir, marker, hub_model_id)
    StageFolder(output_dir, marker).write_marker()
    for name in os.listdir(output_dir):
        if name.startswith("checkpoint-"):
            remove_folder(os.path.join(output_dir, name))
    remove_leftovers(output_dir)


def push(training_args, output_dir, marker):
    """Push the finished stage with its card (hcam.trainer.hub); a failure leaves the folder finished and says how to
    retry."""
    try:
        push_finished_stage(output_dir, marker, training_args.hub_model_id, token=training_args.hub_token,
                            private=bool(training_args.hub_private_repo), endpoint=os.environ.get("HF_ENDPOINT"))
    except Exception as error:
        logger.exception("Push of %s failed", output_dir)
        raise SystemExit(
            f"The push of {output_dir} to {training_args.hub_model_id} failed ({type(error).__name__}: {error}). "
            f"The stage itself is finished and intact; rerun the same command to retry the push only."
        ) from error


def setup_logging(training_args):
    """Our messages at INFO on the main process by default; --log_level (and --log_level_replica on the other
    processes) sets ours, transformers' and datasets' alike; --disable_tqdm silences every progress bar."""
    if training_args.log_level == "passive":
        level = logging.INFO if training_args.should_log else logging.WARNING
        library_level = logging.WARNING
    else:
        level = library_level = training_args.get_process_log_level()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    logging.getLogger("hcam").setLevel(level)
    transformers.utils.logging.set_verbosity(library_level)
    datasets.utils.logging.set_verbosity(library_level)
    if training_args.disable_tqdm:  # the caches' bars are transformers' tqdm: this switch turns them off too
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def finished_stage(stage, output_dir):
    """The marker of an already finished stage in `output_dir` (None: train it); another stage there is an error."""
    finished = StageFolder.find(output_dir)
    if finished is not None and finished.stage != stage:
        raise IncompatibleStageError(
            f"--output_dir {output_dir} holds a finished {finished.stage.tag}; "
            f"{stage.tag} never overwrites it. Choose another --output_dir."
        )
    return finished


def read_data(stage, data_args, training_args):
    """The corpus for this stage, with its report written to <output_dir>/data_report.json (main process)."""
    # Every stage that reads audio decodes each clip once: a silent clip is skipped in all of them alike.
    dataset, report = load_corpus(data_args, stage.modalities, check_audio="audio" in stage.modalities,
                                  progress=not training_args.disable_tqdm)
    for split in ("train", "validation"):
        if split not in dataset:
            raise SystemExit(f"The corpus has no {split} split: stage training needs train and validation "
                             f"({report.protocol or 'no protocol'}).")
    if training_args.process_index == 0:
        os.makedirs(training_args.output_dir, exist_ok=True)
        report.to_json(os.path.join(training_args.output_dir, DATA_REPORT))
    if report.problems:
        logger.warning("%d data problem(s), %d item(s) skipped: listed in %s", len(report.problems),
                       len(report.skipped), os.path.join(training_args.output_dir, DATA_REPORT))
    logger.info("Protocol: %s", report.protocol)
    return dataset, report


def build_model(stage, model_args, training_args, dataset, label_names, protocol):
    """(model, processor, earlier): the stage's model and processor, and the --init_from folders it was built from
    (`StageFolder`s, opened once; empty for stage 1 and --joint_training)."""
    earlier = []
    if stage.number == 1:
        check_modality_inputs(dataset, stage.modality)
        model, processor = build_stage1(model_args, training_args, label_names)
    elif training_args.joint_training:
        for modality in stage.modalities:
            check_modality_inputs(dataset, modality)
        model, processor = build_joint(model_args, training_args, label_names)
    else:
        earlier = check_init_from(training_args, model_args, label_names, protocol)
        model, processor = build_later_stage(model_args, training_args, earlier)
    check_labels(dataset, model.config.label2id, where=f"{stage.tag} ({training_args.output_dir})")
    if training_args.class_weighting:
        model.config.class_weights = class_weights(dataset["train"], label_names)
    return model, processor, earlier


def stage_datasets(stage, model, processor, dataset, training_args, data_args, earlier=()):
    """(splits, collator): utterance rows for stage 1, dialogues of cached stage-1 embeddings for stages 2-3 (from the
    `earlier` stage folders), raw dialogues for --joint_training."""
    if training_args.joint_training:
        return joint_datasets(dataset, model.config.label2id, processor, model.config.modalities)
    if stage.number == 1:
        return utterance_datasets(model, processor, dataset, training_args)
    return embedding_datasets(model, processor, dataset, training_args, data_args, earlier), collate_dialogues


def train(trainer, stage, training_args):
    """Train, resuming from the last complete checkpoint of an interrupted run of the same command."""
    output_dir = training_args.output_dir
    if trainer.is_world_process_zero():  # what an interrupted run (a kill, a full disk) may have left half written
        remove_leftovers(output_dir)
        for name in RESULT_FILES:  # rewritten by this run; a cut-short one would stop Trainer.save_metrics
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(output_dir, name))
    resume = training_args.resume_from_checkpoint
    if resume is None and os.path.isdir(output_dir):
        resume = get_last_checkpoint(output_dir)
        if resume:
            logger.info("Resuming %s from %s", stage.tag, resume)
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_metrics("train", train_result.metrics)


def evaluate(trainer, splits, label_names):
    """The best checkpoint on validation and test: metrics per head (all_results.json) and detailed reports."""
    results, reports = {}, {}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        if split not in splits:
            continue
        prediction = trainer.predict(splits[split], metric_key_prefix=prefix)
        trainer.log_metrics(prefix, prediction.metrics)
        trainer.save_metrics(prefix, prediction.metrics)
        results.update(prediction.metrics)
        reports[prefix] = detailed_report(prediction.predictions, prediction.label_ids, trainer.heads, label_names)
    if trainer.is_world_process_zero():
        for prefix, report in reports.items():
            write_atomic(os.path.join(trainer.args.output_dir, report_file(prefix)), report)
    return results


def data_description(report, dataset, data_args):
    """What the card and later stages need to know of the data: corpus, setting, protocol, split sizes, problems."""
    limits = {k: getattr(data_args, k) for k in ("max_train_samples", "max_eval_samples") if getattr(data_args, k)}
    return {
        "corpus": report.corpus,
        "setting": report.setting,
        "protocol": report.protocol,
        "splits": {split: {"dialogues": len(set(ds["dialogue_id"])), "utterances": len(ds)}
                   for split, ds in dataset.items()},
        "limits": limits,
        "problems": len(report.problems),
        "skipped": len(report.skipped),
        "problem_kinds": report.problem_counts(),
        "report_file": DATA_REPORT,
    }


def stage_marker(stage, trainer, model, results, report, dataset, model_args, data_args, training_args, argv):
    config = model.config
    return {
        "stage": stage.number,
        "modality": stage.modality,
        "name": stage.tag,
        "init_from": [os.path.abspath(p) for p in training_args.init_from or []],
        "labels": report.labels,
        "modalities": config.modalities,
        "audio_encoder": config.audio_encoder_name_or_path if "audio" in config.modalities else None,
        "text_encoder": config.text_encoder_name_or_path if "text" in config.modalities else None,
        "model_revision": model_args.model_revision,  # of the Hub encoders (cross-fitting retrains from them)
        "dataset": data_args.dataset_name or "manifest",
        "data": data_description(report, dataset, data_args),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_validation_weighted_f1": trainer.state.best_metric,
        "results": {k: v for k, v in results.items() if not k.split("_", 1)[1].startswith("f1_")},
        "training_arguments": training_args.to_dict(),
        "num_processes": training_args.world_size,
        "data_arguments": {k: v for k, v in vars(data_args).items() if v is not None},
        # each value set above the dataclasses' defaults, and its layer: flag, recipe or stage default
        "argument_sources": getattr(training_args, "hcam_value_sources", {}),
        "command": command_line(argv),
    }


def release_processes(trainer):
    """Wait for every process, then end the process group; returns whether this is the main process."""
    trainer.accelerator.wait_for_everyone()
    is_main = trainer.is_world_process_zero()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return is_main


def main(argv=None):
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    # one run per output folder: the main process holds its lock (a second run stops at once, naming the first)
    is_main = training_args.process_index == 0
    with output_folder_lock(training_args.output_dir, enabled=is_main, command=command_line(argv)), \
            stop_on_full_disk(training_args.output_dir, is_main):
        return run(model_args, data_args, training_args, argv)


@contextlib.contextmanager
def stop_on_full_disk(output_dir, is_main=True):
    """A full disk while training or finishing the stage: the half-written checkpoint (.staging) or stage (.final) is
    dropped, the complete checkpoints stay, and the run stops with a message that says so and how to go on."""
    try:
        yield
    except Exception as error:
        path = getattr(error, "filename", None) or output_dir
        if not is_disk_full(error, path):
            raise
        last = None
        if is_main and os.path.isdir(output_dir):
            remove_leftovers(output_dir)
            last = get_last_checkpoint(output_dir)
        then = (f"The last complete checkpoint, {last}, is intact: the rerun resumes from it." if last else
                "No checkpoint was complete yet: the rerun starts the stage again.")
        raise SystemExit(f"{disk_full_message(path, error)} {then}") from error


def evaluate_finished(stage, data_args, training_args, split_names):
    """--do_eval/--do_predict without --do_train: the finished stage in --output_dir on validation and/or test of the
    data the flags name. Results and reports go to <output_dir>/evaluation (the stage's own files, card included,
    are left as its training wrote them); returns the metrics."""
    from datasets import DatasetDict

    output_dir = training_args.output_dir
    finished = finished_stage(stage, output_dir)
    if finished is None:
        raise SystemExit(f"--output_dir {output_dir} holds no finished {stage.tag} ({MARKER} missing): without "
                         "--do_train, --do_eval/--do_predict evaluate a finished stage. Add --do_train to train it.")
    dataset, report = load_corpus(data_args, stage.modalities, check_audio="audio" in stage.modalities,
                                  progress=not training_args.disable_tqdm)
    missing = [split for split in split_names if split not in dataset]
    if missing:
        raise SystemExit(f"The corpus has no {' or '.join(missing)} split to evaluate ({report.protocol}).")
    dataset = DatasetDict({split: dataset[split] for split in split_names})
    model, processor = finished.load_model(), finished.processor
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    check_labels(dataset, model.config.label2id, where=f"{stage.tag} ({output_dir})")
    if training_args.joint_training:
        splits, collator = joint_datasets(dataset, model.config.label2id, processor, model.config.modalities)
    elif stage.number == 1:
        check_modality_inputs(dataset, stage.modality)
        splits, collator = utterance_datasets(model, processor, dataset, training_args)
    else:
        splits, collator = embedding_datasets(model, processor, dataset, training_args, data_args), collate_dialogues
    training_args.output_dir = os.path.join(output_dir, EVALUATION_DIR)
    os.makedirs(training_args.output_dir, exist_ok=True)
    if training_args.process_index == 0:
        report.to_json(os.path.join(training_args.output_dir, DATA_REPORT))
    trainer = HCAMStageTrainer(model=model, args=training_args, eval_dataset=splits[split_names[0]],
                               data_collator=collator, processing_class=processor, label_names=label_names)
    results = evaluate(trainer, splits, label_names)
    logger.info("Evaluated the finished %s on %s: results in %s", stage.tag, "/".join(split_names),
                training_args.output_dir)
    return results


def run(model_args, data_args, training_args, argv=None):
    """Train (or resume, or only push) the stage that the parsed arguments describe; returns its marker.
    Without --do_train but with --do_eval/--do_predict: evaluate the finished stage only (`evaluate_finished`)."""
    stage, output_dir = Stage(training_args.stage, training_args.modality), training_args.output_dir
    push_to_hub = training_args.push_to_hub
    if push_to_hub and not training_args.hub_model_id:
        raise SystemExit("--push_to_hub needs --hub_model_id ORG/NAME: every stage is a branch of that one repo.")
    train_stage, split_names = getattr(training_args, "hcam_steps", (True, ("validation", "test")))
    if not train_stage:
        if push_to_hub:
            raise SystemExit("--push_to_hub pushes a trained stage: use it with --do_train (or without --do_* flags).")
        return evaluate_finished(stage, data_args, training_args, split_names)

    finished = finished_stage(stage, output_dir)
    if finished is not None:
        if training_args.process_index == 0:
            remove_leftovers(output_dir)  # old checkpoints a kill interrupted the deletion of
        logger.info("%s in %s is already finished: not retraining (delete the folder to retrain).", stage.tag, output_dir)
        if push_to_hub:
            push(training_args, output_dir, finished.marker)
        return finished.marker

    log_value_sources(stage, training_args)
    dataset, report = read_data(stage, data_args, training_args)
    set_seed(training_args.seed)
    model, processor, earlier = build_model(stage, model_args, training_args, dataset, report.labels, report.protocol)
    splits, collator = stage_datasets(stage, model, processor, dataset, training_args, data_args, earlier)
    training_args.push_to_hub = False  # the Trainer's push drops the .py bundle and rewrites README: we push ourselves
    trainer = build_stage_trainer(model, processor, splits, collator, training_args, report.labels)
    train(trainer, stage, training_args)
    results = evaluate(trainer, splits, report.labels)
    trainer.save_model(os.path.join(output_dir, FINAL_DIR))
    marker = stage_marker(stage, trainer, model, results, report, dataset, model_args, data_args, training_args, argv)
    finish_output(trainer, output_dir, marker, training_args.hub_model_id if push_to_hub else None)
    if release_processes(trainer) and push_to_hub:  # the other processes need not wait for the upload
        push(training_args, output_dir, marker)
    return marker


def log_value_sources(stage, training_args):
    """Each value a flag, the recipe or the stage's defaults set, and which of them set it (also in the marker)."""
    sources = getattr(training_args, "hcam_value_sources", {})
    if sources:
        logger.info("%s settings (value <- layer): %s", stage.tag, "; ".join(
            f"{name}={entry['value']!r} <- {entry['from']}" for name, entry in sources.items()))


def cli(argv=None):
    """The command line: data and argument errors print their message and exit with status 2, no traceback
    (HCAM_DEBUG=1 shows it; hcam.processing.cli.command_errors)."""
    with command_errors("run_stage.py"):
        main(argv)


if __name__ == "__main__":
    cli()
    sys.exit(0)
