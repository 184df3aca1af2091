"""Dataset readers: fake trees in each format built in tmp_path, plus the real MELD CSVs (text only)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from hcam.processing.corpora import get_corpus
from hcam.processing.datasets import load_hcam_dataset
from hcam.processing.labels import MOSI_7_LABELS, mosi_label
from hcam.processing.manifest import read_manifest
from hcam.processing.meld import fix_meld_text
from hcam.processing.mosi import MOSI_TEST_VIDEOS, MOSI_TRAIN_VIDEOS, MOSI_VALID_VIDEOS
from hcam.processing.report import DataReport, HCAMDataError

REAL_MELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "meld"


def write_wav(path: Path, seconds: float = 0.3, sr: int = 16000, freq: float = 220.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)
    return path


def assert_schema(dataset_dict):
    for split, ds in dataset_dict.items():
        for column, dtype in (("dialogue_id", "string"), ("turn", "int64"), ("speaker", "string"),
                              ("text", "string"), ("audio", "string"), ("label", "string")):
            assert ds.features[column].dtype == dtype, (split, column)
        order, last = {}, {}
        for dialogue_id, turn, audio in zip(ds["dialogue_id"], ds["turn"], ds["audio"]):
            if dialogue_id not in order:
                order[dialogue_id] = len(order)
                assert dialogue_id not in last
                assert turn == 0
            else:
                assert list(order)[-1] == dialogue_id, "rows of a dialogue must be contiguous"
                assert turn == last[dialogue_id] + 1
            last[dialogue_id] = turn
            assert audio == "" or (os.path.isabs(audio) and os.path.isfile(audio))


# ------------------------------------------------------------------------------------------ manifest
def write_csv(path: Path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_manifest_csv_relative_audio_and_sorting(tmp_path):
    write_wav(tmp_path / "clips" / "a0.wav", 0.5)
    write_wav(tmp_path / "clips" / "a1.wav", 0.25)
    write_wav(tmp_path / "clips" / "b0.wav", 0.4)
    write_csv(tmp_path / "train.csv", ["dialogue_id", "turn", "speaker", "text", "audio", "label", "note"], [
        ["b", "0", "X", "Hello.", "clips/b0.wav", "sad", "n1"],
        ["a", "1", "Y", "Fine.", "clips/a1.wav", "happy", "n2"],
        ["a", "0", "X", "How are you?", "clips/a0.wav", "neutral", "n3"],
    ])
    dd, report = read_manifest(train_file=tmp_path / "train.csv")
    assert_schema(dd)
    ds = dd["train"]
    assert ds["dialogue_id"] == ["b", "a", "a"]  # dialogue order of first appearance
    assert ds["text"] == ["Hello.", "How are you?", "Fine."]
    assert ds["audio"][1] == str((tmp_path / "clips" / "a0.wav").resolve())
    assert ds["duration"] == pytest.approx([0.4, 0.5, 0.25])
    assert ds["note"] == ["n1", "n3", "n2"]
    assert report.ok and report.counts["train"] == {"happy": 1, "neutral": 1, "sad": 1}


def test_manifest_jsonl_column_overrides_text_only(tmp_path):
    lines = [{"conv": "d1", "utt": 0, "who": "A", "transcript": "hi", "emo": "joy"},
             {"conv": "d1", "utt": 1, "who": "B", "transcript": "hey", "emo": "anger"}]
    (tmp_path / "dev.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    dd, report = load_hcam_dataset("manifest", validation_file=tmp_path / "dev.jsonl", dialogue_id_column="conv",
                                   turn_column="utt", speaker_column="who", text_column="transcript",
                                   label_column="emo")
    assert_schema(dd)
    assert list(dd) == ["validation"]
    assert dd["validation"]["label"] == ["joy", "anger"]
    assert dd["validation"]["audio"] == ["", ""]
    assert any("no audio column" in n for n in report.notes)


def test_manifest_bad_rows_are_skipped_and_reported(tmp_path):
    write_wav(tmp_path / "ok.wav")
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav file")
    rows = [
        ["d1", "0", "A", "fine", "ok.wav", "happy"],
        ["d1", "0", "B", "dup", "ok.wav", "sad"],          # duplicate (d1, 0)
        ["d1", "1", "A", "", "ok.wav", "sad"],             # empty text
        ["d1", "2", "A", "x", "missing.wav", "sad"],       # missing audio
        ["d1", "3", "A", "x", "ok.wav", "bored"],          # unknown label
        ["d1", "4", "A", "x", "broken.wav", "sad"],        # corrupt audio
        ["d1", "five", "A", "x", "ok.wav", "sad"],         # bad turn
        ["d2", "0", "A", "x", "ok.wav", "sad", "extra"],   # too many fields
    ]
    write_csv(tmp_path / "train.csv", ["dialogue_id", "turn", "speaker", "text", "audio", "label"], rows)
    dd, report = read_manifest(train_file=tmp_path / "train.csv", label_names=["happy", "sad"])
    assert len(dd["train"]) == 1 and dd["train"]["text"] == ["fine"]
    kinds = sorted(p.kind for p in report.problems)
    assert kinds == sorted(["duplicate_id", "empty_text", "missing_audio", "unknown_label", "corrupt_audio",
                            "bad_turn", "bad_row"])
    assert all(p.skipped for p in report.problems)
    assert any("train.csv:3" in p.item for p in report.problems if p.kind == "duplicate_id")
    json.loads(report.to_json())  # serialisable
    assert DataReport.from_dict(report.to_dict()).problem_counts() == report.problem_counts()
    assert "duplicate_id" in str(report)

    with pytest.raises(HCAMDataError) as err:
        read_manifest(train_file=tmp_path / "train.csv", label_names=["happy", "sad"], skip_bad=False)
    assert "d1#0" in str(err.value) and "skip_bad" in str(err.value)


def test_manifest_structural_errors(tmp_path):
    write_csv(tmp_path / "nolabel.csv", ["dialogue_id", "turn", "text"], [["d", "0", "x"]])
    with pytest.raises(HCAMDataError, match="label_column"):
        read_manifest(train_file=tmp_path / "nolabel.csv")
    (tmp_path / "broken.csv").write_text('dialogue_id,turn,text,label\nd,0,"unclosed quote,sad\n')
    with pytest.raises(HCAMDataError, match="not a valid CSV"):
        read_manifest(train_file=tmp_path / "broken.csv")
    (tmp_path / "latin.csv").write_bytes("dialogue_id,turn,text,label\nd,0,caf\xe9,sad\n".encode("latin-1"))
    with pytest.raises(HCAMDataError, match="UTF-8"):
        read_manifest(train_file=tmp_path / "latin.csv")
    with pytest.raises(HCAMDataError, match="not found"):
        read_manifest(train_file=tmp_path / "absent.csv")


def test_read_conversations_for_inference(tmp_path):
    """manifest.read_conversations: conversations in order of first appearance, turns sorted, labels optional, the
    problems returned for the caller to decide; read_table is the one table reader (CSV and JSON lines)."""
    from hcam.processing.manifest import read_conversations, read_table

    write_wav(tmp_path / "clips" / "a.wav")
    rows = [["d2", "1", "B", "second", "clips/a.wav"], ["d1", "0", "A", "hello", ""], ["d2", "0", "A", "first", ""],
            ["d2", "x", "A", "bad turn", ""], ["d1", "1", "B", "", "clips/missing.wav"]]
    write_csv(tmp_path / "m.csv", ["dialogue_id", "turn", "speaker", "text", "audio"], rows)
    conversations, problems = read_conversations(tmp_path / "m.csv")
    assert [c["dialogue_id"] for c in conversations] == ["d2", "d1"]
    assert [t["text"] for t in conversations[0]["turns"]] == ["first", "second"]
    assert conversations[0]["turns"][1]["audio"] == str((tmp_path / "clips" / "a.wav").resolve())
    assert conversations[0]["turns"][1]["_item"] == "input/d2#1 (m.csv:2)"
    assert all(t["label"] == "" for c in conversations for t in c["turns"])  # no label column: unlabelled
    assert sorted(p.kind for p in problems) == ["bad_turn", "missing_audio"] and not any(p.skipped for p in problems)
    # other column names, as run_stage.py's --*_column_name flags give them; a label column named must exist
    (tmp_path / "own.jsonl").write_text(json.dumps({"conv": "c", "words": "hi", "mood": "sad"}) + "\n")
    conversations, _ = read_conversations(tmp_path / "own.jsonl", dialogue_id_column="conv", text_column="words",
                                          label_column="mood", turn_column=None)
    assert conversations[0]["turns"][0]["label"] == "sad" and conversations[0]["turns"][0]["turn"] == 0
    with pytest.raises(HCAMDataError, match="--label_column_name"):
        read_conversations(tmp_path / "own.jsonl", dialogue_id_column="conv", text_column="words",
                           label_column="emotion")
    columns, table, problems = read_table(tmp_path / "m.csv")
    assert columns[:2] == ["dialogue_id", "turn"] and len(table) == 5 and table[0] == (2, dict(zip(columns, rows[0])))
    with pytest.raises(HCAMDataError, match="no such file"):
        read_table(tmp_path / "absent.csv")


def test_demo_corpus_reads_in_schema():
    if get_corpus("demo").default_data_dir() is None:
        pytest.skip("demo corpus not generated in this checkout")
    dd, report = load_hcam_dataset("demo")
    assert_schema(dd)
    assert set(dd) == {"train", "validation", "test"}
    assert report.ok, report.format(10)


# ------------------------------------------------------------------------------------------ MELD
MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
               "Season", "Episode", "StartTime", "EndTime"]


def make_mp4(path: Path, seconds: float = 0.5):
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac", str(path)], check=True)


@pytest.fixture(scope="module")
def meld_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("meld")
    train = [  # deliberately out of order; dia1_utt1 has no clip, dia1_utt0's clip is corrupt
        [1, "You\u00e2\u0080\u0099re late.", "Ross", "anger", "negative", 0, 1, 1, 1, "0", "0"],
        [2, "Hi \u201cthere\u201d\u2026", "Rachel", "joy", "positive", 0, 0, 1, 1, "0", "0"],
        [3, "Okay.", "Ross", "neutral", "neutral", 0, 2, 1, 1, "0", "0"],
        [4, "What?", "Joey", "surprise", "negative", 1, 0, 1, 1, "0", "0"],
        [5, "No.", "Monica", "sadness", "negative", 1, 1, 1, 1, "0", "0"],
    ]
    dev = [[1, "Yes!", "Phoebe", "joy", "positive", 0, 0, 1, 1, "0", "0"],
           [2, "Ew.", "Chandler", "disgust", "negative", 0, 1, 1, 1, "0", "0"]]
    write_csv(root / "train_sent_emo.csv", MELD_HEADER, train)
    write_csv(root / "dev_sent_emo.csv", MELD_HEADER, dev)
    (root / "train_splits").mkdir()
    (root / "dev_splits_complete").mkdir()
    make_mp4(root / "train_splits" / "dia0_utt0.mp4")
    data = (root / "train_splits" / "dia0_utt0.mp4").read_bytes()
    for name in ("dia0_utt1", "dia0_utt2", "dia1_utt0"):
        (root / "train_splits" / f"{name}.mp4").write_bytes(data)
    (root / "train_splits" / "dia1_utt0.mp4").write_bytes(b"\x00" * 200)  # corrupt
    for name in ("dia0_utt0", "dia0_utt1"):
        (root / "dev_splits_complete" / f"{name}.mp4").write_bytes(data)
    return root


def test_meld_audio_extraction_cache_and_report(meld_tree, tmp_path):
    cache = tmp_path / "cache"
    dd, report = load_hcam_dataset("meld", data_dir=meld_tree, audio_cache_dir=cache, preprocessing_num_workers=2)
    assert_schema(dd)
    assert set(dd) == {"train", "validation"}
    train = dd["train"]
    assert train["dialogue_id"] == ["train_dia0"] * 3
    assert train["utterance_id"] == ["dia0_utt0", "dia0_utt1", "dia0_utt2"]
    assert train["label"] == ["joy", "anger", "neutral"]
    assert train["text"][:2] == ['Hi "there"...', "You're late."]
    for path, duration in zip(train["audio"], train["duration"]):
        info = sf.info(path)
        assert info.samplerate == 16000 and info.channels == 1 and Path(path).is_relative_to(cache)
        assert duration == pytest.approx(0.5, abs=0.05)
    assert dd["validation"]["dialogue_id"] == ["dev_dia0", "dev_dia0"]
    problems = {p.item: p.kind for p in report.problems}
    assert problems == {"train/train_dia1_utt0": "corrupt_audio", "train/train_dia1_utt1": "missing_audio"}
    assert all(p.skipped for p in report.problems)

    # extracted once: a second read reuses the cached wavs
    mtimes = {p: os.stat(p).st_mtime_ns for p in train["audio"]}
    dd2, _ = load_hcam_dataset("meld", data_dir=meld_tree, audio_cache_dir=cache, preprocessing_num_workers=1)
    assert {p: os.stat(p).st_mtime_ns for p in dd2["train"]["audio"]} == mtimes

    with pytest.raises(HCAMDataError, match="train_dia1_utt1"):
        load_hcam_dataset("meld", data_dir=meld_tree, audio_cache_dir=cache, skip_bad=False, preprocessing_num_workers=1)


def test_meld_text_only_and_sentiment(meld_tree):
    dd, report = load_hcam_dataset("meld", data_dir=meld_tree, audio=False, setting="sentiment")
    assert len(dd["train"]) == 5 and set(dd["train"]["audio"]) == {""}
    assert dd["train"]["label"][:2] == ["positive", "negative"]
    assert report.ok


def test_fix_meld_text():
    assert fix_meld_text("You\u00e2\u0080\u0099re") == "You're"
    assert fix_meld_text("You\u00e2\u20ac\u2122re") == "You're"  # cp1252 mojibake
    assert fix_meld_text("it\x92s") == "it's"
    assert fix_meld_text("caf\u00e9 \u2014 ok\u2026", ascii_punctuation=True) == "caf\u00e9 - ok..."
    assert fix_meld_text("he\u2019s", ascii_punctuation=False) == "he\u2019s"


@pytest.mark.skipif(not (REAL_MELD / "train_sent_emo.csv").is_file(), reason="real MELD CSVs not present")
def test_real_meld_csvs_text_only():
    dd, report = load_hcam_dataset("meld", data_dir=REAL_MELD)
    assert_schema(dd)
    for split, name in (("train", "train"), ("validation", "dev")):
        df = pd.read_csv(REAL_MELD / f"{name}_sent_emo.csv")
        assert len(dd[split]) == len(df)
        assert report.counts[split] == df["Emotion"].value_counts().sort_index().to_dict()
        assert report.dialogues[split] == df["Dialogue_ID"].nunique()
        assert set(dd[split]["label"]) <= set(get_corpus("meld").label_names())
    assert report.ok and "test" not in dd


def test_meld_holdout_makes_an_unseen_test_split_of_train(tmp_path):
    """bench/meld_holdout.py: a share of MELD's training dialogues becomes test, disjoint from train, dev kept."""
    import sys

    from fake_corpora import MELD_HEADER

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from meld_holdout import hold_out

    source = tmp_path / "meld"
    source.mkdir()
    for name, dialogues in (("train", 20), ("dev", 3)):
        write_csv(source / f"{name}_sent_emo.csv", MELD_HEADER, [
            [d * 2 + u + 1, f"Line {d} {u}.", "Ross", "joy" if u else "neutral", "positive", d, u, 1, 1,
             "00:00:01,000", "00:00:02,000"] for d in range(dialogues) for u in range(2)])
    assert hold_out(source, tmp_path / "held", fraction=0.25) == (15, 5)
    assert hold_out(source, tmp_path / "again", fraction=0.25) == (15, 5)
    assert (tmp_path / "held" / "test_sent_emo.csv").read_text() == (tmp_path / "again" / "test_sent_emo.csv").read_text()
    dd, report = load_hcam_dataset("meld", data_dir=tmp_path / "held", audio=False)
    train, test = ({d.split("_dia")[1] for d in dd[split]["dialogue_id"]} for split in ("train", "test"))
    assert len(train) == 15 and len(test) == 5 and not train & test and len(dd["validation"]) == 6
    assert len(dd["test"]) == 10 and report.ok


