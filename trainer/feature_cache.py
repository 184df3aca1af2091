"""Stage I with a frozen encoder: its hidden states computed once per utterance and kept on disk in fp16, so that
stage-I epochs train only the bi-GRU, the pooling and the classifier (`--freeze_audio_encoder`, `--freeze_text_encoder`).

What is cached is exactly what `HCAMUtteranceEncoder.encoder_hidden_states` gives the head: every layer (embedding
output first) when `use_weighted_layer_sum` is on, else the last layer, for the utterance's real frames or tokens.
A cache is keyed like the stage-II cache (`trainer/embedding_cache.py`, whose fingerprint helpers it uses): the
encoder's weights, the settings that change what it sees or returns (processor, max lengths, every layer or the last)
and the split's rows. Change any of them and the folder name changes: a stale cache is never read.

A split's cache is a folder of safetensors shards (`hidden`: the frames of up to `SHARD_UTTERANCES` utterances
concatenated; `offsets`; `rows`) plus `index.json`, under `<hcam cache>/features` (hcam.processing.cache). It is
built under a temporary name and renamed when complete; reads are memory-mapped slices, so a corpus whose features
exceed memory works. The key is written in `index.json` and in every shard's metadata; opening a cache checks them,
every shard's header, shapes and rows against the index (`FeatureStore.verify`; the features themselves are not
checksummed: that would read the whole cache at every start), and a damaged cache is rebuilt with a warning. The saved
model still holds the encoder: inference needs no cache.
"""

import hashlib
import json
import logging
import os

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers.utils.logging import tqdm  # off with --disable_tqdm (run_stage.setup_logging)

from hcam.processing.cache import (
    DamagedCacheEntry,
    cache_path,
    discard_damaged,
    disk_full_message,
    is_disk_full,
    partial_name,
    remove_quietly,
)
from hcam.trainer.embedding_cache import data_fingerprint, hash_model_weights, processor_fingerprint

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
SHARD_UTTERANCES = 256  # utterances per shard file: bounds the memory of building the cache


def frozen_encoder(model, modality):
    """Whether stage I of `modality` runs with a frozen encoder (then it trains on the cache)."""
    return bool(getattr(model.config, f"freeze_{modality}_encoder", False))


def feature_cache_key(model, processor, dataset, modality):
    """The cache's key: encoder weights + what changes the encoder's input or output + the split's rows."""
    settings = {
        "kind": "stage1-encoder-hidden-states",
        "format": CACHE_FORMAT,
        "dtype": "float16",
        "modality": modality,
        "max_audio_seconds": model.config.max_audio_seconds,
        "max_text_tokens": model.config.max_text_tokens,
        "every_layer": model.config.weighted_layer_sum(modality),
        "processor": processor_fingerprint(processor, modality),
    }
    digest = hashlib.sha256()
    digest.update(hash_model_weights(model.utterance_encoders[modality].encoder).encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(data_fingerprint(dataset, modality).encode())
    return digest.hexdigest()[:24]


class FeatureStore:
    """Read access to one split's cached hidden states: `store[row]` is `(frames, [layers,] width)` in fp16."""

    def __init__(self, folder):
        self.folder = folder
        with open(os.path.join(folder, "index.json"), encoding="utf-8") as f:
            index = json.load(f)
        self.key = index.get("key")
        self.shards = index["shards"]
        self.frames = np.asarray(index["frames"], dtype=np.int64)
        self.location = np.asarray(index["location"], dtype=np.int64)  # row -> (shard, start)
        self._handles = {}

    @classmethod
    def open_verified(cls, folder, key, num_rows):
        """The store in `folder`, checked against `key` and `num_rows` (`verify`); DamagedCacheEntry if it fails."""
        try:
            store = cls(folder)
        except (OSError, ValueError, KeyError, TypeError) as error:  # index.json cut short, zero-filled, not JSON
            raise DamagedCacheEntry(f"index.json unreadable: {type(error).__name__}: {error}") from error
        store.verify(key, num_rows)
        return store

    def verify(self, key, num_rows):
        """Check the index and every shard's header, key, shapes and rows; raise DamagedCacheEntry on the first fault."""
        if self.key != key:
            raise DamagedCacheEntry(f"written under key {self.key!r}, not {key!r}")
        if len(self.frames) != num_rows or self.location.shape != (num_rows, 2):
            raise DamagedCacheEntry(f"{len(self.frames)} rows for {num_rows} utterances")
        if num_rows and not 0 <= self.location[:, 0].min() <= self.location[:, 0].max() < len(self.shards):
            raise DamagedCacheEntry(f"index.json places rows in shards it does not list ({len(self.shards)} shards)")
        width = None
        for number, name in enumerate(self.shards):
            mine = np.flatnonzero(self.location[:, 0] == number)
            try:
                with safe_open(os.path.join(self.folder, name), framework="pt") as f:
                    metadata = f.metadata() or {}
                    hidden_shape = f.get_slice("hidden").get_shape()
                    rows = f.get_tensor("rows").numpy()
            except Exception as error:  # SafetensorError (cut short, zero-filled), missing file, missing tensor
                raise DamagedCacheEntry(f"{name} unreadable: {type(error).__name__}: {error}") from error
            if metadata.get("key") != key:
                raise DamagedCacheEntry(f"{name} written under key {metadata.get('key')!r}, not {key!r}")
            if sorted(rows.tolist()) != mine.tolist():
                raise DamagedCacheEntry(f"{name} holds other rows than index.json says")
            if hidden_shape[0] != int(self.frames[mine].sum()) or (width is not None and hidden_shape[1:] != width):
                raise DamagedCacheEntry(f"{name} holds hidden states of shape {hidden_shape}, which do not match "
                                        f"index.json")
            width = hidden_shape[1:]

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, row):
        shard, start = self.location[row]
        handle = self._handles.get(shard)
        if handle is None:
            handle = self._handles[shard] = safe_open(os.path.join(self.folder, self.shards[shard]), framework="pt")
        return handle.get_slice("hidden")[int(start) : int(start + self.frames[row])]

    def nbytes(self):
        return sum(os.path.getsize(os.path.join(self.folder, name)) for name in self.shards)

    def __getstate__(self):  # dataloader workers open their own handles
        return {**self.__dict__, "_handles": {}}


