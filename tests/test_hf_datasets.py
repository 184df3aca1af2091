"""`--dataset_name` as a 🤗 dataset: a `save_to_disk` folder and a dataset repo on the local Hub fixture, their columns
mapped by the `--*_column_name` flags, trained through stage 1 on tiny models, with the manifests' checks and report.

The source dataset has nothing in hcam's names: conversation/utterance/who/transcript/emotion/clip columns, the
emotion a `ClassLabel`, the clips a `datasets.Audio` column (bytes embedded by `save_to_disk`/`push_to_hub`), and no
validation split (carved from train, as for manifests). `datasets` never decodes audio here (no torchcodec).
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from local_hub import LocalHubServer

from test_trainer import LABELS, write_corpus, write_tiny_text_encoder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_STAGE = os.path.join(REPO, "trainer", "run_stage.py")
COLUMNS = ["--dialogue_id_column_name", "conversation", "--turn_column_name", "utterance", "--speaker_column_name",
           "who", "--text_column_name", "transcript", "--audio_column_name", "clip", "--label_column_name", "emotion"]
COLUMN_KWARGS = dict(dialogue_id_column="conversation", turn_column="utterance", speaker_column="who",
                     text_column="transcript", audio_column="clip", label_column="emotion")
TINY = ["--gru_hidden_size", "8", "--max_audio_seconds", "1", "--use_cpu", "true", "--disable_tqdm", "true",
        "--report_to", "none", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
        "--num_train_epochs", "1", "--early_stopping_patience", "0"]
REPO_ID = "hcam-user/tiny-conversations"
TURNS = 3


def source_columns(folder, split):
    """One split of `write_corpus`'s manifests in a source's own column names: absolute clip paths, label ids."""
    with open(os.path.join(folder, f"{split}.csv"), encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    return {"conversation": [r["dialogue_id"] for r in records], "utterance": [int(r["turn"]) for r in records],
            "who": [r["speaker"] for r in records], "transcript": [r["text"] for r in records],
            "clip": [os.path.join(folder, r["audio"]) for r in records],
            "emotion": [LABELS.index(r["label"]) for r in records],
            "rating": [i / len(records) for i in range(len(records))]}


def source_dataset(folder, dialogues={"train": 8, "test": 3}):
    """DatasetDict(train, test) with a ClassLabel emotion and an Audio clip column (cast from paths: no torchcodec)."""
    import datasets

    write_corpus(str(folder), dialogues=dialogues, turns=TURNS)
    features = datasets.Features({"conversation": datasets.Value("string"), "utterance": datasets.Value("int64"),
                                  "who": datasets.Value("string"), "transcript": datasets.Value("string"),
                                  "clip": datasets.Value("string"), "emotion": datasets.ClassLabel(names=LABELS),
                                  "rating": datasets.Value("float64")})
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict(source_columns(folder, split), features=features).cast_column(
            "clip", datasets.Audio()) for split in dialogues})


@pytest.fixture(scope="module")
def disk_dataset(tmp_path_factory):
    """A save_to_disk folder; its clips' source wavs are deleted afterwards, so only the embedded bytes remain."""
    root = tmp_path_factory.mktemp("hf_disk")
    source_dataset(root / "corpus").save_to_disk(str(root / "saved"))
    for wav in (root / "corpus" / "audio").iterdir():
        wav.unlink()
    return str(root / "saved")


def hub_env(hub, home):
    return dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(home), HF_TOKEN="local",
                OMP_NUM_THREADS="1", PYTHONPATH=os.path.join(REPO, "tests"))


PUSH = """
import sys, datasets
disk, repo = sys.argv[1], sys.argv[2]
dataset = datasets.load_from_disk(disk)
dataset.push_to_hub(repo)
small = datasets.DatasetDict({"train": dataset["train"].select(range(12)), "test": dataset["test"]})
small.push_to_hub(repo, revision="small")  # a branch of four training dialogues: --dataset_revision small
"""