# ------------------------------------------------------------------------------------------ IEMOCAP
def make_iemocap(root: Path, sessions=(1, 2, 5)):
    for s in sessions:
        sdir = root / f"Session{s}"
        for gender in "FM":
            dialog = f"Ses0{s}{gender}_impro01"
            utts = [  # (id, start, end, code, text) listed out of time order
                (f"{dialog}_M000", 3.0, 4.0, "hap", "Great."),
                (f"{dialog}_F000", 1.0, 2.5, "neu", "Excuse me."),
                (f"{dialog}_F001", 5.0, 6.0, "exc", "Wow!"),
                (f"{dialog}_M001", 7.0, 8.0, "xxx", "Hmm."),
                (f"{dialog}_F002", 9.0, 10.0, "fru", "Ugh."),
            ]
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for uid, start, end, code, _ in utts:
                lines += [f"[{start:.4f} - {end:.4f}]\t{uid}\t{code}\t[2.5000, 3.0000, 3.5000]",
                          "C-E1:\tNeutral;\t()", "A-E2:\tval 3; act 2; dom  3;\t()", ""]
            (sdir / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
            (sdir / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(lines))
            (sdir / "dialog" / "EmoEvaluation" / f"._{dialog}.txt").write_bytes(b"\x00\x05mac junk")
            (sdir / "dialog" / "transcriptions").mkdir(parents=True, exist_ok=True)
            (sdir / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(
                f"{uid} [{start:08.4f}-{end:08.4f}]: {text}" for uid, start, end, _, text in utts) + "\nM: [LAUGHTER]\n")
            for uid, *_ in utts:
                write_wav(sdir / "sentences" / "wav" / dialog / f"{uid}.wav", 0.2)
    return root


def test_iemocap_6class_default_split(tmp_path):
    root = make_iemocap(tmp_path)
    os.remove(root / "Session2/sentences/wav/Ses02M_impro01/Ses02M_impro01_F001.wav")
    dd, report = load_hcam_dataset("iemocap", data_dir=root)
    assert_schema(dd)
    assert set(dd) == {"train", "validation", "test"}  # validation held out of sessions 1-4 by dialogue
    assert set(dd["test"]["dialogue_id"]) == {"Ses05F_impro01", "Ses05M_impro01"}
    assert len(set(dd["validation"]["dialogue_id"])) == 1 and {d[:5] for d in dd["validation"]["dialogue_id"]} < {"Ses01", "Ses02"}
    assert "session 5 test" in report.protocol and "1 of 4 training dialogues held out" in report.protocol
    from datasets import concatenate_datasets

    first = concatenate_datasets([dd["train"], dd["validation"]]).filter(lambda r: r["dialogue_id"] == "Ses01F_impro01")
    assert first["utterance_id"] == ["Ses01F_impro01_F000", "Ses01F_impro01_M000", "Ses01F_impro01_F001",
                                     "Ses01F_impro01_F002"]  # start-time order, xxx left out
    assert first["speaker"] == ["Ses01_F", "Ses01_M", "Ses01_F", "Ses01_F"]
    assert first["label"] == ["neutral", "happy", "excited", "frustrated"]
    assert first["text"][0] == "Excuse me."
    assert first["duration"][0] == pytest.approx(1.5)
    assert report.excluded == {"IEMOCAP code 'xxx' not in the 6class setting": 6}
    assert [(p.item, p.kind) for p in report.problems] == [("train/Ses02M_impro01_F001", "missing_audio")]
    assert report.labels == ["happy", "sad", "neutral", "angry", "excited", "frustrated"]


def test_iemocap_4class_and_folds(tmp_path):
    root = make_iemocap(tmp_path)
    dd, report = load_hcam_dataset("iemocap", data_dir=root, setting="4class", fold=1)
    assert set(dd["test"]["dialogue_id"]) == {"Ses01F_impro01", "Ses01M_impro01"}
    from datasets import concatenate_datasets

    train = concatenate_datasets([dd["train"], dd["validation"]])
    assert {d[:5] for d in train["dialogue_id"]} == {"Ses02", "Ses05"}
    assert set(train["label"]) == {"neutral", "happy"}  # exc -> happy; fru, xxx dropped
    assert train["raw_label"].count("exc") == 4
    assert report.labels == ["angry", "happy", "neutral", "sad"] and "fold 1" in report.protocol
    assert sum(report.excluded.values()) == 12
    with pytest.raises(ValueError, match="fold"):
        load_hcam_dataset("iemocap", data_dir=root, fold=6)
    dd, _ = load_hcam_dataset("iemocap", data_dir=root, validation_fraction=0.5)
    assert set(dd) == {"train", "validation", "test"}
    assert not set(dd["train"]["dialogue_id"]) & set(dd["validation"]["dialogue_id"])


# ------------------------------------------------------------------------------------------ MOSI
def test_mosi_standard_folds_are_the_93_videos():
    assert (len(MOSI_TRAIN_VIDEOS), len(MOSI_VALID_VIDEOS), len(MOSI_TEST_VIDEOS)) == (52, 10, 31)
    assert len(set(MOSI_TRAIN_VIDEOS) | set(MOSI_VALID_VIDEOS) | set(MOSI_TEST_VIDEOS)) == 93


def test_mosi_labels():
    assert mosi_label(-0.2) == "negative" and mosi_label(0.0) == "positive"
    assert mosi_label(0.0, "binary_nonzero") is None and mosi_label(0.4, "binary_nonzero") == "positive"
    assert mosi_label(2.6, "7class") == "strongly positive" and mosi_label(-1.2, "7class") == "weakly negative"
    assert mosi_label(-3.0, "7class") == MOSI_7_LABELS[0] and mosi_label(0.4, "7class") == "neutral"


def test_mosi_reader(tmp_path):
    train_v, valid_v, test_v = MOSI_TRAIN_VIDEOS[0], MOSI_VALID_VIDEOS[0], MOSI_TEST_VIDEOS[0]
    rows = [[train_v, "10", "ten", "2.6"], [train_v, "2", "two", "0.0"], [train_v, "1", "one", "-1.2"],
            [valid_v, "1", "v", "1.0"], [test_v, "1", "t", "-2.0"], ["notAMosiVid", "1", "x", "1.0"],
            [test_v, "2", "no wav", "1.0"]]
    write_csv(tmp_path / "label.csv", ["video_id", "clip_id", "text", "label", "mode"], [r + ["train"] for r in rows])
    for video, clip, *_ in rows[:5]:
        write_wav(tmp_path / "wav" / video / f"{clip}.wav", 0.2)
    dd, report = load_hcam_dataset("mosi", data_dir=tmp_path)
    assert_schema(dd)
    assert dd["train"]["text"] == ["one", "two", "ten"]  # numeric clip order
    assert dd["train"]["label"] == ["negative", "positive", "positive"]
    assert dd["train"]["sentiment"] == [-1.2, 0.0, 2.6]
    assert dd["validation"]["dialogue_id"] == [valid_v] and dd["test"]["speaker"] == [test_v]
    assert sorted(p.kind for p in report.problems) == ["missing_audio", "unknown_split"]

    dd, report = load_hcam_dataset("mosi", data_dir=tmp_path, setting="binary_nonzero", audio=False)
    assert dd["train"]["text"] == ["one", "ten"] and report.excluded
    dd, _ = load_hcam_dataset("mosi", data_dir=tmp_path, setting="7class", split_column="mode", audio=False)
    # every row says "train": a validation split is carved from its dialogues (videos)
    assert list(dd) == ["train", "validation"] and len(dd["train"]) + len(dd["validation"]) == 7
    from datasets import concatenate_datasets

    every = concatenate_datasets([dd["train"], dd["validation"]])
    assert every.filter(lambda r: r["text"] == "ten")["label"] == ["strongly positive"]