def _row_lengths(dataset, modality):
    from hcam.processing.sampling import utterance_lengths

    lengths = [float(len(t)) for t in dataset["text"]] if modality == "text" else utterance_lengths(dataset)
    return np.nan_to_num(np.asarray(lengths, dtype=np.float64), nan=0.0)


@torch.no_grad()
def build_feature_cache(model, processor, dataset, modality, folder, batch_size=32, device="cpu", desc=None, key=None):
    """Compute every row's hidden states with the frozen encoder and write them to `folder` (shards + index.json).

    Rows are encoded in batches of similar length (sorted within each shard), each cut to its real frames. `key`
    (default: `feature_cache_key`) goes into index.json and every shard's metadata.
    """
    key = key or feature_cache_key(model, processor, dataset, modality)
    encoder = model.utterance_encoders[modality]
    was_training = model.training
    model.eval()
    column = "text" if modality == "text" else "audio"
    values, lengths = dataset[column], _row_lengths(dataset, modality)
    os.makedirs(folder, exist_ok=True)
    shards, frames, location = [], np.zeros(len(values), dtype=np.int64), np.zeros((len(values), 2), dtype=np.int64)
    progress = tqdm(total=len(values), desc=desc or f"{modality} encoder features", leave=False)
    for shard_start in range(0, len(values), SHARD_UTTERANCES):
        rows = np.arange(shard_start, min(shard_start + SHARD_UTTERANCES, len(values)))
        rows = rows[np.argsort(-lengths[rows], kind="stable")]  # longest first: little padding per batch
        pieces, offset = [], 0
        for start in range(0, len(rows), batch_size):
            batch_rows = rows[start : start + batch_size]
            batch = [[values[r]] for r in batch_rows]
            inputs = processor(text=batch, return_tensors="pt") if modality == "text" else processor(audio=batch, return_tensors="pt")
            input_key, mask_key = ("input_values", "attention_mask") if modality == "audio" else ("input_ids", "text_attention_mask")
            hidden, frame_mask = encoder.encoder_hidden_states(inputs[input_key][:, 0].to(device), inputs[mask_key][:, 0].to(device))
            counts = frame_mask.sum(1).tolist()
            hidden = hidden.to(torch.float16).cpu()
            for i, row in enumerate(batch_rows):
                pieces.append(hidden[i, : counts[i]])
                frames[row], location[row] = counts[i], (len(shards), offset)
                offset += counts[i]
            progress.update(len(batch_rows))
        name = f"shard-{len(shards):05d}.safetensors"
        save_file({"hidden": torch.cat(pieces).contiguous(), "rows": torch.from_numpy(rows.copy())},
                  os.path.join(folder, name), metadata={"format": str(CACHE_FORMAT), "key": key})
        shards.append(name)
    progress.close()
    model.train(was_training)
    with open(os.path.join(folder, "index.json"), "w", encoding="utf-8") as f:
        json.dump({"format": CACHE_FORMAT, "key": key, "modality": modality, "rows": len(values), "shards": shards,
                   "frames": frames.tolist(), "location": location.tolist()}, f)
    return FeatureStore(folder)


