"""Fingerprints that key on-disk caches (processed datasets, stage-I embeddings).

A cache entry is valid only for the exact inputs that made it: the data (files or a Dataset), the
processor's settings and, for embedding caches, the encoder weights. ``make_fingerprint`` hashes
any mix of these into a short hex string; change any part and the key changes.

- Files are hashed by (absolute path, size, mtime) by default, which is instant for thousands of
  clips; ``content=True`` hashes the bytes instead (slower, survives copies and touch).
- A ``datasets.Dataset`` contributes its own ``_fingerprint`` (datasets updates it on every
  transform), so no data is re-read.
- A processor / feature extractor / tokenizer contributes ``to_dict()`` (its saved settings) plus,
  for a tokenizer, its vocabulary.
- Model weights: ``hash_model_weights`` over a ``state_dict`` or a folder's weight files.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

FINGERPRINT_LENGTH = 16
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def _sha():
    return hashlib.sha256()


def hash_file(path, chunk_size: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    digest = _sha()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_files(paths: Iterable, content: bool = False) -> str:
    """Fingerprint of a set of files: (path, size, mtime) each, or their bytes with ``content=True``.

    A missing file contributes "missing" rather than raising, so a cache built before a file went
    missing is not reused.
    """
    digest = _sha()
    for path in sorted(str(Path(p).expanduser().resolve()) for p in paths if p):
        digest.update(path.encode())
        if not os.path.isfile(path):
            digest.update(b"missing")
        elif content:
            digest.update(hash_file(path).encode())
        else:
            stat = os.stat(path)
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def fingerprint_dataset(dataset) -> str:
    """Fingerprint of a Dataset or DatasetDict (datasets' own per-transform fingerprints)."""
    if hasattr(dataset, "items") and not hasattr(dataset, "_fingerprint"):
        return make_fingerprint({split: fingerprint_dataset(ds) for split, ds in dataset.items()})
    fingerprint = getattr(dataset, "_fingerprint", None)
    if fingerprint is None:
        raise TypeError(f"cannot fingerprint {type(dataset).__name__}; pass a datasets.Dataset or DatasetDict")
    return str(fingerprint)


def processor_settings(processor) -> dict[str, Any]:
    """The settings of a processor, feature extractor or tokenizer that change its outputs."""
    if processor is None:
        return {}
    if isinstance(processor, dict):
        return processor
    settings: dict[str, Any] = {"class": type(processor).__name__}
    to_dict = getattr(processor, "to_dict", None)
    if callable(to_dict):
        try:
            settings["config"] = to_dict()
        except Exception:  # some tokenizers have no to_dict; their init kwargs say the same
            settings["config"] = getattr(processor, "init_kwargs", {})
    for name in ("feature_extractor", "tokenizer"):
        sub = getattr(processor, name, None)
        if sub is not None and sub is not processor:
            settings[name] = processor_settings(sub)
    get_vocab = getattr(processor, "get_vocab", None)
    if callable(get_vocab):
        vocab_digest = _sha()
        for token, index in sorted(get_vocab().items(), key=lambda kv: kv[1]):
            vocab_digest.update(f"{index}\t{token}\n".encode())
        settings["vocab"] = vocab_digest.hexdigest()
    return settings


def hash_model_weights(model_or_path) -> str:
    """Fingerprint of model weights: an nn.Module / state_dict, or a folder or file of weights."""
    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path).expanduser()
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in _WEIGHT_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no weight files ({', '.join(_WEIGHT_SUFFIXES)}) under {path}")
        digest = _sha()
        for file in files:
            digest.update(file.name.encode())
            digest.update(hash_file(file).encode())
        return digest.hexdigest()[:FINGERPRINT_LENGTH]
    import torch

    state_dict = model_or_path.state_dict() if hasattr(model_or_path, "state_dict") else model_or_path
    digest = _sha()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


def make_fingerprint(*parts: Any, **named: Any) -> str:
    """A short, stable hex fingerprint of JSON-able parts (dicts are key-sorted; other objects use repr)."""
    payload = json.dumps({"parts": parts, "named": named}, sort_keys=True, default=_json_default)
    return hashlib.sha256(payload.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)


def cache_fingerprint(data=None, processor=None, model=None, **settings: Any) -> str:
    """The key of a cache entry: data (Dataset/DatasetDict or file paths) + processor + weights + settings."""
    if data is None:
        data_part = None
    elif hasattr(data, "_fingerprint") or hasattr(data, "items"):
        data_part = fingerprint_dataset(data)
    else:
        data_part = fingerprint_files(data)
    return make_fingerprint(data=data_part, processor=processor_settings(processor),
                            model=None if model is None else hash_model_weights(model), settings=settings)


def cache_path(cache_dir, kind: str, fingerprint: str) -> Path:
    """``<cache_dir>/<kind>/<fingerprint>``: one folder per cache entry."""
    return Path(cache_dir).expanduser() / kind / fingerprint
