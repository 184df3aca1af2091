"""hcam's on-disk caches: one root, every entry verified when read and written atomically, `hcam-cache` to list and
clear them.

The root is ``$HCAM_CACHE``, else ``$HF_HOME/hcam`` (``HF_HOME``: ``$XDG_CACHE_HOME/huggingface`` or
``~/.cache/huggingface``, as huggingface_hub and ``datasets`` resolve it), shared by every run whatever its output
folder. One place per kind (:data:`CACHE_KINDS`):

- ``embeddings/``: stage-I embeddings and cross-fitted embeddings (`hcam.trainer.embedding_cache`,
  `hcam.trainer.cross_fit`; ``run_stage.py --embedding_cache_dir`` points a run elsewhere);
- ``features/``: frozen-encoder hidden states (`hcam.trainer.feature_cache`);
- ``audio_levels.json``: clip levels of the audio check (`hcam.processing.datasets`);
- ``meld/``: MELD's audio extracted as wavs (`hcam.processing.meld`; ``--audio_cache_dir`` points it elsewhere);
- ``datasets_audio/``: the audio of 🤗 datasets (``datasets.Audio`` bytes, or decoded arrays) written as files, named
  by their content (`hcam.processing.hf_datasets`).

A cache is never a reason to fail: an entry that cannot be read, was written under another key or does not have the
rows asked for is discarded with one warning naming it and computed again (:func:`discard_damaged`), and an entry that
cannot be written (full disk, read-only folder) costs the computing again next time, with a warning.
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import logging
import os
import shutil
import socket
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

# kind -> its file or folder under the root, and what it holds (`hcam-cache list`)
CACHE_KINDS = {
    "embeddings": ("embeddings", "stage-I and cross-fitted embeddings (stages II and III)"),
    "features": ("features", "frozen-encoder hidden states (stage I with --freeze_*_encoder)"),
    "audio-levels": ("audio_levels.json", "clip levels of the audio check"),
    "meld-audio": ("meld", "MELD audio extracted as 16 kHz wavs"),
    "dataset-audio": ("datasets_audio", "audio of 🤗 datasets (Hub or save_to_disk) written as files"),
}


def hf_home() -> Path:
    """huggingface_hub's cache home: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface."""
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface"


def cache_root() -> Path:
    """Where hcam keeps what it computes once: $HCAM_CACHE, else $HF_HOME/hcam (read at each call)."""
    if os.environ.get("HCAM_CACHE"):
        return Path(os.environ["HCAM_CACHE"]).expanduser()
    return hf_home() / "hcam"


def cache_path(kind: str) -> Path:
    """The file or folder of one kind of cache (:data:`CACHE_KINDS`) under :func:`cache_root`."""
    if kind not in CACHE_KINDS:
        raise ValueError(f"Unknown cache kind {kind!r}: one of {', '.join(CACHE_KINDS)}.")
    return cache_root() / CACHE_KINDS[kind][0]


# ----- reading and writing entries --------------------------------------------------------------------------------
class DamagedCacheEntry(Exception):
    """A cache entry that cannot be used (the message says why); it is discarded and computed again."""


def discard_damaged(path, reason) -> None:
    """One warning naming the damaged entry, then remove it (a file or a folder) so it is computed again."""
    logger.warning("Cache entry %s is damaged (%s): discarding it and computing it again.", path, reason)
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as error:  # read-only: the new entry is written over it, or not at all
        logger.debug("Could not remove %s: %s", path, error)


def partial_name(path) -> str:
    """A temporary name beside `path`, unique to this process (host and pid: caches may be on a shared disk)."""
    return f"{path}.partial-{socket.gethostname()}-{os.getpid()}"


# How a full disk shows in the writers hcam uses (checked on a full tmpfs): OSError(ENOSPC) from Python's own files,
# SafetensorError "I/O error: No space left on device (os error 28)" from safetensors, and from torch.save a
# RuntimeError of its stream writer that names no cause ("[enforce fail at inline_container.cc] . unexpected pos ...").
_FULL_DISK_WORDS = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")
_TORCH_WRITER_WORDS = ("inline_container", "PytorchStreamWriter")
NEARLY_FULL = 64 * 2**20  # bytes: a torch writer failure with less free than this is taken for a full disk


def _existing_folder(path):
    folder = os.path.dirname(os.path.abspath(path)) if not os.path.isdir(path) else os.path.abspath(path)
    while folder and not os.path.exists(folder):
        folder = os.path.dirname(folder)
    return folder


