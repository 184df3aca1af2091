"""The shipped demo corpus (data/demo) is intact, and its generator (data/demo/generate.py, next to the data and
not installed) produces the same schema."""
import csv
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hcam.processing.corpora import DEMO_LABELS
from hcam.processing.datasets import load_hcam_dataset
from hcam.processing.manifest import SCHEMA_COLUMNS as CSV_COLUMNS


def load_generator():
    path = Path(__file__).resolve().parent.parent / "data" / "demo" / "generate.py"
    spec = importlib.util.spec_from_file_location("demo_corpus_generator", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass and worker processes look the module up by name
    spec.loader.exec_module(module)
    return module


_generator = load_generator()
DEFAULT_DATA_DIR, EMOTIONAL_SENTENCES, SPLITS = _generator.DEFAULT_DATA_DIR, _generator.EMOTIONAL_SENTENCES, _generator.SPLITS
HELD_OUT_SENTENCE_FRACTION, SAMPLING_RATE = _generator.HELD_OUT_SENTENCE_FRACTION, _generator.SAMPLING_RATE
MIN_SECONDS, MAX_SECONDS = _generator.MIN_SECONDS, _generator.MAX_SECONDS
generate, plan_corpus = _generator.generate, _generator.plan_corpus


def load_demo_corpus(data_dir=None):
    return load_hcam_dataset("demo", data_dir=data_dir, skip_bad=False)[0]

MAX_CORPUS_BYTES = 20 * 1024 * 1024


def read_split(data_dir: Path, split: str) -> list[dict]:
    with open(data_dir / f"{split}.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == CSV_COLUMNS
        return list(reader)


def check_corpus_folder(data_dir: Path, splits) -> dict:
    """Asserts the folder is a consistent corpus; returns {split: rows}."""
    rows_by_split = {split: read_split(data_dir, split) for split in splits}
    dialogues_by_split = {}
    for split, rows in rows_by_split.items():
        assert rows, f"{split}.csv is empty"
        ids = [(row["dialogue_id"], int(row["turn"])) for row in rows]
        assert len(ids) == len(set(ids)), f"duplicate (dialogue_id, turn) in {split}"
        audio_paths = [row["audio"] for row in rows]
        assert len(audio_paths) == len(set(audio_paths)), f"two rows share an audio file in {split}"
        for row in rows:
            assert row["label"] in DEMO_LABELS, row
            assert row["text"].strip() and row["speaker"], row
            assert not Path(row["audio"]).is_absolute() and row["audio"].endswith(".ogg"), row["audio"]
            path = data_dir / row["audio"]
            info = sf.info(str(path))
            assert info.samplerate == SAMPLING_RATE and info.channels == 1, (path, info)
            assert MIN_SECONDS <= info.frames / info.samplerate <= MAX_SECONDS, (path, info.duration)
        # Turns are 0..n-1 inside each dialogue, in file order.
        turns = {}
        for row in rows:
            turns.setdefault(row["dialogue_id"], []).append(int(row["turn"]))
        assert all(t == list(range(len(t))) for t in turns.values())
        dialogues_by_split[split] = set(turns)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            assert not dialogues_by_split[a] & dialogues_by_split[b], f"{a} and {b} share dialogues"
    return rows_by_split


def test_shipped_corpus_is_consistent():
    rows_by_split = check_corpus_folder(DEFAULT_DATA_DIR, SPLITS)
    all_rows = [row for rows in rows_by_split.values() for row in rows]
    assert {row["label"] for row in all_rows} == set(DEMO_LABELS)
    # No orphan audio, and the corpus stays small enough to ship.
    referenced = {row["audio"] for row in all_rows}
    on_disk = {f"audio/{p.name}" for p in (DEFAULT_DATA_DIR / "audio").iterdir()}
    assert on_disk == referenced
    total_bytes = sum(p.stat().st_size for p in DEFAULT_DATA_DIR.rglob("*") if p.is_file())
    assert total_bytes <= MAX_CORPUS_BYTES, total_bytes
    # 90 / 60 / 60 dialogues: evaluation splits large enough to rank the stages (data/demo/README.md)
    n_dialogues = {split: len({row["dialogue_id"] for row in rows}) for split, rows in rows_by_split.items()}
    assert n_dialogues == {"train": 90, "validation": 60, "test": 60}


def test_shipped_audio_decodes_and_is_not_silent():
    for split in SPLITS:
        for row in read_split(DEFAULT_DATA_DIR, split)[::5]:
            audio, rate = sf.read(str(DEFAULT_DATA_DIR / row["audio"]), dtype="float32")
            assert rate == SAMPLING_RATE and audio.ndim == 1
            assert np.sqrt(np.mean(audio ** 2)) > 1e-3, row["audio"]
            assert np.abs(audio).max() <= 1.0


def test_voice_cue_survives_in_shipped_audio():
    """Utterances spoken with the angry voice are louder than those spoken with the sad voice (cues.csv says which)."""
    with open(DEFAULT_DATA_DIR / "cues.csv", newline="", encoding="utf-8") as f:
        cues = {(row["dialogue_id"], row["turn"]): row for row in csv.DictReader(f)}
    loudness = {"sad": [], "angry": []}
    for row in read_split(DEFAULT_DATA_DIR, "train"):
        cue = cues[(row["dialogue_id"], row["turn"])]
        if cue["voice_cue"] == "1" and row["label"] in loudness and len(loudness[row["label"]]) < 30:
            audio, _ = sf.read(str(DEFAULT_DATA_DIR / row["audio"]), dtype="float32")
            loudness[row["label"]].append(np.sqrt(np.mean(audio ** 2)))
    assert len(loudness["sad"]) == len(loudness["angry"]) == 30
    assert np.median(loudness["angry"]) > 2 * np.median(loudness["sad"])


def test_load_demo_corpus_schema():
    dataset = load_demo_corpus()
    assert set(dataset) == set(SPLITS)
    for split, ds in dataset.items():
        assert set(CSV_COLUMNS) <= set(ds.column_names)
        row = ds[0]
        assert Path(row["audio"]).is_absolute() and Path(row["audio"]).is_file()
        assert isinstance(row["turn"], int) and row["label"] in DEMO_LABELS
        assert len(ds) == len(read_split(DEFAULT_DATA_DIR, split))


def test_plan_is_deterministic_and_seeded():
    first, again, other = plan_corpus(20, seed=0), plan_corpus(20, seed=0), plan_corpus(20, seed=1)
    assert first == again
    assert first != other
    splits = [u.split for u in first if u.turn == 0]
    assert splits.count("train") == 14 and splits.count("validation") == splits.count("test") == 3


def test_plan_takes_explicit_evaluation_split_sizes():
    splits = [u.split for u in plan_corpus(30, seed=0, validation_dialogues=9, test_dialogues=6) if u.turn == 0]
    assert (splits.count("train"), splits.count("validation"), splits.count("test")) == (15, 9, 6)
    with pytest.raises(ValueError, match="none of 30 to train"):
        plan_corpus(30, seed=0, validation_dialogues=15, test_dialogues=15)


def test_a_quarter_of_each_sentence_pool_is_held_out_of_train():
    utterances = plan_corpus(400, seed=0)
    for label in DEMO_LABELS:
        pool = EMOTIONAL_SENTENCES[label]
        train = {u.text for u in utterances if u.split == "train" and u.text_cue and u.label == label}
        evaluation = {u.text for u in utterances if u.split != "train" and u.text_cue and u.label == label}
        assert train <= set(pool) and len(train) == len(pool) - round(HELD_OUT_SENTENCE_FRACTION * len(pool))
        assert evaluation - train, f"no held-out {label} sentence reaches validation/test"


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng not installed (only needed to regenerate the corpus: apt-get install espeak-ng)")
def test_generator_tiny_run(tmp_path):
    summary = generate(tmp_path, num_dialogues=2, seed=3, workers=1, min_turns=2, max_turns=3)
    assert summary["train"]["dialogues"] == summary["validation"]["dialogues"] == 1
    assert not (tmp_path / "test.csv").exists()
    check_corpus_folder(tmp_path, ["train", "validation"])
    dataset = load_demo_corpus(tmp_path)
    assert set(dataset) == {"train", "validation"}
    assert all(Path(p).is_file() for p in dataset["train"]["audio"])