@pytest.fixture(scope="module")
def hub_dataset(tmp_path_factory, disk_dataset):
    """The same dataset pushed to the local Hub fixture (push_to_hub, in a process whose HF_ENDPOINT is the fixture)."""
    root = tmp_path_factory.mktemp("hf_hub")
    with LocalHubServer(root / "hub") as hub:
        env = hub_env(hub, root / "hf_home")
        subprocess.run([sys.executable, "-c", PUSH, disk_dataset, REPO_ID], env=env, check=True, timeout=300,
                       capture_output=True)
        yield {"hub": hub, "env": env, "root": root}


def read_report(folder):
    with open(os.path.join(folder, "data_report.json"), encoding="utf-8") as f:
        return json.load(f)


def test_save_to_disk_folder_trains_stages_1_and_2_audio(disk_dataset, tmp_path):
    from hcam.trainer.run_stage import main

    out = str(tmp_path / "stage1-audio")
    main(["--stage", "1", "--modality", "audio", "--dataset_name", disk_dataset, *COLUMNS, *TINY, "--output_dir", out])
    results = json.load(open(os.path.join(out, "all_results.json")))
    assert 0.0 <= results["test_weighted_f1"] <= 1.0
    report = read_report(out)
    assert report["corpus"] == disk_dataset and report["labels"] == LABELS  # ClassLabel ids became their names
    assert report["protocol"].startswith(f"the splits of the folder {disk_dataset}; validation: 1 of 8 training")
    assert report["dialogues"] == {"train": 7, "validation": 1, "test": 3} and not report["problems"]
    marker = json.load(open(os.path.join(out, "hcam_stage.json")))
    assert marker["dataset"] == disk_dataset
    stage2 = str(tmp_path / "stage2-audio")  # the cached clips are stable paths: stage 2 embeds them like manifests'
    main(["--stage", "2", "--modality", "audio", "--init_from", out, "--dataset_name", disk_dataset, *COLUMNS, *TINY,
          "--cross_fit_folds", "0", "--output_dir", stage2])
    assert 0.0 <= json.load(open(os.path.join(stage2, "all_results.json")))["test_weighted_f1"] <= 1.0


