"""A raw recording in, turns, speakers and emotions out: hcam.processing.recording.find_turns (silero-vad +
resemblyzer, both offline), hcam-predict --recording without --segments, predict_recording, and bad recordings.

The recordings are laid out here from demo-corpus clips of two voices that a speaker encoder tells apart (alex, a male
espeak-ng voice, and blair, a female one), with known turn times.
"""
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from demo_recording import DEMO, SR, clips_of, lay_out, two_speaker_call
from tiny import minilm_processor, tiny_hcam_config

from hcam.modeling_hcam import HCAMForEmotionRecognition
from hcam.trainer.predict import PredictError, main, predict, read_recording
from hcam.trainer.recordings import predict_recording

pytest.importorskip("silero_vad", reason='find_turns needs pip install "hcam[recordings]" (make setup installs it)')
pytest.importorskip("resemblyzer", reason='find_turns needs pip install "hcam[recordings]" (make setup installs it)')

from hcam.processing.recording import RecordingError, find_turns  # noqa: E402

pytestmark = pytest.mark.skipif(not (DEMO / "test.csv").is_file(), reason="the demo corpus (data/demo) is missing")


@pytest.fixture(scope="module")
def voices():
    return {"alex": clips_of("alex", 8), "blair": clips_of("blair", 8)}


