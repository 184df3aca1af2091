"""Recordings of conversations with known turns, for bench/bench_recordings.py: the demo corpus's voices and
emotion process (data/demo/generate.py: the same prosody, sentence pools and label persistence; the voices are
flite's four, or with --tts espeak the demo corpus's espeak-ng cast),
laid end to end as one call would sound: 2-4 speakers taking turns, pauses between turns (short and long), some
turns overlapping the previous one, some turns of two sentences with a short pause inside, and a little background
noise.

Each recording `<name>.wav` (16 kHz mono, 16-bit) comes with
- `<name>.turns.csv`: the gold turns, start,end,speaker,text,label (what hcam-predict --segments reads);
- `<name>.speech.csv`: start,end,speaker of every sentence actually spoken (the diarization reference: a pause inside
  a turn is not speech);
and, with --stereo, `<name>.stereo.wav`, each speaker of a 2-speaker recording on their own channel.
`recordings.json` lists them.

    apt-get install -y flite espeak-ng
    python bench/make_recordings.py --out /tmp/recordings --seed 0 --speakers 2 2 3 3 4 --turns 40
    python bench/make_recordings.py --out /tmp/long --seed 1 --speakers 3 --minutes 10

Needs flite (or espeak-ng) on PATH and hcam installed (make setup). Every random choice comes from --seed.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

SAMPLING_RATE = 16000
GENERATOR = Path(__file__).resolve().parents[1] / "data" / "demo" / "generate.py"
# Between turns: the probability of an overlap (the next speaker starts before the previous one ends) and of a long
# pause, and their lengths in seconds; otherwise a short pause.
OVERLAP_PROBABILITY, OVERLAP_SECONDS = 0.12, (0.2, 0.5)
LONG_PAUSE_PROBABILITY, LONG_PAUSE_SECONDS = 0.15, (1.2, 2.5)
SHORT_PAUSE_SECONDS = (0.25, 0.9)
# Inside a turn: a second, emotionally empty sentence after a pause shorter than hcam-predict's --min_pause default.
TWO_SENTENCE_PROBABILITY, INNER_PAUSE_SECONDS = 0.25, (0.3, 0.6)
NOISE_SNR_DB = 35.0
# --tts flite: four distinct recorded-speaker voices (Debian's flite), the base pitch (Hz) that the demo corpus's
# pitch offsets move (offset 22 = +22 %), its speaking rates as duration stretch (165 words/min = 1.0) and its
# amplitudes as gain (75 = 1.0). espeak-ng's variants of one synthesiser sound alike to a speaker encoder trained on
# people (resemblyzer puts some pairs of the demo cast 0.09 apart in cosine distance, as close as one voice's turns),
# so the diarization figures use flite; --tts espeak is the demo cast itself.
FLITE_CAST = {"awb": 105, "rms": 100, "slt": 165, "kal16": 110}
FLITE_GAIN = 0.5


def demo_generator():
    spec = importlib.util.spec_from_file_location("demo_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_generate"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def synthesize_flite(voice, pitch_offset, rate, amplitude, text):
    """Speak text with flite (pitch offset, words/min and amplitude on the demo corpus's espeak scales) -> 16 kHz."""
    import os
    import subprocess
    import tempfile

    import soundfile as sf

    from hcam.modeling_hcam.feature_extraction_hcam import _resample

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "tts.wav")
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", path,
                        "--setf", f"int_f0_target_mean={FLITE_CAST[voice] * (1 + pitch_offset / 100):.1f}",
                        "--setf", f"duration_stretch={165 / rate:.3f}"], check=True, capture_output=True)
        audio, rate_in = sf.read(path, dtype="float32")
    if rate_in != SAMPLING_RATE:
        audio = _resample(audio, rate_in, SAMPLING_RATE)
    voiced = np.flatnonzero(np.abs(audio) > 0.005 * np.abs(audio).max())
    audio = audio[max(0, voiced[0] - 800): voiced[-1] + 800] if len(voiced) else audio
    audio = audio / (np.abs(audio).max() + 1e-9) * FLITE_GAIN * amplitude / 75
    return np.clip(audio, -0.98, 0.98).astype(np.float32)


def plan(gen, rng, n_speakers, n_turns, tts="flite"):
    """Turns of one conversation drawn like the demo corpus's test split: [(speaker, label, [sentences], voice,
    pitch, rate, amplitude)]."""
    cast = list(gen.CAST) if tts == "espeak" else list(FLITE_CAST)
    speakers = [cast[i] for i in rng.choice(len(cast), size=n_speakers, replace=False)]
    base = {s: gen.DEMO_LABELS[rng.choice(len(gen.DEMO_LABELS), p=gen.LABEL_PRIOR)] for s in speakers}
    turns, speaker = [], speakers[0]
    for turn in range(n_turns):
        if turn > 0:
            others = [s for s in speakers if s != speaker]
            speaker = others[rng.integers(len(others))]
        label = base[speaker] if rng.random() < gen.EMOTION_PERSISTENCE else \
            gen.DEMO_LABELS[rng.choice(len(gen.DEMO_LABELS), p=gen.LABEL_PRIOR)]
        text_cue = rng.random() < gen.TEXT_CUE_PROBABILITY
        voice_cue = rng.random() < gen.VOICE_CUE_PROBABILITY
        pool = gen.EMOTIONAL_SENTENCES[label] if text_cue else gen.CONTENT_SENTENCES
        sentences = [pool[rng.integers(len(pool))]]
        if rng.random() < TWO_SENTENCE_PROBABILITY:
            sentences.append(gen.CONTENT_SENTENCES[rng.integers(len(gen.CONTENT_SENTENCES))])
        voice, base_pitch = gen.CAST[speaker] if tts == "espeak" else (speaker, 0)
        pitch_offset, rate, amplitude = gen.PROSODY[label if voice_cue else "neutral"]
        pitch = round(base_pitch + pitch_offset + rng.uniform(-gen.PITCH_JITTER, gen.PITCH_JITTER))
        if tts == "espeak":
            pitch = int(np.clip(pitch, 0, 99))
        rate = int(round(rate * (1 + rng.uniform(-gen.RATE_JITTER, gen.RATE_JITTER))))
        amplitude = int(round(amplitude * (1 + rng.uniform(-gen.AMPLITUDE_JITTER, gen.AMPLITUDE_JITTER))))
        turns.append((speaker, label, sentences, voice, pitch, rate, amplitude))
    return turns


