"""hcam's caches (issue 25): one root, damaged entries rebuilt with one warning, full disks survived, `hcam-cache`.

Every cache (stage-I embeddings, cross-fitted embeddings, frozen-encoder features, audio levels) is damaged here the
ways a long run meets: a file cut short, a file zero-filled, files swapped between keys, an entry with other rows.
Each time the code path is run again: it computes the entry again, with one warning naming it, and gives what it gave
before.
"""

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny import minilm_processor, tiny_hcam_config

from hcam.modeling_hcam import HCAMForEmotionRecognition
from hcam.processing import cache as hcam_cache


def truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def zero_fill(path):
    size = os.path.getsize(path)
    with open(path, "wb") as f:
        f.write(b"\0" * size)


def swap(a, b):
    tmp = f"{a}.swap"
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)


def read_entry(path):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return f.get_tensor("embeddings").clone(), f.metadata()


def damage_warnings(caplog, path):
    """The warnings that name `path` as a damaged cache entry."""
    return [r for r in caplog.records if r.levelno == logging.WARNING and "is damaged" in r.getMessage()
            and str(path) in r.getMessage()]


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HCAM_CACHE", str(tmp_path / "hcam_cache"))
    return tmp_path / "hcam_cache"


# ----- the root -----------------------------------------------------------------------------------------------------
def test_cache_root_is_hcam_cache_else_under_the_hugging_face_home(tmp_path, monkeypatch):
    from huggingface_hub import constants

    # huggingface_hub resolves its home once, at import: hcam resolves it the same way, at each call
    assert hcam_cache.hf_home() == Path(constants.HF_HOME).expanduser()
    monkeypatch.delenv("HCAM_CACHE", raising=False)
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert hcam_cache.cache_root() == Path("~/.cache/huggingface/hcam").expanduser()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hcam_cache.cache_root() == tmp_path / "xdg" / "huggingface" / "hcam"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hcam_cache.cache_root() == tmp_path / "hf" / "hcam"
    monkeypatch.setenv("HCAM_CACHE", str(tmp_path / "mine"))
    assert hcam_cache.cache_root() == tmp_path / "mine"
    assert hcam_cache.cache_path("embeddings") == tmp_path / "mine" / "embeddings"
    assert hcam_cache.cache_path("audio-levels") == tmp_path / "mine" / "audio_levels.json"
    with pytest.raises(ValueError, match="Unknown cache kind 'nope'"):
        hcam_cache.cache_path("nope")


def test_the_tests_never_touch_the_users_cache():
    root = str(hcam_cache.cache_root())
    assert not root.startswith(os.path.expanduser("~/.cache")), root


# ----- stage-I and cross-fitted embeddings --------------------------------------------------------------------------
def text_rows(n=10):
    from datasets import Dataset

    words = ["furious", "delighted", "miserable", "calm", "tired"]
    return Dataset.from_dict({"dialogue_id": [f"d{i // 4}" for i in range(n)], "turn": [i % 4 for i in range(n)],
                              "text": [f"I feel {words[i % 5]} today {i}" for i in range(n)], "audio": [""] * n})


@pytest.fixture(scope="module")
def text_model():
    torch.manual_seed(0)
    return HCAMForEmotionRecognition(tiny_hcam_config(1, ("text",))).eval(), minilm_processor()