@pytest.fixture(scope="module")
def dialogue(voices, tmp_path_factory):
    """A 2-speaker recording of 8 alternating turns (the 3rd has two clips 0.4 s apart), as a WAV file."""
    path = tmp_path_factory.mktemp("rec") / "call.wav"
    waveform, gold = two_speaker_call(voices, path)
    return path, waveform, gold


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Tiny stage-2 checkpoints: audio-only (no ASR needed), text+audio, and audio-only causal."""
    folders = {}
    for kind, modalities, context in (("audio", ("audio",), "bidirectional"), ("bimodal", ("audio", "text"), "bidirectional"),
                                      ("causal", ("audio",), "causal")):
        torch.manual_seed(0)
        folder = tmp_path_factory.mktemp(f"ckpt-{kind}")
        HCAMForEmotionRecognition(tiny_hcam_config(2, modalities, encoder_chunk_size=3, context=context)
                                  ).save_pretrained(folder)
        minilm_processor().save_pretrained(folder)
        folders[kind] = folder
    return folders


def assert_matches(turns, gold, tolerance=0.3):
    """Same number of turns, each boundary within `tolerance` s, and one found speaker per gold speaker."""
    assert len(turns) == len(gold), (turns, gold)
    mapping = {}
    for turn, (start, end, speaker) in zip(turns, gold):
        assert abs(turn["start"] - start) < tolerance and abs(turn["end"] - end) < tolerance, (turn, start, end)
        assert mapping.setdefault(turn["speaker"], speaker) == speaker, (turn, speaker)
    assert len(set(mapping.values())) == len(mapping)


def test_turns_and_speakers_found_with_pauses_inside_turns_kept(dialogue):
    path, waveform, gold = dialogue
    turns = find_turns(path)  # the number of speakers estimated
    assert_matches(turns, gold)
    assert [t["speaker"] for t in turns[:2]] == ["S1", "S2"]  # numbered by first appearance
    assert turns == find_turns(path, num_speakers=2)
    # an array gives the same; a 0.3 s min_pause splits the turn with the 0.4 s pause inside it
    assert find_turns(waveform, SR) == turns
    split = find_turns(path, min_pause=0.3)
    assert len(split) == len(gold) + 1 and split[2]["speaker"] == split[3]["speaker"] == turns[2]["speaker"]
    # 44.1 kHz stereo (the same voice on both channels) reads the same, resampled window by window
    import torchaudio.functional as taf

    high = taf.resample(torch.from_numpy(waveform), SR, 44100).numpy()
    assert_matches(find_turns(np.stack([high, high], axis=1), 44100), gold)


def test_windows_do_not_change_the_turns(dialogue):
    """A recording read 10 s at a time (a turn crossing a window's edge is carried over) gives the same turns."""
    path, _, gold = dialogue
    assert_matches(find_turns(path, window_seconds=10), gold)


def test_long_turns_are_cut_at_their_longest_pause(voices, tmp_path):
    clips = [c for c, _ in voices["alex"][:6]]
    waveform, gold = lay_out([("alex", clips)], inner_pause=0.5)
    turns = find_turns(waveform, SR, num_speakers=1, max_turn_seconds=gold[0][1] / 2)
    assert len(turns) >= 2 and all(t["end"] - t["start"] <= gold[0][1] / 2 + 1e-6 for t in turns)
    assert {t["speaker"] for t in turns} == {"S1"}
    assert len(find_turns(waveform, SR, num_speakers=1)) == 1


def test_one_speaker_is_estimated_as_one(voices):
    waveform, gold = lay_out([("alex", [c]) for c, _ in voices["alex"][:6]], pause=0.8)
    turns = find_turns(waveform, SR)
    # one voice, pauses of 0.8 s < min_pause: one turn; with a shorter min_pause, one turn per clip, all S1
    assert len(turns) == 1 and turns[0]["speaker"] == "S1"
    assert_matches(find_turns(waveform, SR, min_pause=0.5), gold)


def test_channels_are_speakers(dialogue, tmp_path):
    path, waveform, gold = dialogue
    left, right = np.zeros_like(waveform), np.zeros_like(waveform)
    for start, end, speaker in gold:
        channel = left if speaker == "alex" else right
        channel[int(start * SR): int(end * SR)] = waveform[int(start * SR): int(end * SR)]
    stereo = tmp_path / "stereo.flac"
    soundfile.write(stereo, np.stack([left, right], axis=1), SR)
    turns = find_turns(stereo, channels_are_speakers=True)
    assert_matches(turns, gold)
    assert {t["speaker"] for t, g in zip(turns, gold) if g[2] == "alex"} == {"S1"}  # channel 1
    # each party's voice leaking into the other's microphone 20 dB down (echo, crosstalk) is not a turn of theirs
    leaky = find_turns(np.stack([left + 0.1 * right, right + 0.1 * left], axis=1), SR, channels_are_speakers=True)
    assert_matches(leaky, gold)
    assert [t["speaker"] for t in leaky] == [t["speaker"] for t in turns]
    with pytest.raises(RecordingError, match="1 channel: channels_are_speakers needs one channel per speaker"):
        find_turns(path, channels_are_speakers=True)


def test_cli_writes_turns_csv_and_timeline_and_python_gives_the_same_rows(dialogue, checkpoint, tmp_path):
    path, _, gold = dialogue
    out = tmp_path / "call.csv"
    assert main(["--model", str(checkpoint["audio"]), "--recording", str(path), "--output", str(out),
                 "--plot", str(tmp_path / "call.png"), "--no_progress"]) == 0
    with open(out, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(gold)
    assert {"start", "end", "speaker", "label", "prob_neutral", "prob_angry"} <= set(rows[0])
    for row, (start, end, _) in zip(rows, gold):
        assert abs(float(row["start"]) - start) < 0.3 and abs(float(row["end"]) - end) < 0.3
        assert sum(float(row[f"prob_{l}"]) for l in ("neutral", "happy", "sad", "angry")) == pytest.approx(1, abs=1e-4)
    assert (tmp_path / "call.png").stat().st_size > 1000
    python_rows = predict_recording(path, checkpoint["audio"])
    assert [(r["start"], r["end"], r["speaker"], r["label"]) for r in python_rows] == \
        [(float(r["start"]), float(r["end"]), r["speaker"], r["label"]) for r in rows]
    # the same as cutting the recording with a segments table of the found turns
    segments = tmp_path / "segments.csv"
    with open(segments, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["start", "end", "speaker"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in ("start", "end", "speaker")} for r in python_rows)
    from_segments = predict_recording(path, checkpoint["audio"], segments=segments)
    assert len(from_segments) == len(python_rows)
    for a, b in zip(from_segments, python_rows):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def test_asr_transcribes_the_found_turns(dialogue, checkpoint, voices, tmp_path):
    pytest.importorskip("faster_whisper", reason='ASR needs pip install "hcam[asr]" (make setup installs it)')
    path, _, gold = dialogue
    rows = predict_recording(path, checkpoint["bimodal"], num_speakers=2, output=tmp_path / "out.jsonl")
    assert len(rows) == len(gold) and all(r["text_source"] == "asr:whisper" for r in rows)
    words = " ".join(r["text"] for r in rows).lower()
    spoken = [voices["alex"][0][1], voices["blair"][0][1]]  # the first two turns' words come back
    assert sum(w.strip(".,!?").lower() in words for s in spoken for w in s.split()) >= 0.6 * sum(
        len(s.split()) for s in spoken)
    assert [json.loads(line)["label"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == \
        [r["label"] for r in rows]


@pytest.mark.parametrize("case", ["not_audio", "silent", "zero_seconds", "missing"])
def test_bad_recordings_get_a_clear_message_and_no_output(case, checkpoint, tmp_path, capsys):
    path = tmp_path / "call.wav"
    if case == "not_audio":
        path.write_text("this is a transcript, not a recording\n" * 20)
        expected = "call.wav is not an audio file that can be read"
    elif case == "silent":
        soundfile.write(path, np.zeros(SR * 5, np.float32), SR)
        expected = "no speech found in call.wav"
    elif case == "zero_seconds":
        soundfile.write(path, np.zeros(0, np.float32), SR)
        expected = "call.wav is empty"
    else:
        expected = "recording not found"
    out = tmp_path / "out.jsonl"
    assert main(["--model", str(checkpoint["audio"]), "--recording", str(path), "--output", str(out),
                 "--no_progress"]) == 2
    assert expected in capsys.readouterr().err
    assert list(tmp_path.glob("out*")) == [] and list(tmp_path.glob(".out*")) == []


def test_options_are_checked(dialogue, checkpoint, tmp_path, capsys):
    path, _, _ = dialogue
    for argv, expected in (
        (["--num_speakers", "2", "--manifest", str(DEMO / "test.csv")], "--num_speakers go with --recording"),
        (["--recording", str(path), "--min_pause", "-1"], "min_pause must be >= 0"),
        (["--recording", str(path), "--num_speakers", "2", "--channels_are_speakers"], "leave num_speakers out"),
        (["--recording", str(path), "--segments", str(path), "--num_speakers", "2"], "a segments file already gives"),
    ):
        assert main(["--model", str(checkpoint["audio"]), "--output", str(tmp_path / "o.jsonl"), *argv]) == 2
        assert expected in capsys.readouterr().err
    with pytest.raises(PredictError, match="goes with a recording file"):
        read_recording(np.zeros(SR), tmp_path / "segments.csv")


def test_a_failure_midway_leaves_no_half_written_file(dialogue, checkpoint, tmp_path):
    """The output appears only when every row is written."""
    from hcam.trainer.predict import load_pipeline

    path, _, _ = dialogue
    pipe = load_pipeline(str(checkpoint["audio"]))
    conversations = read_recording(path) * 2  # two conversations: the second one fails

    class Failing:
        model, processor = pipe.model, pipe.processor

        def __call__(self, inputs, **kwargs):
            results = pipe(inputs, **kwargs)
            yield next(results)
            raise ValueError("turn 3: something went wrong")

    out = tmp_path / "out.jsonl"
    with pytest.raises(PredictError, match="something went wrong"):
        predict(conversations, Failing(), out, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_live_recording_without_segments(dialogue, checkpoint, tmp_path):
    """--live --recording: the found turns go to the causal model one by one; the same labels as offline."""
    path, _, gold = dialogue
    out = tmp_path / "live.jsonl"
    assert main(["--model", str(checkpoint["causal"]), "--live", "--recording", str(path), "--output", str(out)]) == 0
    live = [json.loads(line) for line in out.read_text().splitlines()]
    offline = predict_recording(path, checkpoint["causal"])
    assert [(r["start"], r["speaker"], r["label"]) for r in live] == [(r["start"], r["speaker"], r["label"])
                                                                      for r in offline]
    assert len(live) == len(gold)


def bench_module(name):
    import importlib
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    return importlib.import_module(name)


def recordings_folder(dialogue, folder):
    """The test call laid out as bench/make_recordings.py writes a folder: <name>.wav, <name>.turns.csv,
    <name>.speech.csv (one sentence per turn) and recordings.json. Returns the gold rows."""
    _, waveform, gold = dialogue
    folder.mkdir()
    soundfile.write(folder / "call.wav", waveform, SR, subtype="PCM_16")
    rows = [{"start": round(a, 3), "end": round(b, 3), "speaker": s, "text": "", "label": "happy"} for a, b, s in gold]
    with open(folder / "call.turns.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["start", "end", "speaker", "text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    with open(folder / "call.speech.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["start", "end", "speaker"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (folder / "recordings.json").write_text(json.dumps([{"name": "call", "speakers": 2, "turns": len(gold),
                                                         "seconds": len(waveform) / SR}]))
    return rows


def test_benchmark_scores_a_recording_with_known_turns(dialogue, checkpoint, tmp_path):
    """bench/bench_recordings.py on one recording whose gold turns are known: the diarization error rate and the
    boundary F1 come from pyannote.metrics; a found turn set that is wrong on purpose scores worse."""
    pytest.importorskip("pyannote.metrics", reason='the benchmark needs pip install "hcam[bench]" (make setup)')
    bench = bench_module("bench_recordings")
    folder = tmp_path / "recordings"
    rows = recordings_folder(dialogue, folder)
    bench.main(["--recordings", str(folder), "--model", str(checkpoint["audio"]), "--json", str(tmp_path / "r.json")])
    result = json.loads((tmp_path / "r.json").read_text())["recordings"][0]
    assert result["der"] < 0.1 and result["found_speakers"] == 2
    assert min(result["boundary_f1"].values()) > 0.9
    assert set(result["weighted_f1"]) == {"gold turns + gold text", "gold turns + ASR", "whole path",
                                          "voice activity + gold speakers + ASR", "found turns, gold speakers + ASR"}
    # the turns a perfect speaker step would cut from the same voice activity are the gold turns
    assert result["gold_speakers_boundary_f1"] == {"starts": 1.0, "ends": 1.0} and result["gold_speakers_der"] < 0.1
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert summary["call, 2-3 speakers"]["gold_turns"] == len(rows)  # grouped by the name's voice prefix
    assert summary["all"]["turn_kinds"]["clean"]["turns"] >= len(rows) - 1
    # the scorers see a difference: one speaker for everything, and turns shifted by 1 s
    one_speaker = [{**r, "speaker": "S1"} for r in rows]
    shifted = [{**r, "start": r["start"] + 1, "end": r["end"] + 1} for r in rows]
    from pyannote.metrics.diarization import DiarizationErrorRate

    assert DiarizationErrorRate()(bench.annotation(rows), bench.annotation(one_speaker)) > 0.3
    assert max(bench.boundary_f1(rows, shifted, 0.5).values()) == 0
    assert bench.labels_on_gold_turns(rows, [{"start": 0, "end": 0.2, "label": "sad"}]) == ["(none)"] * len(rows)


def test_benchmark_decomposes_found_turns_against_gold_ones():
    """bench_recordings' per-turn structure: a gold turn that found turns miss, split or merge with another is named
    so, and the found turns take the gold speakers' names by overlap (a found turn over no gold turn keeps its own)."""
    bench = bench_module("bench_recordings")
    gold = [{"start": 0.0, "end": 2.0, "speaker": "ann"}, {"start": 2.5, "end": 4.0, "speaker": "bob"},
            {"start": 5.0, "end": 7.0, "speaker": "ann"}, {"start": 8.0, "end": 9.0, "speaker": "bob"},
            {"start": 10.0, "end": 12.0, "speaker": "ann"}]
    found = [{"start": 0.0, "end": 4.0, "speaker": "S1"},  # gold 0 and 1 merged
             {"start": 5.0, "end": 6.0, "speaker": "S2"}, {"start": 6.0, "end": 7.0, "speaker": "S1"},  # gold 2 split
             {"start": 8.8, "end": 9.0, "speaker": "S2"},  # gold 3 mostly missed
             {"start": 10.1, "end": 11.9, "speaker": "S1"}, {"start": 13.0, "end": 14.0, "speaker": "S3"}]
    assert bench.turn_structure(gold, found) == [["merged"], ["merged"], ["split"], ["missed"], []]
    assert [t["speaker"] for t in bench.with_gold_speakers(found, gold)] == ["ann", "ann", "ann", "bob", "ann", "S3"]
    labels = {"reference": ["a", "b", "a", "b", "a"], "whole path": ["a", "a", "a", "(none)", "a"],
              "gold turns + ASR": ["a", "b", "b", "b", "a"]}
    kinds = bench.structure_summary(bench.turn_structure(gold, found), labels)
    assert kinds["merged"] == {"turns": 2, "accuracy, whole path": 0.5, "accuracy, gold turns + ASR": 1.0}
    assert kinds["missed"]["accuracy, whole path"] == 0.0 and kinds["clean"]["turns"] == 1
    assert bench.score_paths(labels)["whole_path_agrees_with_gold_turns_asr"] == 0.4
    # summarised per voice set: the whole path loses one turn of ten to gold turns + ASR, on one recording of two
    recording = {"voices": "flite", "speakers": 2, "seconds": 10.0, "gold_turns": 5, "der": 0.0, "found_speakers": 2,
                 "der_collar_0.5": 0.0, "boundary_f1": {"starts": 1.0, "ends": 1.0}, "whole_path_seconds": 1.0,
                 "turn_kinds": [[]] * 5, "labels": {"reference": ["a", "b", "a", "b", "a"],
                                                    "gold turns + ASR": ["a", "b", "a", "b", "a"]}}
    right = {**recording, "labels": {**recording["labels"], "whole path": ["a", "b", "a", "b", "a"]}}
    wrong = {**recording, "labels": {**recording["labels"], "whole path": ["a", "b", "a", "a", "a"]}}
    summary = bench.summarise([{**r, **bench.score_paths(r["labels"])} for r in (right, wrong)], resamples=200)
    gap = summary["flite, 2-3 speakers"]["whole_path_minus_gold_turns_asr"]
    references = recording["labels"]["reference"] * 2
    assert gap["pooled"] == pytest.approx(bench.weighted_f1(references, references[:8] + ["a", "a"]) - 1) != 0
    assert gap["pooled_95_interval"][0] < gap["pooled"] < 0 == gap["pooled_95_interval"][1]


def test_clustering_of_many_embeddings_is_subsampled_and_right():
    """More embeddings than MAX_CLUSTERED_EMBEDDINGS (an hour of speech): a subset is clustered, the rest go to the
    nearest centroid; three voices come back as three, numbered by first appearance; one voice as one."""
    from hcam.processing import recording

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 256))
    truth = rng.integers(0, 3, recording.MAX_CLUSTERED_EMBEDDINGS + 500)
    embeddings = centres[truth] + 0.6 * rng.standard_normal((len(truth), 256))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = recording.cluster_speakers(embeddings)
    assert labels[0] == 0 and set(labels) == {0, 1, 2}
    assert len({(t, l) for t, l in zip(truth, labels)}) == 3  # one label per true voice
    assert (recording.cluster_speakers(embeddings, num_speakers=3) == labels).all()
    one = centres[0] + 0.6 * rng.standard_normal((400, 256))
    assert set(recording.cluster_speakers(one / np.linalg.norm(one, axis=1, keepdims=True))) == {0}


def test_speaker_count_from_the_mfcc_bic_of_the_embedding_tree():
    """find_turns' count (speaker_tree_cut): two voices whose speaker embeddings are close (0.1 apart in cosine
    distance, below the distance at which the embeddings alone call them one voice) but whose MFCC frames differ are
    two; the same embeddings with one voice's frames are one; cluster_speakers with the statistics agrees."""
    from hcam.processing import recording

    rng = np.random.default_rng(0)
    first = rng.standard_normal(256)
    second = first + 0.5 * np.linalg.norm(first) * rng.standard_normal(256) / 16
    truth = np.repeat([0, 1], 20)
    embeddings = np.stack([(first, second)[t] for t in truth]) / 16 + 0.02 * rng.standard_normal((40, 256))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    assert recording.estimate_speakers(embeddings) == 1  # the embeddings alone: one voice

    def statistics(means):
        rows = []
        for mean in means:
            frames = mean + rng.standard_normal((150, 19)) @ np.diag(np.linspace(1, 3, 19))
            rows.append(np.concatenate([[len(frames)], frames.sum(axis=0), (frames.T @ frames).ravel()]))
        return np.stack(rows)

    voices = np.stack([np.zeros(19), np.r_[np.full(6, 1.5), np.zeros(13)]])
    labels = recording.speaker_tree_cut(embeddings, statistics(voices[truth]))
    assert len({(t, l) for t, l in zip(truth, labels)}) == 2 and len(set(labels)) == 2
    same = statistics(voices[np.zeros(40, dtype=int)])
    assert set(recording.speaker_tree_cut(embeddings, same)) == {0}
    assert (recording.cluster_speakers(embeddings, statistics=statistics(voices[truth])) == truth).all()
    assert set(recording.cluster_speakers(embeddings, statistics=same)) == {0}
    # more regions than MAX_ESTIMATE_EMBEDDINGS (a long recording): the tree is built on a subset, every region labelled
    many = np.repeat([0, 1], (recording.MAX_ESTIMATE_EMBEDDINGS + 200) // 2)
    spread = np.stack([(first, second)[t] for t in many]) / 16 + 0.02 * rng.standard_normal((len(many), 256))
    labels = recording.cluster_speakers(spread / np.linalg.norm(spread, axis=1, keepdims=True),
                                        statistics=statistics(voices[many]))
    assert (labels == many).all()


def test_second_tree_of_gmm_supervectors_tells_look_alike_voices_apart():
    """Three voices, two of them with the same speaker embeddings (espeak-ng's look-alike variants): the embeddings'
    tree cut by MFCC BIC finds two speakers; the trees of the embeddings joined with the regions' GMM supervectors
    (mfcc_supervectors, one per GMM seed) find three, and that cut is taken; one voice's regions stay one speaker."""
    from hcam.processing import recording, voice_features

    rng = np.random.default_rng(1)
    truth = np.tile([0, 1, 2], 20)
    voice_embeddings = rng.standard_normal((3, 256))
    voice_embeddings[2] = voice_embeddings[1]
    embeddings = voice_embeddings[truth] + 0.3 * rng.standard_normal((len(truth), 256))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    scales = np.diag(np.linspace(1, 3, 19))
    means = np.stack([np.zeros(19), np.r_[np.full(6, 2.0), np.zeros(13)], np.r_[np.zeros(6), np.full(6, -2.0),
                                                                              np.zeros(7)]])
    frames = [(means[t] + rng.standard_normal((150, 19)) @ scales).astype(np.float32) for t in truth]
    statistics = np.stack([recording.mfcc_statistics(frames=f) for f in frames])
    supervectors = [recording.mfcc_supervectors(frames, seed=seed) for seed in recording.SUPERVECTOR_SEEDS]
    assert supervectors[0].shape == (len(truth), 19 * voice_features.SUPERVECTOR_COMPONENTS)
    assert np.allclose(np.linalg.norm(supervectors[0], axis=1), 1)
    first = recording.cluster_speakers(embeddings, statistics=statistics)
    assert len(set(first)) == 2  # the embeddings' tree alone merges the look-alike voices
    labels = recording.cluster_speakers(embeddings, statistics=statistics, supervectors=supervectors)
    assert (labels == truth).all()
    one = np.flatnonzero(truth == 1)
    alone = [recording.mfcc_supervectors([frames[i] for i in one], seed=seed)
             for seed in recording.SUPERVECTOR_SEEDS]
    assert set(recording.cluster_speakers(embeddings[one], statistics=statistics[one], supervectors=alone)) == {0}


def test_missing_packages_say_what_to_install(dialogue, checkpoint, tmp_path, monkeypatch, capsys):
    import sys

    from hcam.processing.recording import RecordingUnavailableError

    path, _, _ = dialogue
    monkeypatch.setitem(sys.modules, "resemblyzer", None)  # as if not installed
    with pytest.raises(RecordingUnavailableError, match='pip install "hcam\\[recordings\\]"'):
        find_turns(path)
    assert len(find_turns(path, num_speakers=1)) >= 1  # one speaker needs no speaker encoder
    monkeypatch.setitem(sys.modules, "silero_vad", None)
    assert main(["--model", str(checkpoint["audio"]), "--recording", str(path), "--output", str(tmp_path / "o.csv"),
                 "--no_progress"]) == 2
    assert 'needs silero-vad and resemblyzer: pip install "hcam[recordings]"' in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_formats_soundfile_cannot_read_are_decoded_with_ffmpeg(dialogue, tmp_path):
    """An m4a (AAC) call: decoded by imageio-ffmpeg's ffmpeg into a temporary WAV, the same turns as the WAV."""
    import subprocess

    import imageio_ffmpeg

    path, _, gold = dialogue
    m4a = tmp_path / "call.m4a"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(path), "-c:a", "aac",
                    str(m4a)], check=True)
    import glob
    import tempfile

    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "hcam-recording-*")))
    assert_matches(find_turns(m4a), gold)
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "hcam-recording-*"))) == before  # the WAV is gone