def render(gen, rng, turns, tts="flite"):
    """Lay the turns out in time: (per-speaker tracks {speaker: array}, gold turns, spoken sentences)."""
    pieces, gold, speech, cursor = [], [], [], 0.0
    for index, (speaker, label, sentences, voice, pitch, rate, amplitude) in enumerate(turns):
        if index:
            draw = rng.random()
            if draw < OVERLAP_PROBABILITY:
                cursor -= rng.uniform(*OVERLAP_SECONDS)
            elif draw < OVERLAP_PROBABILITY + LONG_PAUSE_PROBABILITY:
                cursor += rng.uniform(*LONG_PAUSE_SECONDS)
            else:
                cursor += rng.uniform(*SHORT_PAUSE_SECONDS)
            cursor = max(cursor, gold[-1]["start"] + 0.3)  # an overlap never swallows the previous turn's start
        start = cursor
        for k, sentence in enumerate(sentences):
            if k:
                cursor += rng.uniform(*INNER_PAUSE_SECONDS)
            audio = (gen.synthesize if tts == "espeak" else synthesize_flite)(voice, pitch, rate, amplitude, sentence)
            pieces.append((speaker, cursor, audio))
            speech.append({"start": round(cursor, 3), "end": round(cursor + len(audio) / SAMPLING_RATE, 3),
                           "speaker": speaker})
            cursor += len(audio) / SAMPLING_RATE
        gold.append({"start": round(start, 3), "end": round(cursor, 3), "speaker": speaker,
                     "text": " ".join(sentences), "label": label})
    total = int((max(p[1] + len(p[2]) / SAMPLING_RATE for p in pieces) + 0.5) * SAMPLING_RATE)
    tracks = {}
    for speaker, at, audio in pieces:
        track = tracks.setdefault(speaker, np.zeros(total, dtype=np.float32))
        first = int(round(at * SAMPLING_RATE))
        track[first: first + len(audio)] += audio
    return tracks, gold, speech


def write_recording(out, name, tracks, gold, speech, rng, stereo):
    import soundfile as sf

    mix = np.sum(list(tracks.values()), axis=0)
    speech_rms = float(np.sqrt(np.mean(mix[np.abs(mix) > 1e-4] ** 2)))
    noise = rng.standard_normal(len(mix)).astype(np.float32) * speech_rms * 10 ** (-NOISE_SNR_DB / 20)
    sf.write(out / f"{name}.wav", np.clip(mix + noise, -1, 1), SAMPLING_RATE, subtype="PCM_16")
    if stereo and len(tracks) == 2:
        both = np.stack([tracks[s] for s in dict.fromkeys(t["speaker"] for t in gold)], axis=1) + noise[:, None]
        sf.write(out / f"{name}.stereo.wav", np.clip(both, -1, 1), SAMPLING_RATE, subtype="PCM_16")
    for suffix, rows, fields in ((".turns.csv", gold, ["start", "end", "speaker", "text", "label"]),
                                 (".speech.csv", speech, ["start", "end", "speaker"])):
        with open(out / f"{name}{suffix}", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return len(mix) / SAMPLING_RATE


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speakers", type=int, nargs="+", default=[2, 2, 3, 3, 4],
                        help="one recording per number given: its speaker count (2-4)")
    parser.add_argument("--turns", type=int, default=40, help="turns per recording")
    parser.add_argument("--minutes", type=float, default=None, help="instead of --turns: add turns until this long")
    parser.add_argument("--tts", choices=["flite", "espeak"], default="flite",
                        help="voices: flite's four speakers (default), or the demo corpus's espeak-ng cast")
    parser.add_argument("--stereo", action="store_true", help="also a stereo file of each 2-speaker recording")
    args = parser.parse_args(argv)
    import shutil

    program = "espeak-ng" if args.tts == "espeak" else "flite"
    if shutil.which(program) is None:
        sys.exit(f"{program} is not on PATH: apt-get install -y {program}")
    gen = demo_generator()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    listing = []
    for index, n_speakers in enumerate(args.speakers):
        if not 2 <= n_speakers <= 4:
            sys.exit(f"--speakers: {n_speakers} is not between 2 and 4")
        rng = np.random.default_rng([args.seed, index])
        n_turns = args.turns if args.minutes is None else int(args.minutes * 60 / 1.9) + 1  # ~1.9 s per turn + pause
        tracks, gold, speech = render(gen, rng, plan(gen, rng, n_speakers, n_turns, args.tts), args.tts)
        name = f"{args.tts}{args.seed:03d}_{index:02d}_{n_speakers}spk"
        seconds = write_recording(out, name, tracks, gold, speech, rng, args.stereo)
        listing.append({"name": name, "speakers": n_speakers, "turns": len(gold), "seconds": round(seconds, 2)})
        print(f"{name}: {n_speakers} speakers, {len(gold)} turns, {seconds:.1f} s", file=sys.stderr)
    (out / "recordings.json").write_text(json.dumps(listing, indent=2) + "\n")


if __name__ == "__main__":
    main()
