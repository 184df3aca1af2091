"""The stage Trainer: HCAM's losses logged per component, per-head predictions, atomic checkpoints."""

import os
import shutil

import torch
from transformers import EarlyStoppingCallback, Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hcam.trainer.evaluation import build_compute_metrics
from hcam.trainer.stage_folder import FINAL_DIR, STAGING_DIR

ENCODER_PREFIX = "utterance_encoders."
TMP_CHECKPOINT_PREFIX = "tmp-" + PREFIX_CHECKPOINT_DIR


class HCAMStageTrainer(Trainer):
    """A `Trainer` for one HCAM stage (the model's last stage, `config.num_stages`).

    - `compute_loss` adds `classification_loss` and, in stage I, `contrastive_loss` to the logs, separately.
    - Predictions are the argmax of every head the model has, stacked `[D, T, heads]`, so evaluation reports each
      stage alone and the ensemble (see `hcam.trainer.evaluation`).
    - In stage I the pretrained encoder gets `args.encoder_learning_rate`, the GRU/attention head `args.learning_rate`
      (the audio encoder `args.audio_encoder_learning_rate` when set: joint training has both encoders).
    - A checkpoint is written as `tmp-checkpoint-N` and renamed to `checkpoint-N` once complete, so a killed run
      never leaves a partial checkpoint that looks finished.
    """

    def __init__(self, *args, label_names=None, **kwargs):
        super().__init__(*args, **kwargs)
        config = self.model.config
        self.heads = config.output_heads()  # the model's ensemble first, then each stage head
        self.primary_head = config.trained_heads()[0]  # what the stage is selected on
        if self.compute_metrics is None:
            self.compute_metrics = build_compute_metrics(self.heads, self.primary_head, label_names)
        self._loss_sums = {}
        self._loss_count = 0

    # ----- loss -------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:  # stages II/III: noise on the cached stage-I embeddings (`perturb_embeddings`)
            inputs = perturb_embeddings(inputs, getattr(self.args, "embedding_noise", 0.0),
                                        getattr(self.args, "embedding_dropout", 0.0))
        outputs = model(**inputs)
        if model.training:
            for name in ("classification_loss", "contrastive_loss"):
                value = getattr(outputs, name, None)
                if value is not None:
                    self._loss_sums[name] = self._loss_sums.get(name, 0.0) + value.detach().float().item()
            self._loss_count += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs, start_time=None):
        if "loss" in logs and self._loss_count:
            for name, total in self._loss_sums.items():
                logs[name] = round(total / self._loss_count, 4)
            self._loss_sums, self._loss_count = {}, 0
        super().log(logs, start_time)

    # ----- evaluation -------------------------------------------------------------------------------------------
    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(**inputs)
        loss = outputs.loss.detach().mean() if outputs.loss is not None else None
        if prediction_loss_only:
            return loss, None, None
        predictions = torch.stack(
            [outputs.head_logits(head).argmax(-1) for head in self.heads],
            dim=-1,
        )
        return loss, predictions, labels

    # ----- optimiser --------------------------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        model = model or self.model
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
        encoder_lr = getattr(self.args, "encoder_learning_rate", None) or self.args.learning_rate
        groups = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            is_encoder = name.startswith(ENCODER_PREFIX) and ".encoder." in name
            decay = 0.0 if any(name.endswith(n) for n in no_decay) else self.args.weight_decay
            lr = encoder_lr if is_encoder else self.args.learning_rate
            if is_encoder and name.startswith(ENCODER_PREFIX + "audio."):  # --joint_training: its own rate
                lr = getattr(self.args, "audio_encoder_learning_rate", None) or lr
            groups.setdefault((lr, decay), []).append(param)
        param_groups = [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        optimizer_kwargs.pop("lr", None)
        self.optimizer = optimizer_cls(param_groups, lr=self.args.learning_rate, **optimizer_kwargs)
        return self.optimizer

    # ----- checkpoints ------------------------------------------------------------------------------------------
    def _get_output_dir(self, trial):
        if getattr(self, "_saving_to_tmp", False):
            return os.path.join(self.args.output_dir, STAGING_DIR)
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        """Write the checkpoint under .staging/, then rename it to checkpoint-N in one step."""
        run_dir = self.args.output_dir
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, STAGING_DIR)
        best_before = self.state.best_model_checkpoint
        self._saving_to_tmp = True
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._saving_to_tmp = False
        self.accelerator.wait_for_everyone()
        # super() pointed best_model_checkpoint into .staging when this step is the best one
        if self.state.best_model_checkpoint and os.path.dirname(self.state.best_model_checkpoint) == staging:
            self.state.best_model_checkpoint = os.path.join(run_dir, os.path.basename(self.state.best_model_checkpoint))
        elif self.state.best_model_checkpoint is None:
            self.state.best_model_checkpoint = best_before
        if self.args.should_save:
            tmp_path = os.path.join(staging, name)
            self.state.save_to_json(os.path.join(tmp_path, "trainer_state.json"))
            final_path = os.path.join(run_dir, name)
            remove_folder(final_path)
            os.replace(tmp_path, final_path)
            self._rotate_final_checkpoints(run_dir)
        self.accelerator.wait_for_everyone()

    def _rotate_final_checkpoints(self, run_dir):
        """transformers' `rotate_checkpoints` (keep `save_total_limit`, never the newest or the best), each old
        checkpoint removed with `remove_folder`: a run killed meanwhile leaves no half-deleted `checkpoint-N`."""
        from pathlib import Path

        from transformers.trainer_utils import sort_checkpoints

        limit = self.args.save_total_limit
        if limit is None or limit <= 0:
            return
        checkpoints = sort_checkpoints(run_dir, PREFIX_CHECKPOINT_DIR, use_mtime=False)
        protected = {checkpoints[-1]} if checkpoints else set()
        if self.state.best_model_checkpoint is not None:
            protected.add(str(Path(self.state.best_model_checkpoint)))
        remaining, keep = len(checkpoints), max(limit, len(protected))
        for checkpoint in checkpoints:
            if remaining <= keep:
                break
            if checkpoint not in protected:
                remove_folder(checkpoint)
                remaining -= 1