def test_turn_spans_read_the_same_audio_as_the_recording_reader(tmp_path):
    """A turn given as a span of the file (read when needed) is the very audio the recording reader gives for it:
    44.1 kHz stereo, the mix and each channel."""
    from hcam.modeling_hcam.feature_extraction_hcam import load_audio_span
    from hcam.processing.recording import _Source

    rng = np.random.default_rng(0)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, 0.1 * rng.standard_normal((44100 * 3, 2)).astype(np.float32), 44100, subtype="FLOAT")
    source = _Source(path)
    try:
        for channel in (None, 0, 1):
            for start, end in ((0.0, 1.3), (0.77, 2.31), (2.5, 3.5)):  # the last one runs past the end
                assert np.array_equal(load_audio_span(path, start, end, SR, channel),
                                      source.read(start, end, channel))
    finally:
        source.close()
    with pytest.raises(ValueError, match="no channel 2"):
        load_audio_span(path, 0, 1, SR, 2)
    with pytest.raises(ValueError, match="holds no samples"):
        load_audio_span(path, 4, 5, SR)


def test_lazy_turn_audio_gives_the_same_predictions_as_arrays(dialogue, checkpoint):
    """The turns of a recording file reach the pipeline as spans of the file, read only when a chunk of turns is
    encoded or transcribed (memory does not grow with the recording); the predictions, transcripts and the
    transcriber's inputs are exactly those of the turns' audio given as arrays."""
    from hcam.trainer.predict import load_pipeline
    from hcam.processing.asr import ProgressTranscriber
    from hcam.trainer.predict_inputs import find_recording_turns

    path, _, gold = dialogue
    lazy = find_recording_turns(path, num_speakers=2)[0]["turns"]
    eager = find_recording_turns(path, num_speakers=2, lazy_audio=False)[0]["turns"]
    assert len(lazy) == len(gold) and all(isinstance(t["audio"], dict) for t in lazy)
    assert all(isinstance(t["audio"], np.ndarray) for t in eager)
    for kind in ("audio", "bimodal"):
        pipe = load_pipeline(str(checkpoint[kind]))
        heard = {}

        def transcriber(waveforms, heard=heard):  # a stand-in recogniser: the words say what audio it was given
            waveforms = list(waveforms)
            assert len(waveforms) <= 3
            heard.setdefault("calls", []).append([w.copy() for w in waveforms])
            return [f"turn of {len(w)} samples peaking at {np.abs(w).max():.6f}" for w in waveforms]

        results = {}
        for name, turns in (("lazy", lazy), ("eager", eager)):
            heard.clear()
            conversation = {"turns": [{"audio": t["audio"], "speaker": t["speaker"], "text": ""} for t in turns]}
            if kind == "audio":
                assert isinstance(pipe.preprocess(conversation)["waveforms"][0], dict) == (name == "lazy")
            kwargs = {} if kind == "audio" else {
                "transcriber": ProgressTranscriber(transcriber, chunk=3, progress=False)}
            results[name] = (pipe([conversation], batch_size=1, **kwargs)[0], heard.get("calls"))
        (lazy_rows, lazy_heard), (eager_rows, eager_heard) = results["lazy"], results["eager"]
        assert lazy_rows == eager_rows  # labels, probabilities, stages and transcripts, exactly
        if kind == "bimodal":
            assert len(lazy_heard) == int(np.ceil(len(gold) / 3)) and all(
                np.array_equal(a, b) for x, y in zip(lazy_heard, eager_heard) for a, b in zip(x, y))


