"""Train stages II and III on stage-I embeddings that look like the ones they get at test time.

Stage I fits its training turns far better than new ones (demo: train loss ~0.15, validation weighted F1 ~0.6), so
the embeddings of *training* turns that stages II and III learn from are cleaner than any they will see later. Two
remedies, both measured in bench/stacking_experiment.py:

- **Cross-fitting** (out-of-fold embeddings; Wolpert's stacked generalization, 1992): the training dialogues are
  dealt into `k` folds; for each fold a stage-I model is trained, with the stage-I folder's own recipe, on the other
  `k - 1` folds (same seed, so the same start) and embeds the dialogues of its fold, which it never saw. Each fold
  model has its own coordinates (stage I's bi-GRU head is trained from scratch: unaligned out-of-fold embeddings
  gave the demo's audio stage II a validation weighted F1 of 0.10), so its embeddings are mapped into the shipped
  model's by an affine ridge map fitted on the turns both were trained on. Stages II and III then train on these
  out-of-fold embeddings. Validation and test are embedded by the shipped stage-I model (trained on all of train),
  exactly as at inference. Cost: `k` extra stage-I trainings on `(k-1)/k` of train, once per stage-I model (the
  result is cached on disk, keyed by the stage-I weights, `k` and the data).
- **Noise / dropout** on the cached embeddings while stages II and III train (`embedding_noise`: Gaussian noise with
  this standard deviation relative to each embedding's RMS; `embedding_dropout`: dropout rate).
"""

import hashlib
import json
import logging
import os
import random
import shutil

import torch

from hcam.trainer.data import utterance_datasets
from hcam.trainer.embedding_cache import cache_key, cached_embeddings, compute_embeddings, read_cached, write_cached
from hcam.trainer.stage_folder import MARKER, StageFolder
from hcam.trainer.trainer import build_stage_trainer

logger = logging.getLogger(__name__)

# TrainingArguments of the stage-I run that its fold models do not inherit (they train out of sight, in a scratch
# folder, and never push or log).
_NOT_INHERITED = ("output_dir", "logging_dir", "push_to_hub", "hub_model_id", "hub_token", "hub_private_repo",
                  "resume_from_checkpoint", "report_to", "run_name", "init_from")


# ----- cross-fitting ----------------------------------------------------------------------------------------------
def dialogue_folds(dialogue_ids, num_folds, seed=0):
    """Fold index per row: whole dialogues are dealt round-robin into `num_folds` folds after a seeded shuffle."""
    unique = list(dict.fromkeys(dialogue_ids))
    if num_folds < 2 or num_folds > len(unique):
        raise ValueError(f"cross_fit_folds={num_folds}: needs 2 <= k <= the {len(unique)} training dialogues.")
    order = unique[:]
    random.Random(seed).shuffle(order)
    fold_of = {dialogue: index % num_folds for index, dialogue in enumerate(order)}
    return [fold_of[d] for d in dialogue_ids]


def stage1_folder_of(training_args, modality):
    """The finished stage-I folder whose recipe the fold models reuse: --init_from itself in stage II, the
    stage-I folder under the stage-II folder of that modality in stage III."""
    init_from = training_args.init_from
    folder = init_from[0] if training_args.stage == 2 else init_from[0 if modality == "audio" else 1]
    return StageFolder.open(folder, missing=(
        f"Cross-fitting reads the stage-I recipe that the fold models are trained with from the finished stage "
        f"folders, and {folder} holds no finished stage ({MARKER} missing). Point --init_from at local stage folders "
        f"whose stage-I folders are still where they were trained, or pass --cross_fit_folds 0 to train on the "
        f"shipped stage-I model's own embeddings of train.")).stage1_folder(modality)