def test_hub_dataset_trains_stage1_text_at_a_revision(hub_dataset, tmp_path):
    encoder = str(tmp_path / "tiny_bert")
    write_tiny_text_encoder(encoder)
    out = str(tmp_path / "stage1-text")
    argv = ["--stage", "1", "--modality", "text", "--text_encoder", encoder, "--dataset_name", REPO_ID,
            "--dataset_revision", "small", *COLUMNS, *TINY, "--output_dir", out]
    done = subprocess.run([sys.executable, RUN_STAGE, *argv], env=hub_dataset["env"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = read_report(out)
    assert report["protocol"].startswith(f"the splits of the Hub dataset {REPO_ID} at revision small; validation: 1 "
                                         "of 4 training dialogues")
    assert report["dialogues"]["train"] == 3 and report["labels"] == LABELS
    assert 0.0 <= json.load(open(os.path.join(out, "all_results.json")))["test_weighted_f1"] <= 1.0


def check_cli(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "hcam.processing.data_check", *argv], env=env, capture_output=True,
                          text=True, timeout=300)


def test_hub_errors_name_what_to_fix(hub_dataset):
    env = hub_dataset["env"]
    missing = check_cli("--dataset_name", "hcam-user/no-such-dataset", env=env)
    assert missing.returncode == 2 and "The Hub dataset hcam-user/no-such-dataset cannot be loaded" in missing.stderr
    column = check_cli("--dataset_name", REPO_ID, *COLUMNS[:-2], "--label_column_name", "mood", env=env)
    assert column.returncode == 2, column.stderr
    assert "column 'mood' not found" in column.stderr and "--label_column_name" in column.stderr
    revision = check_cli("--dataset_name", REPO_ID, *COLUMNS, "--dataset_revision", "nope", env=env)
    assert revision.returncode == 2 and "revision 'nope'" in revision.stderr


def edited_copy(disk_dataset, folder, edit):
    """The saved dataset with `edit(columns of train) -> columns` applied to its train split, saved again."""
    import datasets

    dataset = datasets.load_from_disk(disk_dataset)
    train = dataset["train"]
    columns = edit({name: list(train[name]) for name in train.column_names if name != "clip"})
    edited = datasets.Dataset.from_dict(columns, features=datasets.Features(
        {k: v for k, v in train.features.items() if k != "clip"}))
    datasets.DatasetDict({"train": edited, "test": dataset["test"].remove_columns("clip")}).save_to_disk(str(folder))
    return str(folder)


def test_bad_rows_are_skipped_and_listed_like_manifests(disk_dataset, tmp_path):
    """A missing label (ClassLabel -1), a duplicate (dialogue, turn) and an empty transcript: listed in the report and
    left out, or one error naming them all with skip_bad=False."""
    from hcam.processing.datasets import load_hcam_dataset
    from hcam.processing.report import HCAMDataError

    def damage(columns):
        columns["emotion"][1] = -1
        columns["utterance"][5] = columns["utterance"][4]
        columns["transcript"][7] = "  "
        return columns

    folder = edited_copy(disk_dataset, tmp_path / "bad", damage)
    kwargs = dict(COLUMN_KWARGS, audio_column=None)
    dataset, report = load_hcam_dataset(folder, **kwargs, progress=False)
    kinds = {p.item.split(" ")[0]: p.kind for p in report.problems}
    assert kinds == {"train/train0#1": "unknown_label", "train/train1#1": "duplicate_id",
                     "train/train2#1": "empty_text"}
    assert all(p.skipped and "(row " in p.item for p in report.problems)
    assert sum(len(split) for split in dataset.values()) == 11 * 3 - 3
    assert "rating" in dataset["train"].column_names  # an unmapped column holding numbers stays as an extra
    with pytest.raises(HCAMDataError, match="3 bad item") as error:
        load_hcam_dataset(folder, **kwargs, skip_bad=False, progress=False)
    assert "empty label" in str(error.value) and "appears twice" in str(error.value)
    done = check_cli("--dataset_name", folder, *COLUMNS[:8], *COLUMNS[10:], "--json_report", str(tmp_path / "r.json"))
    assert done.returncode == 1 and "Problems: 3" in done.stdout  # hcam-data-check: the usual report, exit 1
    assert len(json.load(open(tmp_path / "r.json"))["problems"]) == 3


def test_unknown_column_and_unknown_label_in_test(disk_dataset, tmp_path):
    from hcam.processing.datasets import load_hcam_dataset
    from hcam.processing.report import HCAMDataError

    with pytest.raises(HCAMDataError, match=r"column 'speaker_name' not found .*--speaker_column_name"):
        load_hcam_dataset(disk_dataset, **dict(COLUMN_KWARGS, speaker_column="speaker_name"), progress=False)

    import datasets

    gone = list(datasets.load_from_disk(disk_dataset)["test"]["emotion"])[0]  # a label the test split has

    def without_it_in_train(columns):
        columns["emotion"] = [(e + 1) % len(LABELS) if e == gone else e for e in columns["emotion"]]
        return columns

    folder = edited_copy(disk_dataset, tmp_path / "unseen", without_it_in_train)
    with pytest.raises(HCAMDataError, match=f"Label '{LABELS[gone]}' occurs in the test split"):
        load_hcam_dataset(folder, **dict(COLUMN_KWARGS, audio_column=None), progress=False)


def test_audio_as_paths_bytes_and_decoded_arrays(tmp_path):
    """An Audio column (bytes), a column of paths and a column of {"array", "sampling_rate"} give the same samples;
    another type is refused naming the column."""
    import datasets

    from hcam.modeling_hcam.feature_extraction_hcam import load_audio
    from hcam.processing.datasets import load_hcam_dataset
    from hcam.processing.report import HCAMDataError

    write_corpus(str(tmp_path / "corpus"), dialogues={"train": 3}, turns=TURNS)
    rows = source_columns(tmp_path / "corpus", "train")
    expected = [load_audio(path) for path in rows["clip"]]
    arrays = [{"array": sf.read(p, dtype="float32")[0], "sampling_rate": 16000} for p in rows["clip"]]
    variants = {
        "paths": datasets.Dataset.from_dict(rows),
        "audio": datasets.Dataset.from_dict(rows).cast_column("clip", datasets.Audio()),
        "arrays": datasets.Dataset.from_dict(dict(rows, clip=arrays)),
    }
    for name, train in variants.items():
        train.save_to_disk(str(tmp_path / name))  # one Dataset without splits: read as train
        dataset, report = load_hcam_dataset(str(tmp_path / name), **COLUMN_KWARGS, progress=False)
        assert "read as the train split" in " ".join(report.notes), name
        rows_read = [row for split in ("train", "validation") for row in dataset[split]]
        assert len(rows_read) == len(expected), name
        for row in rows_read:
            samples, d, t = load_audio(row["audio"]), row["dialogue_id"], row["turn"]
            np.testing.assert_allclose(samples, expected[int(d[len("train"):]) * TURNS + t], atol=1e-4, err_msg=name)
    datasets.Dataset.from_dict(dict(rows, clip=list(range(9)))).save_to_disk(str(tmp_path / "ints"))
    with pytest.raises(HCAMDataError, match=r"the audio column 'clip' holds .*int64.*--audio_column_name"):
        load_hcam_dataset(str(tmp_path / "ints"), **COLUMN_KWARGS, progress=False)
    dataset, _ = load_hcam_dataset(str(tmp_path / "ints"), **COLUMN_KWARGS, audio=False, progress=False)  # text only
    assert set(list(dataset["train"]["audio"])) == {""}


def test_how_a_dataset_name_is_resolved(tmp_path, monkeypatch, disk_dataset):
    """Registry first (any case), then an existing save_to_disk folder, then a Hub id; anything else a clear error."""
    from hcam.processing.corpora import CORPORA, get_corpus
    from hcam.processing.datasets import load_hcam_dataset
    from hcam.processing.report import HCAMDataError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "meld").mkdir()  # a folder named like a built-in corpus does not shadow it
    assert get_corpus("meld") is CORPORA["meld"] and get_corpus("MELD") is CORPORA["meld"]
    assert get_corpus(None) is CORPORA["manifest"]
    folder = get_corpus(os.path.relpath(disk_dataset))  # recorded by its absolute path
    assert folder.name == folder.source == disk_dataset and folder.hub_dataset_id is None and not folder.fixed_labels
    hub = get_corpus("someone/corpus")
    assert hub.source == "someone/corpus" and hub.hub_dataset_id == "someone/corpus"
    assert hub.canonical_setting("clean") == "clean"  # a Hub dataset's config, passed on
    with pytest.raises(ValueError, match="not one written by datasets' save_to_disk"):
        get_corpus(str(tmp_path / "meld"))
    for name in ("meldd", "a/b/c", "./nowhere", "a--b/c"):
        with pytest.raises(ValueError, match="not a built-in corpus .* not a Hub dataset id") as error:
            get_corpus(name)
        assert ("did you mean meld?" in str(error.value)) == (name == "meldd")
    with pytest.raises(HCAMDataError, match="drop --data_dir"):
        load_hcam_dataset(disk_dataset, data_dir=str(tmp_path), progress=False)
    with pytest.raises(HCAMDataError, match="no configs or revisions; drop --dataset_revision"):
        load_hcam_dataset(disk_dataset, **COLUMN_KWARGS, dataset_revision="v1", progress=False)
    with pytest.raises(ValueError, match=r"--dataset_revision applies to .*, not to --dataset_name meld"):
        load_hcam_dataset("meld", data_dir=str(tmp_path), dataset_revision="v1")
