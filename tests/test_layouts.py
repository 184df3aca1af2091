"""Every distributed layout through every stage: run_stage.py stage I (audio, text), II (audio, text) and III on tiny
fake release trees of IEMOCAP (6- and 4-class), MELD (mp4 clips), CMU-MOSI (binary, 7-class) and a plain manifest
with only train and test files; each run is checked for its label set in id order, its split sizes, its data
report and a card that names the corpus and its protocol."""

import json
import os

import pytest
from fake_corpora import fake_iemocap, fake_manifest, fake_meld, fake_mosi
from test_trainer import write_tiny_text_encoder

from hcam.trainer.stages import SEQUENCE

QUICK = ["--num_train_epochs", "1", "--gru_hidden_size", "8", "--fusion_hidden_size", "8", "--max_audio_seconds", "1",
         "--use_cpu", "true", "--disable_tqdm", "true", "--report_to", "none", "--per_device_train_batch_size", "8",
         "--per_device_eval_batch_size", "16", "--early_stopping_patience", "0", "--logging_steps", "1"]

# layout -> (tree builder, run_stage.py corpus flags, labels in id order, {split: (dialogues, utterances)}, protocol)
LAYOUTS = {
    "iemocap-6class": (fake_iemocap, ["--dataset_name", "iemocap", "--dataset_config", "6class"],
                       ["happy", "sad", "neutral", "angry", "excited", "frustrated"],
                       {"train": (7, 42), "validation": (1, 6), "test": (2, 12)},
                       "the usual split: sessions 1, 2, 3, 4 train, session 5 test; validation: 1 of 8 training "
                       "dialogues held out by dialogue"),
    "iemocap-4class-fold3": (fake_iemocap, ["--dataset_name", "iemocap", "--dataset_config", "4class", "--fold", "3"],
                             ["angry", "happy", "neutral", "sad"],
                             {"train": (7, 35), "validation": (1, 5), "test": (2, 10)},
                             "leave-one-session-out fold 3: sessions 1, 2, 4, 5 train, session 3 test"),
    "meld-mp4": (fake_meld, ["--dataset_name", "meld"],
                 ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"],
                 {"train": (6, 18), "validation": (2, 6), "test": (2, 6)},
                 "the official train/dev/test splits"),
    "mosi-binary": (fake_mosi, ["--dataset_name", "mosi", "--dataset_config", "binary"], ["negative", "positive"],
                    {"train": (4, 16), "validation": (2, 8), "test": (2, 8)}, "CMU-MultimodalSDK's standard folds"),
    "mosi-7class": (fake_mosi, ["--dataset_name", "mosi", "--dataset_config", "7class"],
                    ["strongly negative", "negative", "weakly negative", "neutral", "weakly positive", "positive",
                     "strongly positive"],
                    {"train": (4, 16), "validation": (2, 8), "test": (2, 8)}, "CMU-MultimodalSDK's standard folds"),
    "manifest-train-test": (fake_manifest, [], ["calm", "tense", "upbeat"],
                            {"train": (9, 36), "validation": (1, 4), "test": (3, 12)},
                            "the manifests' own splits; validation: 1 of 10 training dialogues held out by dialogue"),
}
DISPLAY = {"iemocap": "IEMOCAP", "meld": "MELD", "mosi": "CMU-MOSI", "manifest": "custom manifests"}


@pytest.fixture(scope="module")
def text_encoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_bert")
    write_tiny_text_encoder(str(folder))
    return str(folder)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_through_every_stage(layout, text_encoder, tmp_path):
    from hcam.trainer.run_stage import main

    build, corpus_flags, labels, sizes, protocol = LAYOUTS[layout]
    tree = build(tmp_path / "release")
    if layout.startswith("manifest"):
        corpus_flags = ["--train_file", str(tree / "train.csv"), "--test_file", str(tree / "test.csv")]
    else:
        corpus_flags = [*corpus_flags, "--data_dir", str(tree)]
    if layout == "meld-mp4":
        corpus_flags += ["--audio_cache_dir", str(tmp_path / "meld_audio")]
    runs = tmp_path / "runs"
    for stage in SEQUENCE:
        main([*stage.argv(str(runs)), *corpus_flags, "--text_encoder", text_encoder, *QUICK])
        folder = runs / stage.tag
        marker = json.loads((folder / "hcam_stage.json").read_text())
        assert marker["labels"] == labels, (stage.tag, marker["labels"])
        splits = {split: (n["dialogues"], n["utterances"]) for split, n in marker["data"]["splits"].items()}
        assert splits == sizes, (stage.tag, splits)
        assert protocol in marker["data"]["protocol"], marker["data"]["protocol"]
        report = json.loads((folder / "data_report.json").read_text())
        assert report["labels"] == labels and report["protocol"] == marker["data"]["protocol"]
        card = (folder / "README.md").read_text()
        corpus = marker["data"]["corpus"]
        assert f"HCAM — {DISPLAY[corpus]}" in card and protocol in card, card[:2000]
        assert "**Data problems:** 0 found" in card
        config = json.loads((folder / "config.json").read_text())
        assert [config["id2label"][str(i)] for i in range(len(labels))] == labels
    if layout == "meld-mp4":  # the reader extracted the clips' audio once, to 16 kHz wavs
        assert len(list((tmp_path / "meld_audio").rglob("*.wav"))) == sum(n for _, n in sizes.values())


def test_a_stage_refuses_an_earlier_stage_trained_on_another_split(text_encoder, tmp_path):
    from hcam.trainer.run_stage import IncompatibleStageError, main

    tree = fake_iemocap(tmp_path / "release", sessions=(1, 2, 3), dialogues_per_session=2)
    runs = str(tmp_path / "runs")
    flags = ["--dataset_name", "iemocap", "--data_dir", str(tree), "--text_encoder", text_encoder, *QUICK]
    main([*SEQUENCE[1].argv(runs), *flags, "--fold", "1"])
    with pytest.raises(IncompatibleStageError, match="another split"):
        main([*SEQUENCE[3].argv(runs), *flags, "--fold", "2"])


def test_reader_options_reach_the_reader_and_foreign_ones_are_refused(text_encoder, tmp_path):
    from hcam.trainer.run_stage import main

    tree = fake_mosi(tmp_path / "mosi")
    with pytest.raises(ValueError, match="--fold applies to iemocap, not to --dataset_name mosi"):
        main([*SEQUENCE[1].argv(str(tmp_path / "runs")), "--dataset_name", "mosi", "--data_dir", str(tree),
              "--fold", "2", "--text_encoder", text_encoder, *QUICK])
    assert not os.path.exists(tmp_path / "runs" / "stage1-text" / "hcam_stage.json")