DELETING_PREFIX = ".deleting-"


def remove_folder(path):
    """Delete the folder `path` so that a kill half way never leaves it half deleted under its own name: it is
    renamed to `.deleting-<name>` (one step) first; `remove_leftovers` clears what a killed run left so."""
    if not os.path.exists(path):
        return
    trash = os.path.join(os.path.dirname(path), DELETING_PREFIX + os.path.basename(path))
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def remove_leftovers(output_dir):
    """What an interrupted run (a kill, a full disk) may have left half written or half deleted in `output_dir`:
    the checkpoint being written (.staging), the stage being finished (.final) and folders being deleted."""
    if not os.path.isdir(output_dir):
        return
    for name in os.listdir(output_dir):
        if name in (STAGING_DIR, FINAL_DIR) or name.startswith(DELETING_PREFIX):
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def build_stage_trainer(model, processor, splits, collator, training_args, label_names):
    """The stage's Trainer on `splits` (train and validation), with early stopping when
    `training_args.early_stopping_patience` is set: what run_stage.py and the cross-fitting fold models train with."""
    callbacks = []
    if training_args.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    return HCAMStageTrainer(model=model, args=training_args, train_dataset=splits["train"],
                            eval_dataset=splits["validation"], data_collator=collator, processing_class=processor,
                            callbacks=callbacks, label_names=label_names)


def perturb_embeddings(inputs, noise=0.0, dropout=0.0):
    """Training-time noise on the cached stage-I embeddings of a stage II/III batch (`*_embeddings` keys).

    Args:
        inputs (`dict`): the batch; returned with perturbed copies of the embeddings (padded turns stay zero).
        noise (`float`): standard deviation of Gaussian noise, relative to each embedding's RMS.
        dropout (`float`): dropout rate on the embedding features.
    """
    if not noise and not dropout:
        return inputs
    inputs = dict(inputs)
    for key in ("audio_embeddings", "text_embeddings"):
        embeddings = inputs.get(key)
        if embeddings is None:
            continue
        if noise:
            rms = embeddings.pow(2).mean(-1, keepdim=True).sqrt()
            embeddings = embeddings + noise * rms * torch.randn_like(embeddings)
        if dropout:
            embeddings = torch.nn.functional.dropout(embeddings, p=dropout, training=True)
        inputs[key] = embeddings
    return inputs
