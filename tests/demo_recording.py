"""Recordings laid out from demo-corpus clips with known turn times (shared by test_recording and test_app)."""
import csv
from pathlib import Path

import numpy as np
import soundfile

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
SR = 16000


def clips_of(speaker, count):
    """The first `count` test-split clips of a demo speaker: [(16 kHz array, transcript)]."""
    with open(DEMO / "test.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["speaker"] == speaker][:count]
    return [(soundfile.read(DEMO / r["audio"], dtype="float32")[0], r["text"]) for r in rows]


def lay_out(turns, pause=0.7, inner_pause=None):
    """turns: [(speaker, [audio, ...])] -> (waveform, gold [(start, end, speaker)]); the clips of one turn are
    `inner_pause` apart, turns `pause` apart, 0.5 s of silence at each end, a little noise throughout."""
    parts, gold, cursor = [np.zeros(SR // 2, np.float32)], [], 0.5
    for index, (speaker, clips) in enumerate(turns):
        if index:
            parts.append(np.zeros(int(pause * SR), np.float32))
            cursor += pause
        start = cursor
        for k, clip in enumerate(clips):
            if k:
                parts.append(np.zeros(int(inner_pause * SR), np.float32))
                cursor += inner_pause
            parts.append(clip)
            cursor += len(clip) / SR
        gold.append((start, cursor, speaker))
    parts.append(np.zeros(SR // 2, np.float32))
    waveform = np.concatenate(parts)
    noise = np.random.default_rng(0).standard_normal(len(waveform)).astype(np.float32) * 1e-3
    return waveform + noise, gold


def two_speaker_call(voices, path=None):
    """8 alternating turns of alex and blair (voices a speaker encoder tells apart), the 3rd of two clips 0.4 s
    apart; written to `path` (16-bit WAV) when given. Returns (waveform, gold)."""
    turns = []
    for i in range(8):
        speaker = "alex" if i % 2 == 0 else "blair"
        clips = [voices[speaker][i // 2][0]] + ([voices[speaker][4 + i // 2][0]] if i == 2 else [])
        turns.append((speaker, clips))
    waveform, gold = lay_out(turns, inner_pause=0.4)
    if path is not None:
        soundfile.write(path, waveform, SR, subtype="PCM_16")
    return waveform, gold
