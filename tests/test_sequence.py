"""The one stage sequence (`hcam.trainer.stage_folder.run_sequence`) that the demo, cross-validation and the bench
experiments run: which stages, from which folders, with which flags, and what is skipped."""
import os

from hcam.trainer.stage_folder import run_sequence
from hcam.trainer.stages import SEQUENCE, Stage, stages_for


def test_every_stage_starts_from_the_folders_of_the_stages_it_needs(tmp_path):
    ran = []
    folders = run_sequence(str(tmp_path), ["--recipe", "r.json"], run=lambda stage, argv: ran.append((stage, argv)))
    assert [stage for stage, _ in ran] == list(SEQUENCE)
    by_tag = {stage.tag: argv for stage, argv in ran}
    assert by_tag["stage2-text"][:6] == ["--stage", "2", "--modality", "text", "--init_from",
                                         os.path.join(str(tmp_path), "stage1-text")]
    stage3 = by_tag["stage3"]
    assert stage3[stage3.index("--init_from") + 1:stage3.index("--init_from") + 3] == [
        os.path.join(str(tmp_path), "stage2-audio"), os.path.join(str(tmp_path), "stage2-text")]
    assert all(argv[-2:] == ["--recipe", "r.json"] for _, argv in ran)
    assert folders == {s.tag: os.path.join(str(tmp_path), s.tag) for s in SEQUENCE}


def test_stages_trained_elsewhere_are_used_as_they_are_and_flags_go_per_stage(tmp_path):
    ran = []
    done = {"stage1-text": "/shared/stage1-text"}
    folders = run_sequence(str(tmp_path), {"*": ["--seed", "7"], "stage2-text": ["--dropout", "0.5"]},
                           stages=[Stage(2, "text")], done=done, run=lambda stage, argv: ran.append(argv))
    assert ran == [["--stage", "2", "--modality", "text", "--init_from", "/shared/stage1-text", "--output_dir",
                    os.path.join(str(tmp_path), "stage2-text"), "--seed", "7", "--dropout", "0.5"]]
    assert folders == {**done, "stage2-text": os.path.join(str(tmp_path), "stage2-text")}


def test_finished_stages_are_skipped_unless_asked_to_run_anyway(tmp_path):
    (tmp_path / "stage1-audio").mkdir()
    (tmp_path / "stage1-audio" / "hcam_stage.json").write_text("{}")
    ran = []
    run_sequence(str(tmp_path), stages=SEQUENCE[:2], run=lambda stage, argv: ran.append(stage.tag))
    assert ran == ["stage1-text"]
    ran.clear()
    run_sequence(str(tmp_path), stages=SEQUENCE[:2], run=lambda stage, argv: ran.append(stage.tag), skip_finished=False)
    assert ran == ["stage1-audio", "stage1-text"]


def test_a_text_only_corpus_runs_stages_one_and_two_of_text():
    assert [s.tag for s in stages_for(["text"])] == ["stage1-text", "stage2-text"]
    assert stages_for(["audio", "text"]) == SEQUENCE