def fold_training_arguments(stage1, output_dir, seed):
    """The stage-I run's TrainingArguments (from its marker), in a scratch folder, with no logging or push."""
    from dataclasses import fields

    from hcam.trainer.arguments import HCAMTrainingArguments

    known = {f.name for f in fields(HCAMTrainingArguments) if f.init}
    values = {k: v for k, v in stage1.training_arguments.items() if k in known and k not in _NOT_INHERITED}
    values.update(output_dir=output_dir, report_to=[], seed=seed, save_total_limit=1, disable_tqdm=True)
    return HCAMTrainingArguments(**values)


def train_fold_model(stage1, train_rows, validation_rows, modality, scratch_dir, seed):
    """A stage-I model of the `stage1` folder's configuration and recipe, trained from its starting encoders on
    `train_rows` and chosen on `validation_rows` (weighted F1) with run_stage.py's stage-I data and Trainer
    (`utterance_datasets`, `build_stage_trainer`: a frozen encoder's features come from the same cache)."""
    from datasets import DatasetDict
    from transformers import set_seed

    from hcam.modeling_hcam import HCAMForEmotionRecognition
    from hcam.processing.encoders import resolve_encoder_path

    args = fold_training_arguments(stage1, scratch_dir, seed)
    set_seed(seed)
    config = stage1.config
    model = HCAMForEmotionRecognition(config)
    revision = stage1.marker.get("model_revision")  # the stage-1 run's --model_revision (token: HF_TOKEN or login)
    if modality == "text":
        model.load_pretrained_encoders(text_encoder_path=resolve_encoder_path(config.text_encoder_name_or_path,
                                                                              revision=revision))
    elif config.audio_encoder_name_or_path:
        model.load_pretrained_encoders(audio_encoder_path=resolve_encoder_path(config.audio_encoder_name_or_path,
                                                                               revision=revision))
    processor = stage1.processor
    splits, collator = utterance_datasets(model, processor, DatasetDict(train=train_rows, validation=validation_rows),
                                          args)
    trainer = build_stage_trainer(model, processor, splits, collator, args, stage1.labels)
    trainer.train()
    best = trainer.state.best_metric
    shutil.rmtree(scratch_dir, ignore_errors=True)
    return trainer.model, processor, best


