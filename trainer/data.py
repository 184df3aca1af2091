"""Datasets for the stages: utterance rows for stage I, dialogues of cached embeddings for stages II and III.

Corpora are read only through `hcam.processing` (one schema: dialogue_id, turn, speaker, text, audio, label);
tensors come only from the `HCAMProcessor`.
"""

import logging

import datasets
import torch
from torch.utils.data import Dataset

from hcam.modeling_hcam.processing_hcam import speaker_ids_of
from hcam.processing.report import HCAMDataError

logger = logging.getLogger(__name__)


def load_corpus(data_args, modalities, check_audio=False, progress=True):
    """The corpus as (DatasetDict, DataReport), read through the corpus registry and trimmed by --max_*_samples.

    A text-only stage reads no audio (audio=False): MELD's text runs need no clips. `check_audio` decodes every
    clip once and skips silent or corrupt ones (listed in the report). `report.labels` are the label names in id
    order, `report.protocol` the split protocol in words.
    """
    from hcam.processing.corpora import corpus_kwargs
    from hcam.processing.datasets import load_hcam_dataset

    dataset, report = load_hcam_dataset(**corpus_kwargs(data_args), audio=None if "audio" in modalities else False,
                                        check_audio=check_audio, progress=progress)
    logger.info("Data: %s", report)
    limits = {"train": getattr(data_args, "max_train_samples", None),
              "validation": getattr(data_args, "max_eval_samples", None),
              "test": getattr(data_args, "max_eval_samples", None)}
    trimmed = {}
    for split, ds in dataset.items():
        if limits.get(split):
            ds = first_dialogues(ds, limits[split])
        trimmed[split] = ds
    if any(limits.values()):
        report.fill_stats(trimmed)
    return datasets.DatasetDict(trimmed), report


def load_splits(data_args, modalities):
    """The corpus's DatasetDict alone (see `load_corpus`)."""
    return load_corpus(data_args, modalities)[0]


def first_dialogues(dataset, num_dialogues):
    """The rows of the first `num_dialogues` dialogues (whole dialogues, so stage II sees real contexts)."""
    keep, seen = [], []
    for index, dialogue_id in enumerate(dataset["dialogue_id"]):
        if dialogue_id not in seen:
            if len(seen) == num_dialogues:
                break
            seen.append(dialogue_id)
        keep.append(index)
    return dataset.select(keep)


def check_labels(dataset, label2id, where):
    """Every label of the corpus must be one of the model's: name the first unknown rows and what to do."""
    for split, ds in dataset.items():
        unknown = sorted({label for label in ds["label"] if label not in label2id})
        if unknown:
            raise HCAMDataError(
                f"{where}: the {split} split has labels {unknown} that the model does not know "
                f"(its labels: {list(label2id)}). Train stage 1 on this label set, or map/drop these rows."
            )


def check_modality_inputs(dataset, modality):
    """Stage I on text needs every turn's transcript; on audio, every turn's audio path."""
    column = "text" if modality == "text" else "audio"
    for split, ds in dataset.items():
        for row_index, value in enumerate(ds[column]):
            if not value:
                row = ds[row_index]
                raise HCAMDataError(
                    f"{split} split, dialogue {row['dialogue_id']!r} turn {row['turn']}: empty `{column}`, but "
                    f"--modality {modality} needs it for every turn. Fill it in (e.g. an ASR transcript) or drop the row."
                )


class UtteranceCollator:
    """Stage I: a batch of utterance rows → processor inputs of shape [N, 1, ...] (each utterance a one-turn dialogue)."""

    def __init__(self, processor, modality, label2id):
        self.processor, self.modality, self.label2id = processor, modality, label2id

    def __call__(self, rows):
        labels = [[self.label2id[row["label"]]] for row in rows]
        if self.modality == "text":
            return self.processor(text=[[row["text"]] for row in rows], labels=labels, return_tensors="pt")
        return self.processor(audio=[[row["audio"]] for row in rows], labels=labels, return_tensors="pt")


def dialogue_spans(dataset):
    """(dialogue_id, first row, end row) per dialogue; rows are sorted by dialogue then turn (the schema's order)."""
    spans, ids = [], dataset["dialogue_id"]
    start = 0
    for index in range(1, len(ids) + 1):
        if index == len(ids) or ids[index] != ids[start]:
            spans.append((ids[start], start, index))
            start = index
    if len({span[0] for span in spans}) != len(spans):
        raise ValueError("Rows of one dialogue are not contiguous: the reader must sort rows by (dialogue, turn).")
    return spans


class DialogueEmbeddingDataset(Dataset):
    """Stages II/III: one item per dialogue, holding its cached stage-I embeddings per modality, speakers and labels."""

    def __init__(self, dataset, embeddings, label2id):
        self.items = []
        speakers, labels = dataset["speaker"], dataset["label"]
        for _, start, end in dialogue_spans(dataset):
            item = {
                "speaker_ids": torch.tensor(speaker_ids_of(speakers[start:end])),
                "labels": torch.tensor([label2id[label] for label in labels[start:end]]),
            }
            for modality, table in embeddings.items():
                item[f"{modality}_embeddings"] = table[start:end]
            self.items.append(item)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def collate_dialogues(items):
    """Pad dialogues to the longest: embeddings with 0, speaker_ids with -1, labels with -100."""
    longest = max(len(item["labels"]) for item in items)
    batch = {"utterance_mask": torch.zeros(len(items), longest, dtype=torch.long)}
    pads = {"speaker_ids": -1, "labels": -100}
    for key in items[0]:
        first = items[0][key]
        padded = torch.full((len(items), longest, *first.shape[1:]), pads.get(key, 0), dtype=first.dtype)
        for row, item in enumerate(items):
            padded[row, : len(item[key])] = item[key]
        batch[key] = padded
    for row, item in enumerate(items):
        batch["utterance_mask"][row, : len(item["labels"])] = 1
    return batch


def with_lengths(dataset, modality):
    """Stage I batches utterances of similar length together (--train_sampling_strategy group_by_length): the
    `length` column is the duration for audio and the character count for text, which is what padding costs."""
    from datasets import DatasetDict

    from hcam.processing.sampling import utterance_lengths

    with_length = {}
    for name, split in dataset.items():
        lengths = [float(len(t)) for t in split["text"]] if modality == "text" else utterance_lengths(split)
        known = sorted(x for x in lengths if x == x)
        fill = known[len(known) // 2] if known else 0.0  # unknown durations (NaN) sort as a typical utterance
        with_length[name] = split.add_column("length", [x if x == x else fill for x in lengths])
    return DatasetDict(with_length)


def utterance_datasets(model, processor, dataset, training_args):
    """Stage I's `(splits, collator)` for `training_args.modality`: the utterance rows with their lengths (batches of
    similar length, `with_lengths`), or with a frozen encoder (--freeze_*_encoder) its cached hidden states
    (`hcam.trainer.feature_cache`). run_stage.py and the cross-fitting fold models train on these alike."""
    from hcam.trainer.feature_cache import frozen_encoder_datasets

    modality = training_args.modality
    return frozen_encoder_datasets(model, processor, dataset, training_args) or (
        with_lengths(dataset, modality), UtteranceCollator(processor, modality, model.config.label2id))