def test_diarization_variants_benchmark(dialogue, tmp_path, monkeypatch):
    """bench/bench_diarization.py: the default speaker step scores as find_turns does; every variant runs on the
    cached embeddings; the one-voice check scores each voice alone; a variant told one speaker scores badly."""
    pytest.importorskip("pyannote.metrics", reason='the benchmark needs pip install "hcam[bench]" (make setup)')
    bench = bench_module("bench_diarization")
    monkeypatch.setattr(bench, "MIN_REGIONS_ALONE", 3)  # the test call is short: 4 turns a voice
    folder = tmp_path / "recordings"
    recordings_folder(dialogue, folder)
    out = tmp_path / "d.json"
    bench.main(["--recordings", str(folder), "--cache", str(tmp_path / "cache"), "--json", str(out)])
    report = json.loads(out.read_text())
    call = report["recordings"][0]["variants"]
    default = bench.DEFAULT_VARIANT
    assert call[default]["speakers"] == 2 and call[default]["der"] < 0.1
    assert set(call) == set(bench.variants())
    # cached: the same figures from the cache alone
    bench.main(["--recordings", str(folder), "--cache", str(tmp_path / "cache"), "--json", str(out), "--only", default])
    assert json.loads(out.read_text())["recordings"][0]["variants"][default] == call[default]
    alone = [r for r in report["recordings"] if r["speakers"] == 1]
    assert alone and all(r["variants"][default]["speakers"] == 1 for r in alone)
    one = bench.variants()["true count given (a bound, not a default)"]
    regions, centres, embeddings, _, _ = bench.embeddings_of(folder / "call.wav", tmp_path / "cache")
    from pyannote.metrics.diarization import DiarizationErrorRate

    with open(folder / "call.turns.csv", encoding="utf-8") as f:
        gold = list(csv.DictReader(f))
    annotation = bench_module("bench_recordings").annotation
    assert DiarizationErrorRate()(annotation(gold), annotation(one(regions, centres, embeddings, 1))) > 0.3