def is_disk_full(error: BaseException, path=None) -> bool:
    """Whether `error` (or an error it was raised from) says the disk or quota is full; a torch writer failure
    counts when the disk of `path` has less than NEARLY_FULL bytes free."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(error)
        if any(words in text for words in _FULL_DISK_WORDS):
            return True
        if path is not None and any(words in text for words in _TORCH_WRITER_WORDS):
            try:
                if shutil.disk_usage(_existing_folder(path)).free < NEARLY_FULL:
                    return True
            except OSError:
                pass
        error = error.__cause__ or error.__context__
    return False


def disk_full_message(path, error) -> str:
    """What to tell the user when `path` could not be written because its disk (or quota) is full."""
    folder = _existing_folder(path)
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    reason = getattr(error, "strerror", None) or error
    what = f"in {path}" if os.path.isdir(path) else str(path)
    return (f"The disk is full: writing {what} failed ({reason}; {free} on {folder}). Free some "
            f"space (`hcam-cache list` shows what hcam's caches hold, `hcam-cache clear` empties them) or point "
            f"HCAM_CACHE / --output_dir to a disk with room, then rerun the same command.")


def tensors_checksum(tensors) -> str:
    """sha256 of every tensor's name, dtype, shape and bytes: what a cache entry was written with."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_safetensors(path, key, checksum=True):
    """`(tensors, metadata)` of the entry at `path`, written under `key` by :func:`write_safetensors`.

    Raises DamagedCacheEntry when the file does not parse (cut short, zero-filled), was written under another key (a
    file copied or swapped between entries) or, with `checksum`, its bytes are not those it was written with."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()} if checksum else None
    except Exception as error:  # SafetensorError, OSError, ...: whatever the damage, compute again
        raise DamagedCacheEntry(f"unreadable: {type(error).__name__}: {error}") from error
    if metadata.get("key") != key:
        raise DamagedCacheEntry(f"written under key {metadata.get('key')!r}, not {key!r}")
    if checksum and metadata.get("checksum") != tensors_checksum(tensors):
        raise DamagedCacheEntry("its contents do not match the checksum it was written with")
    return tensors, metadata


def write_safetensors(path, tensors, key, metadata=None, checksum=True) -> bool:
    """Save `tensors` at `path` under a temporary name, then rename: a killed run never leaves half a file.

    The metadata holds `key` (and the tensors' checksum), which :func:`read_safetensors` checks. A write that fails
    (full disk, read-only cache) is a warning, not an error: returns whether the entry was written."""
    from safetensors.torch import save_file

    metadata = {**(metadata or {}), "key": key}
    if checksum:
        metadata["checksum"] = tensors_checksum(tensors)
    partial = partial_name(path)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_file({name: t.contiguous() for name, t in tensors.items()}, partial, metadata=metadata)
        os.replace(partial, path)
    except Exception as error:  # OSError, SafetensorError (a full disk shows as either): never a reason to fail
        remove_quietly(partial)
        warn_not_written(path, error)
        return False
    return True


def warn_not_written(path, error) -> None:
    """A cache entry that could not be written: the run goes on, computing it again next time."""
    reason = disk_full_message(path, error) if is_disk_full(error, path) else f"{type(error).__name__}: {error}"
    logger.warning("Cache entry %s not written, the run goes on without it. %s", path, reason)


def remove_quietly(path) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    except OSError:
        pass


# ----- hcam-cache -------------------------------------------------------------------------------------------------
def _entries(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir())


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def list_caches(out=None, verbose=False):
    """Print each kind's place, size and number of entries (`hcam-cache list`); returns {kind: (entries, bytes)}."""
    out = out or sys.stdout
    summary = {}
    print(f"hcam cache root: {cache_root()} (HCAM_CACHE overrides it)", file=out)
    for kind, (_, what) in CACHE_KINDS.items():
        path = cache_path(kind)
        entries = _entries(path)
        sizes = {entry: _size(entry) for entry in entries}
        summary[kind] = (len(entries), sum(sizes.values()))
        print(f"  {kind:<13} {_human(summary[kind][1]):>10}  {len(entries):>5} entr{'y' if len(entries) == 1 else 'ies'}"
              f"  {path}  ({what})", file=out)
        if verbose:
            for entry, size in sizes.items():
                print(f"      {_human(size):>10}  {entry.name}", file=out)
    return summary


def clear_caches(kinds, out=None):
    """Remove the given kinds of cache (their files and folders) and say what was freed."""
    out = out or sys.stdout
    for kind in kinds:
        path = cache_path(kind)
        if not path.exists():
            continue
        size = _size(path)
        remove_quietly(path)
        print(f"Removed {path} ({kind}, {_human(size)})", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="hcam-cache",
        description=f"List or clear hcam's caches (root: $HCAM_CACHE, else $HF_HOME/hcam; now {cache_root()}). "
                    "Everything there is computed again when missing.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="each cache's place, size and number of entries")
    listing.add_argument("-v", "--verbose", action="store_true", help="also list every entry")
    clearing = commands.add_parser("clear", help="remove caches (all kinds, or the one named)")
    clearing.add_argument("kind", nargs="?", choices=list(CACHE_KINDS), help="only this kind")
    clearing.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    args = parser.parse_args(argv)
    if args.command == "list":
        list_caches(verbose=args.verbose)
        return 0
    kinds = [args.kind] if args.kind else list(CACHE_KINDS)
    present = [k for k in kinds if cache_path(k).exists()]
    if not present:
        print(f"Nothing to clear under {cache_root()}.")
        return 0
    if not args.yes:
        listed = ", ".join(f"{k} ({_human(_size(cache_path(k)))})" for k in present)
        if not sys.stdin.isatty():
            print(f"hcam-cache clear would remove {listed} under {cache_root()}; pass --yes to confirm.",
                  file=sys.stderr)
            return 1
        if input(f"Remove {listed} under {cache_root()}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("Nothing removed.")
            return 1
    clear_caches(present)
    return 0


if __name__ == "__main__":
    sys.exit(main())
