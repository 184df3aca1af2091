"""A full disk (issue 25) while saving a checkpoint or the stage folder: the complete checkpoints stay loadable, the
run stops with a message that says the disk is full, and rerunning the same command finishes with the result of a run
that never met it. (A full disk while writing a cache entry: tests/test_caches.py.)"""

import errno
import json
import os

import pytest
import torch
from test_trainer import stage_argv, write_corpus

from hcam.processing import cache as hcam_cache

KEYS = ("eval_weighted_f1", "eval_accuracy", "eval_loss", "test_weighted_f1", "test_loss")


def full_disk_error():
    return OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A stage-1 run that never meets a full disk: 4 steps per epoch, 3 epochs, a checkpoint per epoch."""
    from hcam.trainer.run_stage import main

    root = tmp_path_factory.mktemp("full_disk")
    corpus = str(root / "corpus")
    write_corpus(corpus, dialogues={"train": 4, "validation": 2, "test": 2})
    argv = lambda out: stage_argv(str(root / out), "stage1-audio", corpus, None, epochs=3)  # noqa: E731
    main(argv("reference"))
    return {"argv": argv, "root": root,
            "results": json.load(open(root / "reference" / "stage1-audio" / "all_results.json"))}


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_last_one_and_resumes(reference, monkeypatch):
    from hcam.modeling_hcam import HCAMForEmotionRecognition
    from hcam.trainer.run_stage import main

    real_save = torch.save

    def save(obj, path, *args, **kwargs):  # the second checkpoint's optimizer state meets a full disk half way
        if "checkpoint-8" in str(path):
            with open(path, "wb") as f:
                f.write(b"\0" * 64)
            raise full_disk_error()
        return real_save(obj, path, *args, **kwargs)

    argv = reference["argv"]("full")
    folder = reference["root"] / "full" / "stage1-audio"
    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    message = str(stopped.value)
    assert message.startswith(f"The disk is full: writing in {folder} failed (No space left on device"), message
    assert f"The last complete checkpoint, {folder / 'checkpoint-4'}, is intact" in message, message
    left = sorted(os.listdir(folder))
    assert "checkpoint-4" in left and "checkpoint-8" not in left and ".staging" not in left, left
    assert "hcam_stage.json" not in left and ".hcam_run.lock" not in left, left
    HCAMForEmotionRecognition.from_pretrained(folder / "checkpoint-4")  # the previous checkpoint loads

    monkeypatch.setattr(torch, "save", real_save)  # space freed: the same command resumes and finishes
    main(argv)
    got = json.load(open(folder / "all_results.json"))
    for key in KEYS:
        assert got[key] == pytest.approx(reference["results"][key], abs=1e-5), key


def test_a_full_disk_while_finishing_the_stage_folder_is_resumable(reference, monkeypatch):
    from hcam.trainer import hub
    from hcam.trainer.run_stage import main

    def write(path, text):  # the model card meets a full disk after the best model was moved into the folder
        with open(path + ".partial", "w", encoding="utf-8") as f:
            f.write(text[:10])
        raise full_disk_error()

    argv = reference["argv"]("finish")
    folder = reference["root"] / "finish" / "stage1-audio"
    monkeypatch.setattr(hub, "write_atomic", write)  # the card: hub writes it with stage_folder.write_atomic
    with pytest.raises(SystemExit, match="The disk is full"):
        main(argv)
    assert not (folder / "hcam_stage.json").exists()  # unfinished, and seen so: the rerun finishes it
    assert [c for c in os.listdir(folder) if c.startswith("checkpoint-")]

    monkeypatch.undo()
    # a cut-short results file from the interrupted run does not stop the rerun
    (folder / "all_results.json").write_text('{"eval_weighted_f1": 0.')
    marker = main(argv)
    assert marker["stage"] == 1 and (folder / "hcam_stage.json").exists() and (folder / "README.md").exists()
    got = json.load(open(folder / "all_results.json"))
    for key in KEYS:
        assert got[key] == pytest.approx(reference["results"][key], abs=1e-5), key
    assert not [c for c in os.listdir(folder) if c.startswith("checkpoint-") or c.startswith(".")]


def test_a_full_disk_is_recognised_in_each_form_the_writers_raise_it(tmp_path, monkeypatch):
    """As met on a full tmpfs: Python's OSError, safetensors' SafetensorError and torch.save's stream-writer
    RuntimeError (which names no cause: a full disk when the disk has (almost) no room left)."""
    from safetensors import SafetensorError

    assert hcam_cache.is_disk_full(full_disk_error())
    assert hcam_cache.is_disk_full(SafetensorError("Error while serializing: I/O error: No space left on device "
                                                   "(os error 28)"))
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = full_disk_error()
    assert hcam_cache.is_disk_full(wrapped)
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert not hcam_cache.is_disk_full(torch_error)  # no path to look at
    assert not hcam_cache.is_disk_full(torch_error, tmp_path)  # this disk has room
    monkeypatch.setattr(hcam_cache.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 4096})())
    assert hcam_cache.is_disk_full(torch_error, tmp_path)
    assert not hcam_cache.is_disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path)
    assert not hcam_cache.is_disk_full(ValueError("bad value"), tmp_path)