def test_hcam_predict_hands_a_recordings_turns_to_the_pipeline_as_spans(dialogue, checkpoint, monkeypatch):
    """predict() (what hcam-predict --recording and predict_recording run) checks each turn of a recording but keeps
    none of their audio: the pipeline gets the spans and reads them when it encodes them, so memory does not grow
    with the recording; a file-less turn (an array) is handed over decoded, as before."""
    from hcam.trainer import predict as predict_module
    from hcam.trainer.predict import load_pipeline, predict
    from hcam.trainer.predict_inputs import check_turns, find_recording_turns

    path, _, _ = dialogue
    conversations = find_recording_turns(path, num_speakers=2)
    pipe = load_pipeline(str(checkpoint["audio"]))
    check_turns(conversations, pipe.processor.feature_extractor, False, True, None, "none")
    assert all(t["waveform"] is None and not t["bad"] for t in conversations[0]["turns"])
    given = []
    real_call = type(pipe).__call__

    def spy(self, inputs, *args, **kwargs):
        inputs = list(inputs)
        given.extend(turn["audio"] for conversation in inputs for turn in conversation["turns"])
        return real_call(self, inputs, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", spy)
    predict(find_recording_turns(path, num_speakers=2), pipe, str(predict_module.Path(path).with_suffix(".jsonl")),
            progress=False)
    assert given and all(isinstance(audio, dict) and {"path", "start", "end"} <= set(audio) for audio in given)
