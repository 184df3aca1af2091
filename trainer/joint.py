"""Non-hierarchical training (`run_stage.py --stage 3 --joint_training`): the paper's comparison, as an ablation.

One model with every stage (both utterance encoders, both context encoders, the fusion; or, `--stage 2 --modality M`,
one modality's utterance and context encoders: a text-only corpus) is built from the encoders,
as stage I builds one modality, and trained end to end in one run: no `--init_from`, nothing frozen, no embedding
cache (the encoders run in the forward pass on raw dialogue batches). The loss is the mean classification loss of
every head (utterance, context, fusion) plus `supcon_weight` times the contrastive loss on the utterance embeddings
(`HCAMConfig.joint_training`). The checkpoint is chosen on validation like stage III's (the fusion head's weighted
F1), and every head and the ensemble are evaluated, so `all_results.json` has stage III's keys.

Same epoch budget (bench/ablation.py): as many epochs as the hierarchy's stage I gives its encoders in the recipe
(the larger of the stage-I audio and text epochs), each pass over the training dialogues training every stage at
once, with the same best-on-validation checkpointing. The hierarchy also spends the epochs of stages II and III (and
its cross-fitting) on cached embeddings, which cost far less per epoch than an encoder pass.
"""

import torch
from torch.utils.data import Dataset

from hcam.trainer.data import dialogue_spans


class RawDialogueDataset(Dataset):
    """One item per dialogue of a split: its turns' `modalities` (text, audio: decoded on access), speakers and label
    ids."""

    def __init__(self, split, label2id, modalities=("audio", "text")):
        self.split, self.label2id, self.modalities = split, label2id, tuple(modalities)
        self.spans = [(start, end) for _, start, end in dialogue_spans(split)]

    def __len__(self):
        return len(self.spans)

    def __getitem__(self, index):
        start, end = self.spans[index]
        rows = self.split[start:end]
        return {**{m: rows[m] for m in self.modalities}, "speakers": rows["speaker"],
                "labels": [self.label2id[label] for label in rows["label"]]}


class DialogueCollator:
    """A batch of `RawDialogueDataset` items → the processor's padded dialogue batch (audio and/or text, speakers,
    labels)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, items):
        batch = self.processor(**{m: [item[m] for item in items] for m in ("text", "audio") if m in items[0]},
                               speakers=[item["speakers"] for item in items],
                               labels=[item["labels"] for item in items], return_tensors="pt")
        return {key: torch.as_tensor(value) for key, value in batch.items()}


def joint_datasets(dataset, label2id, processor, modalities=("audio", "text")):
    """(splits, collator) for `--joint_training`: every split as raw dialogues of `modalities`."""
    return ({name: RawDialogueDataset(split, label2id, modalities) for name, split in dataset.items()},
            DialogueCollator(processor))