def fit_alignment(source, target, penalties=(1e-3, 1e-2, 1e-1, 1.0), seed=0):
    """Affine map `source -> target` (ridge least squares), its penalty chosen on a held-out fifth of the rows.

    A stage-I model trained from another start or on other data learns its own coordinates (its bi-GRU head is trained
    from scratch), so a fold model's embeddings mean nothing to a stage II that reads the shipped model's. The map is
    fitted on turns both models were trained on and then applied to the turns only the shipped model saw.
    Returns `(weight (E+1, E), held-out R^2)`.
    """
    x = torch.cat([source.double(), torch.ones(len(source), 1, dtype=torch.float64)], dim=1)
    y = target.double()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    held, fit = order[: len(x) // 5], order[len(x) // 5 :]

    def solve(rows, penalty):
        gram = x[rows].T @ x[rows]
        scale = gram.diagonal().mean()
        return torch.linalg.solve(gram + penalty * scale * torch.eye(gram.shape[0], dtype=gram.dtype), x[rows].T @ y[rows])

    def r2(weight, rows):
        residual = (x[rows] @ weight - y[rows]).pow(2).sum()
        return float(1 - residual / (y[rows] - y[rows].mean(0)).pow(2).sum())

    scores = {penalty: r2(solve(fit, penalty), held) for penalty in penalties}
    best = max(scores, key=scores.get)
    return solve(torch.arange(len(x)), best).float(), scores[best]


def cross_fitted_embeddings(model, processor, dataset, modality, cache_dir, training_args, device="cpu", batch_size=32,
                            stage1=None):
    """Out-of-fold stage-I embeddings `(rows, E)` of `dataset["train"]`, read from `cache_dir` or computed; the fold
    models are trained with the recipe of the `stage1` folder (a `StageFolder`; default: found from --init_from).

    The cache file is keyed like the shipped model's own (stage-I weights, settings, data) plus the number of folds
    and the fold seed, so another stage-I run, another `k` or other data never read it.
    """
    rows = dataset["train"]
    num_folds, fold_seed = training_args.cross_fit_folds, training_args.cross_fit_seed
    digest = hashlib.sha256(f"{cache_key(model, processor, rows, modality)}|oof-aligned|{num_folds}|{fold_seed}".encode())
    key = digest.hexdigest()[:24]
    path = os.path.join(cache_dir, f"train-{modality}-oof{num_folds}-{key}.safetensors")
    what = f"Cross-fitted (k={num_folds}) {modality} embeddings of train"
    embeddings = read_cached(path, key, len(rows), what)
    if embeddings is not None:
        return embeddings
    if training_args.world_size > 1:
        raise SystemExit(
            f"The cross-fitted {modality} embeddings of train are not cached yet ({path}), and the fold models are "
            f"trained in one process: run this stage once without torchrun/accelerate (or with --cross_fit_folds 0)."
        )
    stage1 = stage1 or stage1_folder_of(training_args, modality)
    folds = dialogue_folds(rows["dialogue_id"], num_folds, fold_seed)
    # the shipped model's own embeddings of train: the coordinates the fold models' embeddings are mapped into
    own = cached_embeddings(model, processor, rows, modality, cache_dir, "train", batch_size=batch_size, device=device)
    embeddings = torch.zeros(len(rows), model.config.utterance_embedding_size)
    scores, fits = [], []
    for fold in range(num_folds):
        held_out = [i for i, f in enumerate(folds) if f == fold]
        kept = [i for i, f in enumerate(folds) if f != fold]
        logger.info("Cross-fitting %s stage I: fold %d/%d, training on %d turns, embedding %d held-out turns",
                    modality, fold + 1, num_folds, len(kept), len(held_out))
        scratch = os.path.join(cache_dir, f".fold-{modality}-{fold}-{os.getpid()}")
        fold_model, fold_processor, score = train_fold_model(  # same seed, so the same start as the shipped model
            stage1, rows.select(kept), dataset["validation"], modality, scratch,
            seed=stage1.training_arguments.get("seed", 42),
        )
        fold_model.to(device)
        fold_embeddings = compute_embeddings(fold_model, fold_processor, rows, modality, batch_size, device,
                                             desc=f"fold {fold + 1}/{num_folds} embeddings")
        weight, fit = fit_alignment(fold_embeddings[kept], own[kept], seed=fold_seed)
        held = torch.cat([fold_embeddings[held_out], torch.ones(len(held_out), 1)], dim=1)
        embeddings[held_out] = held @ weight
        scores.append(score)
        fits.append(round(fit, 4))
        logger.info("Fold %d/%d: validation weighted F1 %.4f, alignment to the shipped model's coordinates R^2 %.3f "
                    "(held-out turns of the fold's training part)", fold + 1, num_folds,
                    score if score is not None else float("nan"), fit)
    write_cached(path, embeddings, key, {"split": "train", "modality": modality, "cross_fit_folds": str(num_folds),
                                         "fold_validation_weighted_f1": json.dumps(scores),
                                         "alignment_r2": json.dumps(fits), "stage1_folder": os.path.abspath(stage1.path)},
                 what)
    return embeddings


def stage_embeddings(model, processor, dataset, split, modality, cache_dir, training_args, stage1=None, batch_size=32,
                     device="cpu"):
    """What stages II/III train and evaluate on: out-of-fold embeddings for train when `cross_fit_folds` >= 2 (fold
    models trained with the `stage1` folder's recipe), the model's own (cached) stage-I embeddings otherwise and for
    every other split."""
    if split == "train" and (training_args.cross_fit_folds or 0) >= 2:
        return cross_fitted_embeddings(model, processor, dataset, modality, cache_dir, training_args, device, batch_size,
                                       stage1)
    return cached_embeddings(model, processor, dataset[split], modality, cache_dir, split, batch_size=batch_size, device=device)
