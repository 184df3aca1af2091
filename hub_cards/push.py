"""Push one stage's checkpoint folder to a Hub repo: safetensors only, one atomic commit per revision.

Each stage lives on its own branch (stage1-audio, stage1-text, stage2-audio, stage2-text, stage3) of the same
repo; the final model also goes to main. A revision changes only through a single `HfApi.create_commit`, which
the Hub applies all at once after the LFS objects are uploaded, so a push that fails or is interrupted leaves the
revision at its previous commit, and running the same push again finishes it. The diffing is the library's:
`create_commit` skips every file the revision already holds unchanged, and makes no commit when nothing changed.
(`upload_folder` would diff the deletions too, but with Xet storage it commits a folder in several batches,
which would break the one-commit guarantee, and it cannot upload the card in place of the folder's README.md.)
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import struct
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, ModelCard, constants

from .plots import CARD_ASR_FILE, CARD_TIMELINE_FILE

__all__ = ["push_stage", "select_files", "PickleRefusedError", "ALLOWED_PATTERNS", "PICKLE_PATTERNS"]

logger = logging.getLogger(__name__)

# What a stage revision may hold (flat: the remote-code bundle is flat sibling files).
ALLOWED_PATTERNS = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "processor_config.json",
    "preprocessor_config.json",
    "feature_extractor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "*.py",
    "README.md",
    "confusion_matrix.png",
    CARD_TIMELINE_FILE,
    CARD_ASR_FILE,
    "all_results.json",
    "eval_results.json",
    "test_results.json",
    "train_results.json",
)
# Never uploaded: formats that unpickle (run code) when loaded.
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", "*.joblib", "*.npy", "*.npz")
STAGE_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class PickleRefusedError(ValueError):
    """The folder's weights are pickled (or a file claiming to be safetensors is not)."""


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte little-endian header size and a JSON header."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                return False
            (size,) = struct.unpack("<Q", head)
            if size < 2 or size > min(100_000_000, path.stat().st_size - 8):
                return False
            header = json.loads(f.read(size))
        return isinstance(header, dict)
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def select_files(folder: str | os.PathLike) -> tuple[list[str], list[str]]:
    """The files of `folder` to upload and the ones left out (with the reason), after the safety checks.

    Raises:
        FileNotFoundError: the folder or its config.json / weights are missing.
        PickleRefusedError: the weights are pickled only, or a *.safetensors file is not safetensors.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Checkpoint folder {folder} does not exist: save the stage with save_pretrained first")
    upload, skipped = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in PICKLE_PATTERNS):
            skipped.append(f"{rel} (pickled format, never uploaded)")
        elif "/" in rel or not any(fnmatch.fnmatch(rel, pattern) for pattern in ALLOWED_PATTERNS):
            skipped.append(f"{rel} (not part of a model revision)")
        else:
            upload.append(rel)
    weights = [f for f in upload if f.endswith(".safetensors")]
    if not weights:
        pickled = [s for s in skipped if "pickled" in s]
        if pickled:
            raise PickleRefusedError(
                f"{folder} holds pickled weights only ({', '.join(pickled)}); hcam uploads safetensors only. "
                "Re-save the model with model.save_pretrained(folder) (transformers writes model.safetensors)."
            )
        raise FileNotFoundError(f"{folder} has no model.safetensors: save the stage with save_pretrained first")
    for name in weights:
        if not _is_safetensors(folder / name):
            raise PickleRefusedError(
                f"{folder / name} is not a safetensors file (its header does not parse); refusing to upload it. "
                "Re-save the model with save_pretrained."
            )
    if "model.safetensors.index.json" in upload:
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        missing = sorted(set(index.get("weight_map", {}).values()) - set(upload))
        if missing:
            raise FileNotFoundError(f"{folder}: shards {missing} named in model.safetensors.index.json are missing")
    if "config.json" not in upload:
        raise FileNotFoundError(f"{folder} has no config.json: save the stage with save_pretrained first")
    return upload, skipped


def _is_official_hub(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    return host == "huggingface.co" or host.endswith(".huggingface.co")


@contextlib.contextmanager
def _http_lfs_only(endpoint: str):
    """Outside huggingface.co (a local or mirror server) upload through plain LFS, not Xet storage.

    huggingface_hub reads HF_HUB_DISABLE_XET at import time; `is_xet_available()` checks the constant at call
    time, so flipping it for the duration of the push is enough.
    """
    if _is_official_hub(endpoint) or constants.HF_HUB_DISABLE_XET:
        yield
        return
    constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET = False


def push_stage(
    folder: str | os.PathLike,
    repo_id: str,
    stage_tag: str,
    *,
    card: ModelCard | None,
    token: str | None = None,
    endpoint: str | None = None,
    also_main: bool = False,
    private: bool = False,
) -> str:
    """Upload a stage checkpoint folder to branch `stage_tag` of `repo_id` (and to main if `also_main`).

    Args:
        folder: a `save_pretrained` folder (config.json, model.safetensors, processor files, the *.py bundle).
        repo_id: e.g. "org/hcam-iemocap"; created if missing.
        stage_tag: the branch for this stage, e.g. "stage2-text"; created from main if missing.
        card: the model card, uploaded as README.md (replacing any README.md in the folder, e.g. Trainer's).
        token: Hub token (None = the saved login or HF_TOKEN).
        endpoint: Hub URL (None = HF_ENDPOINT or huggingface.co).
        also_main: also commit the same files to main (the final model).
        private: create the repo private (ignored if it exists).

    Returns:
        The URL of the commit on `stage_tag`.

    Only the files in ALLOWED_PATTERNS go up; pickled files (*.bin, *.pt, *.pth, *.pkl, ...) never do, and a
    folder whose weights are pickled only raises PickleRefusedError. Files of an earlier push that the folder no
    longer has are deleted in the same commit, so a revision is exactly one checkpoint.
    """
    if not STAGE_REVISION.match(stage_tag) or stage_tag == "main":
        raise ValueError(f"stage_tag {stage_tag!r} must be a branch name such as 'stage2-text' (not 'main')")
    folder = Path(folder)
    files, skipped = select_files(folder)
    for entry in skipped:
        logger.info("push_stage: leaving out %s", entry)
    readme = str(card).encode("utf-8") if card is not None else None

    api = HfApi(endpoint=endpoint, token=token)
    with _http_lfs_only(api.endpoint):
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.create_branch(repo_id, branch=stage_tag, revision="main", exist_ok=True)
        url = None
        for revision in [stage_tag] + (["main"] if also_main else []):
            info = _commit_folder(api, folder, files, readme, repo_id, revision, stage_tag)
            url = url or info.commit_url
    return url


def _commit_folder(api: HfApi, folder: Path, files: list[str], readme: bytes | None, repo_id: str,
                   revision: str, stage_tag: str):
    """One commit that makes `revision` hold exactly `files` (+ README) on top of .gitattributes.

    Every file is handed to `create_commit`, which leaves out those the revision holds unchanged; what is left
    to us is deleting the files of an earlier push that the folder no longer has. They are listed at the commit
    this one builds on (`parent_commit`), so a push racing another is refused rather than mixed with it.
    """
    head = api.repo_info(repo_id, revision=revision).sha
    wanted = set(files) | ({"README.md"} if readme is not None else set())
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name))
                  for name in files if not (name == "README.md" and readme is not None)]
    if readme is not None:
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme))
    stale = set(api.list_repo_files(repo_id, revision=head)) - wanted - {".gitattributes"}
    operations += [CommitOperationDelete(path_in_repo=name) for name in sorted(stale)]
    return api.create_commit(
        repo_id,
        operations=operations,
        revision=revision,
        commit_message=f"Upload {stage_tag} checkpoint" + (" as the final model" if revision == "main" else ""),
        commit_description=f"Pushed by hcam.hub_cards.push_stage from {folder.name}/ ({len(files)} files).",
        parent_commit=head,
    )
