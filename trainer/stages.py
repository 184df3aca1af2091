"""What a stage is: its number, modality, tag, the heads it trains, what it starts from, and its defaults.

Training (`run_stage.py`), evaluation, the card (`hub.py`), the demo and the cross-validation command all read
stages from here; the heads a stage trains come from the model bundle's `trained_heads`, the one definition the
model's loss uses too.

    >>> [stage.tag for stage in SEQUENCE]
    ['stage1-audio', 'stage1-text', 'stage2-audio', 'stage2-text', 'stage3']
"""

import os
from dataclasses import dataclass

from hcam.modeling_hcam.configuration_hcam import trained_heads

# Defaults of every stage: evaluate and save every epoch, keep the best by validation weighted F1.
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

# Stages 2 and 3 train only small heads on cached embeddings, so epochs take seconds: many of them, with early
# stopping.
CONTEXT_AND_FUSION_DEFAULTS = {
    "learning_rate": 1e-3,
    "num_train_epochs": 40,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 16,
    "early_stopping_patience": 8,
    "warmup_steps": 0,
    # Train on stage-I embeddings that look like test-time ones (issue 13; bench/results/stacking_demo.txt): the train
    # split's from 2 fold models that did not see it (cost: 2 extra stage-I trainings on half of train, once per
    # stage-I model, cached) with Gaussian noise of half each embedding's RMS. Chosen on validation over 3 seeds on the
    # demo corpus among: none, noise 0.5 / 1.0, dropout 0.3, 3 folds, 3 or 2 folds + noise 0.5 (hcam.trainer.cross_fit):
    # 2 folds + noise tied 3 folds + noise (0.785 vs 0.784) at half the folds' cost.
    "cross_fit_folds": 2,
    "embedding_noise": 0.5,
}

# Stage 1: a pretrained encoder is fine-tuned with a small learning rate while the GRU/attention head trained
# from scratch needs ~1e-3; similar lengths in a batch cut padding, and so compute, severalfold on real corpora.
STAGE1_DEFAULTS = {
    "text": {
        "train_sampling_strategy": "group_by_length",
        "length_column_name": "length",
        "learning_rate": 1e-3,
        "encoder_learning_rate": 3e-5,
        "num_train_epochs": 4,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 64,
        "early_stopping_patience": 2,
    },
    "audio": {
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
}


@dataclass(frozen=True)
class Stage:
    """One stage of HCAM's stage-wise training.

    Args:
        number: 1 (utterance), 2 (dialogue context) or 3 (fusion).
        modality: "audio" or "text" for stages 1 and 2; None for stage 3 (both).
    """

    number: int
    modality: str | None = None

    def __post_init__(self):
        if self.number not in (1, 2, 3):
            raise ValueError(f"stage must be 1, 2 or 3, got {self.number!r}")
        if self.number < 3 and self.modality not in ("audio", "text"):
            raise ValueError(f"Stage {self.number} trains one modality: pass --modality audio or --modality text.")
        if self.number == 3 and self.modality is not None:
            raise ValueError("Stage 3 fuses both modalities: drop --modality.")

    @property
    def tag(self) -> str:
        """Its name, branch on the Hub and folder name: stage1-audio … stage3."""
        return f"stage{self.number}-{self.modality}" if self.modality else f"stage{self.number}"

    @property
    def modalities(self) -> list[str]:
        return [self.modality] if self.modality else ["audio", "text"]

    @property
    def heads(self) -> list[str]:
        """The heads it trains (its loss); the first is the one its checkpoint is selected on."""
        return trained_heads(self.number, self.modalities)

    @property
    def primary_head(self) -> str:
        return self.heads[0]

    @property
    def starts_from(self) -> tuple["Stage", ...]:
        """The earlier stages whose output folders it starts from (`--init_from`, in this order)."""
        if self.number == 1:
            return ()
        if self.number == 2:
            return (Stage(1, self.modality),)
        return (Stage(2, "audio"), Stage(2, "text"))

    @property
    def defaults(self) -> dict:
        """TrainingArguments values used when neither a flag nor the recipe sets them."""
        own = STAGE1_DEFAULTS[self.modality] if self.number == 1 else CONTEXT_AND_FUSION_DEFAULTS
        return {**COMMON_DEFAULTS, **own}

    def argv(self, output_root: str, done: dict | None = None) -> list[str]:
        """run_stage.py flags of this stage in a run whose stage folders are `<output_root>/<tag>`; `done` maps the
        tags of earlier stages trained elsewhere to their folders."""
        done = done or {}
        words = ["--stage", str(self.number)] + (["--modality", self.modality] if self.modality else [])
        if self.starts_from:
            words += ["--init_from", *(done.get(s.tag) or os.path.join(output_root, s.tag) for s in self.starts_from)]
        return words + ["--output_dir", os.path.join(output_root, self.tag)]


# The whole sequence, in the order it must run.
SEQUENCE = (Stage(1, "audio"), Stage(1, "text"), Stage(2, "audio"), Stage(2, "text"), Stage(3))
BY_TAG = {stage.tag: stage for stage in SEQUENCE}


def stages_for(modalities) -> tuple[Stage, ...]:
    """The sequence for a corpus of `modalities`: every stage for audio + text, stages I-II of one modality alone."""
    return tuple(stage for stage in SEQUENCE if set(stage.modalities) <= set(modalities))
