"""A recorded conversation in, one row per turn out: the recording side of hcam-predict (`--recording` without
`--segments`), as functions the web page (hcam-app) and Python callers share.

    from hcam.trainer.recordings import predict_recording
    turns = predict_recording("call.wav", "org/hcam-demo", asr="whisper", plot="call.png")

The turns and speakers come from `hcam.processing.recording.find_turns`; the predictions from `hcam.trainer.predict`
(`read_recording`, then `predict`: the pipeline, ASR, the output file and the timeline).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from hcam.trainer.predict import PredictError, load_pipeline, predict, read_recording
from hcam.trainer.predict_inputs import _group, _turn


def find_recording_turns(recording, sampling_rate=None, progress=False, lazy_audio=True, **options) -> list[dict]:
    """Voice activity, speakers and turn audio of a recording without a segments table (hcam.processing.recording).
    With `lazy_audio` (the default), a turn of a file soundfile reads carries the span of the file it covers, read by
    the pipeline when needed (memory does not grow with the recording); without, its audio array."""
    from tqdm.auto import tqdm

    from hcam.processing.recording import RecordingError, find_turns, turn_audio

    is_file = isinstance(recording, (str, os.PathLike))
    if is_file:
        recording = Path(recording).expanduser().resolve()
    name = recording.stem if is_file else "recording"
    total = None  # the recording's length, when it is cheap to know (the bar then shows what is left)
    try:
        import soundfile

        total = soundfile.info(str(recording)).duration if is_file else len(recording) / float(sampling_rate)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by find_turns, with what to do
        pass
    bar = tqdm(desc="finding turns and speakers", unit="s", total=total, disable=not progress, file=sys.stderr,
               bar_format="{desc}: {n:.0f}/{total:.0f} s of audio [{elapsed}<{remaining}]" if total else
               "{desc}: {n:.0f} s of audio [{elapsed}]")
    try:
        turns = find_turns(recording, sampling_rate, progress=bar.update, **options)
        audio = turn_audio(recording, turns, sampling_rate, options.get("channels_are_speakers", False), lazy_audio)
        conversation = [_turn(name, t["speaker"], "", clip, "", f"{name} {t['start']:.2f}-{t['end']:.2f} s",
                              start=t["start"], end=t["end"]) for t, clip in zip(turns, audio)]
    except RecordingError as error:
        raise PredictError(str(error)) from error
    finally:
        bar.close()
    speakers = sorted({t["speaker"] for t in conversation})
    print(f"{name}: {len(conversation)} turn(s), {len(speakers)} speaker(s) ({', '.join(speakers)})", file=sys.stderr)
    return _group(conversation)


class ProgressTranscriber:
    """A transcriber called `chunk` turns at a time, so that a long recording's ASR shows progress (the pipeline hands
    a conversation's turns to ASR in one call) and holds only `chunk` turns' audio (the pipeline's sequence reads a
    turn given as a span of the file when it is taken)."""

    def __init__(self, transcriber, chunk=64, progress=True):
        self.transcriber, self.chunk, self.progress = transcriber, chunk, progress

    def __call__(self, audio):
        from tqdm.auto import tqdm

        if not hasattr(audio, "__getitem__"):
            audio = list(audio)
        texts = []
        with tqdm(total=len(audio), desc="ASR", unit="turn", disable=not self.progress, file=sys.stderr) as bar:
            for start in range(0, len(audio), self.chunk):
                part = audio[start: start + self.chunk]
                texts.extend(self.transcriber(part))
                bar.update(len(part))
        return texts


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
