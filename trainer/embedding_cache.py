"""Frozen stage-I embeddings, computed once per split and kept on disk, so stages II and III never run an encoder.

A cache file is keyed by a fingerprint of (a) the stage-I weights of that modality (`hash_model_weights`), (b) the
settings that change what the encoder sees (`processor_fingerprint`, max lengths), and (c) the split's rows
(`data_fingerprint`: ids, turns, texts, audio paths with file size and mtime). This is hcam's one fingerprint
scheme: any other on-disk cache keys itself with these three helpers. Change any of them and the file name changes: a stale cache is never read.
Files are safetensors under `<hcam cache>/embeddings` (hcam.processing.cache; `run_stage.py --embedding_cache_dir` overrides),
written under a temporary name and renamed, with the key and a checksum in their metadata: an entry cut short,
zero-filled, swapped with another key's or with the wrong rows is discarded with a warning and computed again.
"""

import hashlib
import json
import logging
import os

import torch
from transformers.utils.logging import tqdm  # off with --disable_tqdm (run_stage.setup_logging)

from hcam.processing.cache import DamagedCacheEntry, discard_damaged, read_safetensors, write_safetensors

logger = logging.getLogger(__name__)
KEY_LENGTH = 24  # hex characters of a cache key


def hash_model_weights(model) -> str:
    """Fingerprint of a module's (or a state_dict's) weights: every tensor's name, shape, dtype and bytes."""
    state_dict = model.state_dict() if hasattr(model, "state_dict") else model
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:KEY_LENGTH]


def data_fingerprint(dataset, modality):
    digest = hashlib.sha256()
    column = "text" if modality == "text" else "audio"
    for dialogue_id, turn, value in zip(dataset["dialogue_id"], dataset["turn"], dataset[column]):
        digest.update(f"{dialogue_id}\x1f{turn}\x1f{value}\x1e".encode())
        if modality == "audio" and value and os.path.exists(value):
            stat = os.stat(value)
            digest.update(f"{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()


def processor_fingerprint(processor, modality):
    """What of the processor shapes this modality's inputs: the feature extractor (audio) or the tokenizer (text).
    Stage 3 combines two stage-2 processors, so a whole-processor key would miss the stage-2 caches."""
    if modality == "audio":
        settings = processor.feature_extractor.to_dict()
        return {k: v for k, v in settings.items() if k not in ("processor_class", "auto_map")}
    tokenizer = processor.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # without the padding and truncation state, which the first call of the tokenizer sets
        vocabulary = json.dumps({k: v for k, v in json.loads(backend.to_str()).items() if k not in ("padding", "truncation")},
                                sort_keys=True)
    else:
        vocabulary = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return {"tokenizer": hashlib.sha256(vocabulary.encode()).hexdigest(), "class": type(tokenizer).__name__,
            "max_text_tokens": getattr(processor, "max_text_tokens", None)}


def cache_key(model, processor, dataset, modality):
    settings = {
        "modality": modality,
        "max_audio_seconds": model.config.max_audio_seconds,
        "max_text_tokens": model.config.max_text_tokens,
        "use_weighted_layer_sum": model.config.weighted_layer_sum(modality),
        "processor": processor_fingerprint(processor, modality),
    }
    digest = hashlib.sha256()
    digest.update(hash_model_weights(model.utterance_encoders[modality]).encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(data_fingerprint(dataset, modality).encode())
    return digest.hexdigest()[:KEY_LENGTH]


@torch.no_grad()
def compute_embeddings(model, processor, dataset, modality, batch_size=32, device="cpu", desc=None):
    """Stage-I embeddings `(rows, E)` of one modality, in row order, utterance by utterance (as stage I saw them)."""
    was_training = model.training
    model.eval()
    column = "text" if modality == "text" else "audio"
    values = dataset[column]
    chunks = []
    for start in tqdm(range(0, len(values), batch_size), desc=desc or f"{modality} embeddings", leave=False):
        batch = [[value] for value in values[start : start + batch_size]]
        inputs = processor(text=batch, return_tensors="pt") if modality == "text" else processor(audio=batch, return_tensors="pt")
        inputs = {k: v.to(device) for k, v in inputs.items()}
        chunks.append(model.get_utterance_embeddings(**inputs, modalities=[modality])[modality][:, 0].float().cpu())
    model.train(was_training)
    return torch.cat(chunks)


def read_cached(path, key, num_rows, what="embeddings"):
    """The embeddings cached at `path` under `key`, or None when there are none (compute them).

    An entry that does not parse, was written under another key, does not match its checksum or does not hold
    `num_rows` rows of float32 embeddings is discarded with one warning naming it (hcam.processing.cache)."""
    if not os.path.exists(path):
        return None
    try:
        tensors, _ = read_safetensors(path, key)
        embeddings = tensors.get("embeddings")
        if embeddings is None or embeddings.dim() != 2 or embeddings.dtype != torch.float32:
            raise DamagedCacheEntry(f"no float32 (rows, width) tensor 'embeddings' (holds {sorted(tensors)})")
        if embeddings.shape[0] != num_rows:
            raise DamagedCacheEntry(f"{embeddings.shape[0]} rows for {num_rows} utterances")
    except DamagedCacheEntry as damage:
        discard_damaged(path, damage)
        return None
    logger.info("%s read from %s", what, path)
    return embeddings


def write_cached(path, embeddings, key, metadata, what="embeddings"):
    """Save `embeddings` at `path` under `key` (temporary name, then rename: a killed run never leaves half a file).
    A failed write (full disk) is a warning: the run goes on with the embeddings in memory."""
    if write_safetensors(path, {"embeddings": embeddings}, key, metadata):
        logger.info("%s written to %s", what, path)


def cached_embeddings(model, processor, dataset, modality, cache_dir, split, batch_size=32, device="cpu"):
    """Load the split's embeddings from `cache_dir`, computing and saving them first when absent."""
    key = cache_key(model, processor, dataset, modality)
    path = os.path.join(cache_dir, f"{split}-{modality}-{key}.safetensors")
    what = f"Stage-I {modality} embeddings of {split}"
    embeddings = read_cached(path, key, len(dataset), what)
    if embeddings is not None:
        return embeddings
    embeddings = compute_embeddings(model, processor, dataset, modality, batch_size, device, desc=f"{split} {modality} embeddings")
    write_cached(path, embeddings, key, {"split": split, "modality": modality}, what)
    return embeddings