def cached_features(model, processor, dataset, modality, cache_dir, split, batch_size=32, device="cpu"):
    """The split's `FeatureStore` from `cache_dir`, built first when absent or damaged (under a temporary name, then
    renamed). A full disk stops the run with a message saying so (stage I trains on this cache)."""
    key = feature_cache_key(model, processor, dataset, modality)
    folder = os.path.join(cache_dir, f"{split}-{modality}-frozen-{key}")
    if os.path.exists(folder):
        try:
            store = FeatureStore.open_verified(folder, key, len(dataset))
            logger.info("Frozen %s encoder features of %s read from %s", modality, split, folder)
            return store
        except DamagedCacheEntry as damage:
            discard_damaged(folder, damage)
    partial = partial_name(folder)
    remove_quietly(partial)
    try:
        build_feature_cache(model, processor, dataset, modality, partial, batch_size, device,
                            desc=f"{split} frozen {modality} encoder", key=key)
        os.replace(partial, folder)
    except Exception as error:
        remove_quietly(partial)
        if is_disk_full(error, partial):
            raise SystemExit(disk_full_message(partial, error)) from error
        if not isinstance(error, OSError) or not os.path.exists(os.path.join(folder, "index.json")):
            raise
        # another run sharing the cache finished the same entry first (the rename onto its folder fails): use it
    store = FeatureStore.open_verified(folder, key, len(dataset))
    logger.info("Frozen %s encoder features of %s written to %s (%.1f MiB)", modality, split, folder,
                store.nbytes() / 2**20)
    return store


class FeatureCollator:
    """Stage I on cached features: rows (with `feature_split`, `feature_row`) → the encoder's padded hidden states
    `[N, 1, frames, ...]`, their frame mask and the labels, as `HCAMForEmotionRecognition.forward` takes them."""

    def __init__(self, stores, modality, label2id):
        self.stores, self.modality, self.label2id = stores, modality, label2id

    def __call__(self, rows):
        hidden = [self.stores[row["feature_split"]][row["feature_row"]] for row in rows]
        longest = max(len(h) for h in hidden)
        padded = hidden[0].new_zeros(len(rows), 1, longest, *hidden[0].shape[1:])
        mask = torch.zeros(len(rows), 1, longest, dtype=torch.long)
        for i, h in enumerate(hidden):
            padded[i, 0, : len(h)] = h
            mask[i, 0, : len(h)] = 1
        mask_name = "attention_mask" if self.modality == "audio" else "text_attention_mask"
        labels = torch.tensor([[self.label2id[row["label"]]] for row in rows])
        return {f"{self.modality}_hidden_states": padded, mask_name: mask, "labels": labels}


def frozen_encoder_datasets(model, processor, dataset, training_args, cache_dir=None):
    """Stage I with a frozen encoder: `(splits, collator)`, each split with the columns `length` (frames, for
    length-grouped batches), `feature_split` and `feature_row`, read from the cache (built once, by the main
    process). `None` when the encoder of `training_args.modality` trains: stage I then runs it every step."""
    from datasets import DatasetDict

    modality = training_args.modality
    if not frozen_encoder(model, modality):
        return None
    cache_dir = cache_dir or str(cache_path("features"))
    device = training_args.device
    model.to(device)
    splits, stores = {}, {}
    with training_args.main_process_first(desc="frozen-encoder features"):
        for split, rows in dataset.items():
            store = stores[split] = cached_features(model, processor, rows, modality, cache_dir, split,
                                                    batch_size=training_args.per_device_eval_batch_size, device=device)
            columns = {"length": store.frames.tolist(), "feature_split": [split] * len(rows),
                       "feature_row": list(range(len(rows)))}
            for name, column in columns.items():
                if name in rows.column_names:
                    rows = rows.remove_columns(name)
                rows = rows.add_column(name, column)
            splits[split] = rows
    return DatasetDict(splits), FeatureCollator(stores, modality, model.config.label2id)
