"""Tiny fake release trees, laid out exactly as each corpus is distributed (test fixtures, not shipped).

Every clip is a short tone whose pitch depends on its label (plus noise), so a model can learn something and no
clip is silent; every transcript names its label's word most of the time.
"""

import csv
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from hcam.processing.mosi import MOSI_TEST_VIDEOS, MOSI_TRAIN_VIDEOS, MOSI_VALID_VIDEOS

SAMPLING_RATE = 16000


def tone(index, seconds=0.25, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    return (0.3 * np.sin(2 * np.pi * (200.0 + 120.0 * index) * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_wav(path, index, seed=0):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(index, seed=seed), SAMPLING_RATE)
    return path


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ----- IEMOCAP_full_release ------------------------------------------------------------------------------------
IEMOCAP_CODES = ["hap", "sad", "neu", "ang", "exc", "fru"]
IEMOCAP_WORDS = {"hap": "glad", "sad": "down", "neu": "fine", "ang": "furious", "exc": "thrilled", "fru": "stuck"}


def fake_iemocap(root, sessions=(1, 2, 3, 4, 5), dialogues_per_session=2, turns=6):
    """Session{s}/dialog/EmoEvaluation, dialog/transcriptions, sentences/wav; one 'xxx' turn per dialogue (left
    out by both settings). Every session has `dialogues_per_session` dialogues, each with every code."""
    root = Path(root)
    for s in sessions:
        session = root / f"Session{s}"
        for d in range(dialogues_per_session):
            dialog = f"Ses0{s}{'FM'[d % 2]}_impro0{d + 1}"
            evaluation, transcript = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""], []
            for t in range(turns + 1):
                code = "xxx" if t == turns else IEMOCAP_CODES[(t + s + d) % len(IEMOCAP_CODES)]
                speaker = "FM"[t % 2]
                uid = f"{dialog}_{speaker}{t:03d}"
                start, end = 2.0 * t + 1, 2.0 * t + 2.2
                evaluation += [f"[{start:.4f} - {end:.4f}]\t{uid}\t{code}\t[2.5000, 3.0000, 3.5000]",
                               "C-E1:\tNeutral;\t()", ""]
                transcript.append(f"{uid} [{start:08.4f}-{end:08.4f}]: I feel {IEMOCAP_WORDS.get(code, 'odd')} now.")
                index = IEMOCAP_CODES.index(code) if code in IEMOCAP_CODES else 0
                write_wav(session / "sentences" / "wav" / dialog / f"{uid}.wav", index, seed=t)
            for folder, lines in (("EmoEvaluation", evaluation), ("transcriptions", transcript)):
                (session / "dialog" / folder).mkdir(parents=True, exist_ok=True)
                (session / "dialog" / folder / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    return root


# ----- MELD.Raw --------------------------------------------------------------------------------------------------
MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
               "Season", "Episode", "StartTime", "EndTime"]
MELD_EMOTIONS = {"neutral": "neutral", "joy": "positive", "anger": "negative", "sadness": "negative",
                 "surprise": "positive", "fear": "negative", "disgust": "negative"}


def _mp4(path, frequency):
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"sine=frequency={frequency}:duration=0.3", "-c:a", "aac", str(path)], check=True)


def fake_meld(root, dialogues={"train": 6, "validation": 2, "test": 2}, turns=3):
    """The three *_sent_emo.csv files and the three clip folders of dia{D}_utt{U}.mp4 (audio extracted by the reader)."""
    from hcam.processing.meld import MELD_LAYOUT

    root = Path(root)
    emotions = list(MELD_EMOTIONS)
    clips = {}
    for i, emotion in enumerate(emotions):  # one encoded clip per emotion, copied: ffmpeg runs 7 times
        clips[emotion] = root / f".clip_{emotion}.mp4"
        root.mkdir(parents=True, exist_ok=True)
        _mp4(clips[emotion], 220 + 110 * i)
    for split, count in dialogues.items():
        csv_name, clip_folder, _ = MELD_LAYOUT[split]
        (root / clip_folder).mkdir(parents=True, exist_ok=True)
        rows = []
        for d in range(count):
            for u in range(turns):
                emotion = emotions[(d + u) % len(emotions)]
                rows.append([len(rows) + 1, f"So {emotion} today.", ["Ross", "Rachel"][u % 2], emotion,
                             MELD_EMOTIONS[emotion], d, u, 1, 1, "00:00:01,000", "00:00:02,000"])
                (root / clip_folder / f"dia{d}_utt{u}.mp4").write_bytes(clips[emotion].read_bytes())
        write_csv(root / csv_name, MELD_HEADER, rows)
    for clip in clips.values():
        clip.unlink()
    return root


# ----- CMU-MOSI (label CSV + segment wavs) -----------------------------------------------------------------------
def fake_mosi(root, videos={"train": 4, "validation": 2, "test": 2}, clips=4):
    """label.csv (video_id, clip_id, text, label) and wav/<video>/<clip>.wav, with videos of the standard folds."""
    root = Path(root)
    fold_videos = {"train": MOSI_TRAIN_VIDEOS, "validation": MOSI_VALID_VIDEOS, "test": MOSI_TEST_VIDEOS}
    scores = [-2.6, -1.2, -0.4, 0.0, 0.6, 1.4, 2.8]
    rows = []
    for split, count in videos.items():
        for v, video in enumerate(fold_videos[split][:count]):
            for c in range(1, clips + 1):
                score = scores[(v + c) % len(scores)]
                rows.append([video, str(c), f"this is {'good' if score >= 0 else 'bad'} stuff", str(score)])
                write_wav(root / "wav" / video / f"{c}.wav", int(score + 3), seed=c)
    write_csv(root / "label.csv", ["video_id", "clip_id", "text", "label"], rows)
    return root


# ----- a plain manifest: train and test files only (validation is carved from train) ------------------------------
MANIFEST_LABELS = ["calm", "tense", "upbeat"]


def fake_manifest(root, dialogues={"train": 10, "test": 3}, turns=4):
    root = Path(root)
    for split, count in dialogues.items():
        rows = []
        for d in range(count):
            for t in range(turns):
                label = MANIFEST_LABELS[(d + t) % len(MANIFEST_LABELS)]
                audio = f"audio/{split}{d}_{t}.wav"
                write_wav(root / audio, MANIFEST_LABELS.index(label), seed=t)
                rows.append([f"{split}{d}", t, "AB"[t % 2], f"it feels {label}", audio, label])
        write_csv(root / f"{split}.csv", ["dialogue_id", "turn", "speaker", "text", "audio", "label"], rows)
    return root
