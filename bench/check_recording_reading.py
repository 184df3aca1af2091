"""Check that reading a recording's turns as spans of the file (when needed) changes nothing on a long recording:
each turn's audio from its span equals the recording reader's, bit for bit; and HCAM's predictions of every turn,
the turns given as spans and as arrays, with the same stand-in transcripts (no ASR, so the check is quick and free
of the recogniser's own variation), are identical, as are the transcriber's inputs, chunk by chunk.

    python bench/check_recording_reading.py --recording /tmp/long80/flite001_00_3spk.wav \
        --model runs/ablation-demo/full/seed42/stage3
"""
from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np

WORDS = "we should talk about the plan for tomorrow morning and the call".split()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recording", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args(argv)
    import torch

    from hcam.modeling_hcam.feature_extraction_hcam import load_audio_span
    from hcam.processing.recording import _Source, find_turns
    from hcam.trainer.predict import load_pipeline
    from hcam.processing.asr import ProgressTranscriber

    torch.set_num_threads(1)
    path = args.recording
    started = time.perf_counter()
    turns = find_turns(path)
    print(f"find_turns: {len(turns)} turns, {time.perf_counter() - started:.0f} s", flush=True)
    source = _Source(path)
    arrays = [source.read(t["start"], t["end"]) for t in turns]
    source.close()
    same_audio = all(np.array_equal(a, load_audio_span(path, t["start"], t["end"])) for a, t in zip(arrays, turns))
    print(f"each turn's audio from its span equals the recording reader's: {same_audio}", flush=True)
    pipe = load_pipeline(args.model)
    results = {}
    for name in ("spans", "arrays"):
        heard = []

        def transcriber(waveforms, heard=heard):
            waveforms = list(waveforms)
            heard.append(hashlib.sha1(b"".join(w.tobytes() for w in waveforms)).hexdigest())
            return [" ".join(WORDS[: 1 + int(np.abs(w).sum() * 1000) % len(WORDS)]) for w in waveforms]

        audio = [{"path": path, "start": t["start"], "end": t["end"]} for t in turns] if name == "spans" else arrays
        conversation = {"turns": [{"audio": a, "speaker": t["speaker"], "text": ""} for a, t in zip(audio, turns)]}
        started = time.perf_counter()
        rows = pipe([conversation], batch_size=8, transcriber=ProgressTranscriber(transcriber, progress=False))[0]
        results[name] = (rows, heard)
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    (spans, heard_spans), (arrays_rows, heard_arrays) = results["spans"], results["arrays"]
    print(f"transcriber inputs identical ({len(heard_spans)} calls): {heard_spans == heard_arrays}")
    print(f"predictions identical ({len(spans)} turns): {spans == arrays_rows}; labels differing: "
          f"{sum(a['label'] != b['label'] for a, b in zip(spans, arrays_rows))}")


if __name__ == "__main__":
    main()