@pytest.mark.parametrize("damage", ["truncate", "zero_fill", "swap", "other_rows"])
def test_a_damaged_embedding_entry_is_computed_again_with_one_warning(damage, text_model, cache_root, caplog):
    from hcam.trainer.embedding_cache import cached_embeddings

    model, processor = text_model
    folder = str(cache_root / "embeddings")
    rows, other = text_rows(10), text_rows(7)
    caplog.set_level(logging.INFO, logger="hcam")
    first = cached_embeddings(model, processor, rows, "text", folder, "train")
    cached_embeddings(model, processor, other, "text", folder, "validation")
    path, other_path = (os.path.join(folder, f) for f in sorted(os.listdir(folder), key=lambda f: not f.startswith("train")))
    assert os.path.basename(path).startswith("train-") and not [f for f in os.listdir(folder) if ".partial" in f]
    caplog.clear()
    if damage == "truncate":
        truncate(path)
    elif damage == "zero_fill":
        zero_fill(path)
    elif damage == "swap":  # files swapped between two keys: each now holds the other's entry
        swap(path, other_path)
    else:  # an entry under the right name and key that holds other rows (7 for 10)
        from hcam.processing.cache import read_safetensors, write_safetensors

        key = os.path.basename(path).rsplit("-", 1)[1].split(".")[0]
        tensors, _ = read_safetensors(other_path, os.path.basename(other_path).rsplit("-", 1)[1].split(".")[0])
        write_safetensors(path, tensors, key)
    again = cached_embeddings(model, processor, rows, "text", folder, "train")
    assert torch.equal(again, first)
    assert len(damage_warnings(caplog, path)) == 1, [r.getMessage() for r in caplog.records]
    assert any("written to" in r.getMessage() and path in r.getMessage() for r in caplog.records)
    # the entry was written again, whole: the next read is silent and gives the same
    caplog.clear()
    assert torch.equal(cached_embeddings(model, processor, rows, "text", folder, "train"), first)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("read from" in r.getMessage() and path in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("damage", ["truncate", "zero_fill", "swap"])
def test_a_damaged_cross_fitted_entry_is_discarded_with_one_warning(damage, cache_root, caplog):
    """The cross-fitted entries go through the same reader (read_cached with their own key)."""
    from hcam.trainer.embedding_cache import read_cached, write_cached

    folder = cache_root / "embeddings"
    paths = {key: str(folder / f"train-text-oof3-{key}.safetensors") for key in ("a" * 24, "b" * 24)}
    for index, (key, path) in enumerate(paths.items()):
        write_cached(path, torch.full((6, 4), float(index)), key, {"cross_fit_folds": "3"})
    (key, path), (other_key, other_path) = paths.items()
    assert torch.equal(read_cached(path, key, 6), torch.zeros(6, 4))
    {"truncate": truncate, "zero_fill": zero_fill, "swap": lambda p: swap(p, other_path)}[damage](path)
    caplog.set_level(logging.INFO, logger="hcam")
    assert read_cached(path, key, 6) is None
    assert len(damage_warnings(caplog, path)) == 1
    assert not os.path.exists(path)  # discarded: the caller computes and writes it again


def test_a_cut_short_stage1_cache_no_longer_stops_stage2(tmp_path, cache_root, caplog):
    """The issue's symptom: a truncated stage-I embedding cache file made `run_stage.py --stage 2` stop with
    `SafetensorError: ... incomplete metadata`. Now stage 2 computes the entries again and gives the same result."""
    from test_trainer import stage_argv, write_corpus, write_tiny_text_encoder

    from hcam.trainer.run_stage import main

    corpus, encoder, out = str(tmp_path / "corpus"), str(tmp_path / "bert"), str(tmp_path / "runs")
    write_corpus(corpus, dialogues={"train": 4, "validation": 2, "test": 2})
    write_tiny_text_encoder(encoder)
    no_cross_fit = ["--cross_fit_folds", "0"]
    main(stage_argv(out, "stage1-text", corpus, encoder, epochs=1))
    main(stage_argv(out, "stage2-text", corpus, encoder, epochs=1, extra=no_cross_fit))
    folder = cache_root / "embeddings"
    entries = sorted(folder.iterdir())
    assert len(entries) == 3, entries  # train, validation, test
    contents = {p.name: read_entry(p) for p in entries}
    truncate(entries[0])
    zero_fill(entries[1])
    caplog.set_level(logging.INFO, logger="hcam")
    argv = stage_argv(out, "stage2-text", corpus, encoder, epochs=1, extra=no_cross_fit)
    argv[argv.index("--output_dir") + 1] = f"{out}/stage2-text-again"
    main(argv)
    for damaged in entries[:2]:
        assert len(damage_warnings(caplog, damaged)) == 1
    again = {p.name: read_entry(p) for p in sorted(folder.iterdir())}
    assert again.keys() == contents.keys()
    for name, (tensor, metadata) in contents.items():  # the same entries, bit for bit
        assert torch.equal(again[name][0], tensor) and again[name][1] == metadata, name
    first = json.load(open(f"{out}/stage2-text/all_results.json"))
    second = json.load(open(f"{out}/stage2-text-again/all_results.json"))
    assert second["test_weighted_f1"] == pytest.approx(first["test_weighted_f1"])


def test_an_embedding_entry_that_cannot_be_written_is_a_warning(text_model, cache_root, caplog, monkeypatch):
    from safetensors import torch as st_torch

    from hcam.trainer.embedding_cache import cached_embeddings

    model, processor = text_model
    folder = str(cache_root / "embeddings")

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 100)  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(st_torch, "save_file", full_disk)
    caplog.set_level(logging.INFO, logger="hcam")
    embeddings = cached_embeddings(model, processor, text_rows(), "text", folder, "train")
    assert embeddings.shape[0] == 10
    assert os.listdir(folder) == []  # no entry and no partial file
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "The disk is full" in warnings[0] and "hcam-cache" in warnings[0], warnings


