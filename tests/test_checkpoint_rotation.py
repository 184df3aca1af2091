"""A run killed while it deletes old checkpoints (save_total_limit, or the end of a stage) never leaves a half-deleted
folder under a checkpoint's name: each is renamed to .deleting-<name> first, and the next run clears those (found by
the random-kill test of tests/test_reliability.py, issue 25)."""

import os
import shutil

import pytest

from hcam.trainer import trainer as stage_trainer


def checkpoint(folder, step):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "trainer_state.json", "optimizer.pt"):
        (path / name).write_text(name)
    return path


class Killed(BaseException):
    pass


def test_a_deletion_killed_half_way_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    run_dir = tmp_path / "stage1-text"
    for step in (4, 8, 12):
        checkpoint(run_dir, step)

    class Args:
        save_total_limit = 1

    class State:
        best_model_checkpoint = str(run_dir / "checkpoint-8")

    trainer = object.__new__(stage_trainer.HCAMStageTrainer)
    trainer.args, trainer.state = Args, State
    real_rmtree = shutil.rmtree

    def killed_rmtree(path, *args, **kwargs):  # one file deleted, then SIGKILL
        if not os.path.exists(path):
            return
        files = sorted(os.listdir(path))
        os.remove(os.path.join(path, files[0]))
        raise Killed()

    monkeypatch.setattr(stage_trainer.shutil, "rmtree", killed_rmtree)
    with pytest.raises(Killed):
        trainer._rotate_final_checkpoints(str(run_dir))
    monkeypatch.setattr(stage_trainer.shutil, "rmtree", real_rmtree)
    left = sorted(os.listdir(run_dir))
    assert left == [".deleting-checkpoint-4", "checkpoint-12", "checkpoint-8"], left
    for name in ("checkpoint-8", "checkpoint-12"):  # every folder under a checkpoint's name is whole
        assert len(os.listdir(run_dir / name)) == 4

    stage_trainer.remove_leftovers(str(run_dir))  # what the next run does first
    assert sorted(os.listdir(run_dir)) == ["checkpoint-12", "checkpoint-8"]
    trainer._rotate_final_checkpoints(str(run_dir))  # the best (8) and the newest (12) are kept, as transformers does
    assert sorted(os.listdir(run_dir)) == ["checkpoint-12", "checkpoint-8"]
    checkpoint(run_dir, 16)
    trainer._rotate_final_checkpoints(str(run_dir))
    assert sorted(os.listdir(run_dir)) == ["checkpoint-16", "checkpoint-8"]
