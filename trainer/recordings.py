"""A recorded conversation in, one row per turn out: the recording side of hcam-predict (`--recording` without
`--segments`), as functions the web page (hcam-app) and Python callers share.

    from hcam.trainer.recordings import predict_recording
    turns = predict_recording("call.wav", "org/hcam-demo", asr="whisper", plot="call.png")

The turns and speakers come from `hcam.processing.recording.find_turns`; the predictions from `hcam.trainer.predict`
(`read_recording`, then `predict`: the pipeline, ASR, the output file and the timeline).
"""
from __future__ import annotations

import os

from hcam.trainer.predict import load_pipeline, predict, read_recording


def predict_recording(recording, model, *, sampling_rate=None, segments=None, output=None, asr="whisper",
                      plot=None, progress=False, device=None, batch_size=8, **find_turns_options) -> list[dict]:
    """A recorded conversation in, one row per turn out: what `hcam-predict --recording` does, as a function.

    Args:
        recording: an audio (or video) file, or an array of samples (1-D, or (samples, channels)) with its
            `sampling_rate`.
        model: a checkpoint folder or Hub repo id, or a pipeline from `load_pipeline`.
        segments: a segments table (start,end[,speaker][,text][,label]); without it the turns and speakers are found
            (`hcam.processing.recording.find_turns`; options min_pause, max_turn_seconds, num_speakers,
            channels_are_speakers).
        output: also write the rows there (.jsonl or .csv; nothing is written when a step fails).
        asr: "whisper" (default), "pocketsphinx" or "none", for turns without text when the model reads text.
        plot: also draw the emotion timeline to this .png/.svg/.pdf.

    Returns:
        `[{"dialogue_id", "turn", "speaker", "start", "end", "text", "text_source", "label", "score",
        "probabilities", "stages"}, ...]` in time order.

    Raises:
        PredictError: a recording or option that cannot be used (not audio, empty, silent, ...), with what to do.
    """
    import tempfile

    pipe = model if hasattr(model, "model") and hasattr(model, "processor") else load_pipeline(model, device=device)
    conversations = read_recording(recording, segments, sampling_rate=sampling_rate, progress=progress,
                                   **find_turns_options)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hcam-predict-") as folder:
        predict(conversations, pipe, output or os.path.join(folder, "turns.jsonl"), asr=asr, progress=progress,
                batch_size=batch_size, plot=plot, rows=rows, asr_progress=segments is None)
    return rows
