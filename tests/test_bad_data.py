"""Bad data that used to pass silently: a label only validation or test has, a near-silent clip, and problems that
land in the output folder and on the card, not only in a long log."""

import json

import numpy as np
import pytest
import soundfile as sf
from fake_corpora import fake_manifest, write_wav

from hcam.processing.datasets import load_hcam_dataset
from hcam.processing.report import HCAMDataError


def test_a_label_only_validation_has_is_an_error_naming_it(tmp_path):
    tree = fake_manifest(tmp_path, dialogues={"train": 4, "validation": 2})
    rows = (tree / "validation.csv").read_text().splitlines()
    rows[1] = rows[1].rsplit(",", 1)[0] + ",clam"  # a typo of "calm"
    (tree / "validation.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(HCAMDataError, match=r"Label 'clam' occurs in the validation split \(1 rows: validation0#0\)"):
        load_hcam_dataset(train_file=tree / "train.csv", validation_file=tree / "validation.csv")


def test_near_silent_and_silent_clips_are_problems_like_corrupt_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("HCAM_CACHE", str(tmp_path / "cache"))
    tree = fake_manifest(tmp_path / "tree", dialogues={"train": 4, "test": 1})
    quiet, muted, broken = tree / "audio" / "train1_2.wav", tree / "audio" / "train2_0.wav", tree / "audio" / "test0_1.wav"
    data, rate = sf.read(str(quiet))
    sf.write(str(quiet), (data * 3e-3).astype(np.float32), rate)  # ~50 dB below the others, peak above 1e-4
    sf.write(str(muted), np.zeros(4000, dtype=np.float32), rate)
    broken.write_bytes(b"RIFF\x00\x00not a wav")
    dataset, report = load_hcam_dataset(data_dir=tree, check_audio=True, progress=False)
    kinds = {p.item: p.kind for p in report.problems}
    assert kinds == {"train/train1#2": "silent_audio", "train/train2#0": "silent_audio",
                     "test/test0#1 (test.csv:3)": "corrupt_audio"}, kinds  # the reader already names the row
    assert "dB below the corpus's median" in next(p.message for p in report.problems if p.item == "train/train1#2")
    assert all(p.skipped for p in report.problems)
    assert sum(len(ds) for ds in dataset.values()) == 5 * 4 - 3
    assert (tmp_path / "cache" / "audio_levels.json").is_file()  # measured once: the next stage reads the levels
    with pytest.raises(HCAMDataError, match="(?s)1 bad item.*test0#1"):  # the reader stops first, at the corrupt file
        load_hcam_dataset(data_dir=tree, check_audio=True, progress=False, skip_bad=False)
    write_wav(broken, 0)  # repaired: now the audio check stops, listing both quiet clips
    with pytest.raises(HCAMDataError, match=r"(?s)2 bad item\(s\) in the audio check:.*train2#0.*train1#2"):
        load_hcam_dataset(data_dir=tree, check_audio=True, progress=False, skip_bad=False)


def test_problems_land_in_the_output_folder_and_on_the_card(tmp_path, monkeypatch):
    from test_layouts import QUICK

    from hcam.trainer.run_stage import main

    monkeypatch.setenv("HCAM_CACHE", str(tmp_path / "cache"))
    tree = fake_manifest(tmp_path / "tree")
    sf.write(str(tree / "audio" / "train3_1.wav"), np.zeros(4000, dtype=np.float32), 16000)
    (tree / "audio" / "test1_2.wav").unlink()
    out = tmp_path / "stage1-audio"
    main(["--stage", "1", "--modality", "audio", "--data_dir", str(tree), "--output_dir", str(out), *QUICK])
    report = json.loads((out / "data_report.json").read_text())
    assert sorted((p["item"], p["kind"]) for p in report["problems"]) == [
        ("test/test1#2 (test.csv:8)", "missing_audio"), ("train/train3#1", "silent_audio")]
    card = (out / "README.md").read_text()
    assert "**Data problems:** 2 found, 2 items skipped (missing_audio: 1, silent_audio: 1)" in card
    marker = json.loads((out / "hcam_stage.json").read_text())
    assert marker["data"]["skipped"] == 2