# ----- frozen-encoder features --------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate_shard", "zero_fill_shard", "zero_fill_index", "truncate_index",
                                    "swap", "missing_shard"])
def test_a_damaged_feature_cache_is_rebuilt_with_one_warning(damage, text_model, cache_root, caplog, monkeypatch):
    from hcam.trainer import feature_cache
    from hcam.trainer.feature_cache import cached_features

    monkeypatch.setattr(feature_cache, "SHARD_UTTERANCES", 4)  # a few shards per split
    model, processor = text_model
    folder = str(cache_root / "features")
    rows, other = text_rows(10), text_rows(10).map(lambda r: {"text": r["text"] + " again"})
    store = cached_features(model, processor, rows, "text", folder, "train")
    first = [store[i].clone() for i in range(len(rows))]
    cached_features(model, processor, other, "text", folder, "validation")
    path, other_path = (os.path.join(folder, f) for f in sorted(os.listdir(folder), key=lambda f: not f.startswith("train")))
    assert len(store.shards) == 3 and not [f for f in os.listdir(folder) if ".partial" in f]
    {"truncate_shard": lambda: truncate(os.path.join(path, "shard-00001.safetensors")),
     "zero_fill_shard": lambda: zero_fill(os.path.join(path, "shard-00000.safetensors")),
     "zero_fill_index": lambda: zero_fill(os.path.join(path, "index.json")),
     "truncate_index": lambda: truncate(os.path.join(path, "index.json")),
     "swap": lambda: swap(os.path.join(path, "shard-00002.safetensors"), os.path.join(other_path, "shard-00002.safetensors")),
     "missing_shard": lambda: os.remove(os.path.join(path, "shard-00002.safetensors"))}[damage]()
    caplog.set_level(logging.INFO, logger="hcam")
    again = cached_features(model, processor, rows, "text", folder, "train")
    assert all(torch.equal(again[i], first[i]) for i in range(len(rows)))
    assert len(damage_warnings(caplog, path)) == 1, [r.getMessage() for r in caplog.records]
    caplog.clear()
    cached_features(model, processor, rows, "text", folder, "train")  # rebuilt whole: read silently
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_full_disk_while_building_features_stops_with_a_message_and_leaves_nothing(text_model, cache_root,
                                                                                   monkeypatch):
    from hcam.trainer import feature_cache

    def full_disk(tensors, filename, metadata=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(feature_cache, "save_file", full_disk)
    model, processor = text_model
    folder = cache_root / "features"
    with pytest.raises(SystemExit, match="The disk is full"):
        feature_cache.cached_features(model, processor, text_rows(), "text", str(folder), "train")
    assert not folder.exists() or list(folder.iterdir()) == []


# ----- audio levels -------------------------------------------------------------------------------------------------
def audio_corpus(folder, n=4):
    from datasets import Dataset, DatasetDict

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"clip{i}.wav")
        sf.write(path, (0.1 * (i + 1) * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000)
        paths.append(path)
    rows = Dataset.from_dict({"dialogue_id": ["d0"] * n, "turn": list(range(n)), "audio": paths})
    return DatasetDict({"train": rows})


@pytest.mark.parametrize("damage", ["truncate", "zero_fill", "bad_entries", "not_an_object"])
def test_a_damaged_audio_level_cache_is_measured_again_with_one_warning(damage, tmp_path, cache_root, caplog,
                                                                        monkeypatch):
    from hcam.processing import datasets as hcam_datasets
    from hcam.processing.report import DataReport

    corpus = audio_corpus(str(tmp_path / "clips"))
    hcam_datasets.check_audio_clips(corpus, DataReport(), progress=False)
    path = hcam_cache.cache_path("audio-levels")
    before = json.loads(path.read_text())
    assert before["format"] == 1 and len(before["entries"]) == 4
    if damage == "truncate":
        truncate(path)
    elif damage == "zero_fill":
        zero_fill(path)
    elif damage == "bad_entries":
        entries = dict(before["entries"])
        first = sorted(entries)[0]
        entries[first] = ["loud", None]
        path.write_text(json.dumps({"format": 1, "entries": entries}))
    else:
        path.write_text("[1, 2, 3]")
    measured = []
    real_measure = hcam_datasets._measure
    monkeypatch.setattr(hcam_datasets, "_measure", lambda *a: measured.append(a[0]) or real_measure(*a))
    caplog.set_level(logging.INFO, logger="hcam")
    report = DataReport()
    hcam_datasets.check_audio_clips(corpus, report, progress=False)
    assert report.ok
    assert len(damage_warnings(caplog, path)) == 1, [r.getMessage() for r in caplog.records]
    assert len(measured) == (1 if damage == "bad_entries" else 4)
    assert json.loads(path.read_text()) == before  # measured again to the same levels, and rewritten


def test_audio_levels_that_cannot_be_written_are_a_warning(tmp_path, cache_root, caplog, monkeypatch):
    from hcam.processing import datasets as hcam_datasets
    from hcam.processing.report import DataReport

    real_replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith("audio_levels.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(hcam_datasets.os, "replace", full_disk)
    caplog.set_level(logging.WARNING, logger="hcam")
    hcam_datasets.check_audio_clips(audio_corpus(str(tmp_path / "clips")), DataReport(), progress=False)
    assert any("The disk is full" in r.getMessage() for r in caplog.records)
    assert not cache_root.exists() or not [p for p in cache_root.iterdir() if "partial" in p.name]


# ----- hcam-cache ---------------------------------------------------------------------------------------------------
def test_hcam_cache_lists_sizes_and_clears(cache_root, capsys, monkeypatch):
    (cache_root / "embeddings").mkdir(parents=True)
    (cache_root / "embeddings" / "train-text-x.safetensors").write_bytes(b"x" * 2048)
    (cache_root / "embeddings" / "test-text-y.safetensors").write_bytes(b"x" * 1024)
    (cache_root / "features" / "train-audio-frozen-z").mkdir(parents=True)
    (cache_root / "features" / "train-audio-frozen-z" / "shard-00000.safetensors").write_bytes(b"x" * 4096)
    (cache_root / "audio_levels.json").write_text("{}")

    assert hcam_cache.main(["list"]) == 0
    out = capsys.readouterr().out
    assert str(cache_root) in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "3.0 KiB" in lines["embeddings"] and "2 entries" in lines["embeddings"]
    assert "4.0 KiB" in lines["features"] and "1 entry" in lines["features"]
    assert "0 entries" in lines["meld-audio"]

    monkeypatch.setattr("sys.stdin", open(os.devnull))  # not a terminal: clear without --yes asks for it
    assert hcam_cache.main(["clear", "embeddings"]) == 1
    assert "--yes" in capsys.readouterr().err and (cache_root / "embeddings").exists()
    assert hcam_cache.main(["clear", "embeddings", "--yes"]) == 0
    assert not (cache_root / "embeddings").exists() and (cache_root / "features").exists()
    assert hcam_cache.main(["clear", "--yes"]) == 0
    assert not (cache_root / "features").exists() and not (cache_root / "audio_levels.json").exists()


def test_hcam_cache_is_a_console_script():
    import subprocess
    import sys

    script = shutil.which("hcam-cache", path=os.path.dirname(sys.executable))
    assert script, "hcam-cache is not installed beside this Python: `make setup` (setup.py's entry points) installs it"
    result = subprocess.run([script, "list"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert os.environ["HCAM_CACHE"] in result.stdout
