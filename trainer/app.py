"""hcam-app: a web page over a trained HCAM checkpoint (pip install "hcam[app]").

Pick a model (a local checkpoint folder or a Hub repo id), then
- **Recording**: upload a call or meeting recording; the turns and speakers are found (or read from a segments
  table), transcribed and classified: the emotion timeline, a table of turns and the JSON lines to download.
  This is `hcam.trainer.recordings.predict_recording`, what `hcam-predict --recording` runs.
- **Conversation**: upload one audio clip per turn and a transcripts table (file,text[,speaker][,label]), as
  `hcam-predict --audio_dir --transcripts`.
- **Live replay** (causal models): the recording's turns are given to the model one by one, as they would arrive
  during the call, and each turn's emotion appears when its turn ends (the pipeline's live stream).

    hcam-app --model outputs/demo/stage3            # then open http://127.0.0.1:7860
    hcam-app --model org/hcam-demo --port 8080 --host 0.0.0.0
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

COLUMNS = ["turn", "start", "end", "speaker", "text", "label", "score"]
_PIPELINES: dict = {}


def _gradio():
    try:
        import gradio as gr
    except ImportError as error:
        raise ImportError('the web page needs Gradio: pip install "hcam[app]"') from error
    return gr


def _pipeline(model: str):
    from hcam.trainer.predict import PredictError, load_pipeline

    model = (model or "").strip()
    if not model:
        raise PredictError("choose a model first: a checkpoint folder or a Hub repo id")
    if model not in _PIPELINES:
        try:
            _PIPELINES[model] = load_pipeline(model)
        except (OSError, ValueError) as error:
            raise PredictError(f"cannot load the model {model!r}: {error}") from error
    return _PIPELINES[model]


def _table(rows):
    return [[row.get("turn"), row.get("start", ""), row.get("end", ""), row.get("speaker", ""), row.get("text", ""),
             row["label"], round(float(row["score"]), 3)] for row in rows]


def _outputs(rows, folder, plot):
    """(timeline picture, table, JSON-lines file) of the predicted rows."""
    jsonl = os.path.join(folder, "turns.jsonl")
    with open(jsonl, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return (plot if plot and os.path.isfile(plot) else None), _table(rows), jsonl


def _scratch():
    return tempfile.mkdtemp(prefix="hcam-app-")


def analyse_recording(model, recording, segments=None, num_speakers=0, min_pause=None, channels_are_speakers=False,
                      asr="whisper"):
    """The Recording tab: (timeline, table rows, JSON-lines path, status); `min_pause` defaults to find_turns'."""
    from hcam.processing.recording import DEFAULT_MIN_PAUSE
    from hcam.trainer.recordings import predict_recording

    if not recording:
        raise ValueError("upload a recording first")
    folder = _scratch()
    plot = os.path.join(folder, "timeline.png")
    options = {}
    if not segments:
        options = {"min_pause": DEFAULT_MIN_PAUSE if min_pause is None else float(min_pause),
                   "channels_are_speakers": bool(channels_are_speakers)}
        if num_speakers and int(num_speakers) > 0:
            options["num_speakers"] = int(num_speakers)
    rows = predict_recording(recording, _pipeline(model), segments=segments or None, asr=asr, plot=plot, **options)
    speakers = sorted({r["speaker"] for r in rows})
    return (*_outputs(rows, folder, plot),
            f"{len(rows)} turns, {len(speakers)} speaker(s): {', '.join(s for s in speakers if s)}")


def analyse_conversation(model, clips, transcripts, asr="whisper"):
    """The Conversation tab: clips (one per turn) + a transcripts table, as hcam-predict --audio_dir --transcripts."""
    from hcam.trainer.predict import predict, read_audio_dir

    if not clips:
        raise ValueError("upload the turns' audio clips first")
    folder = _scratch()
    audio_dir = os.path.join(folder, "clips")
    os.makedirs(audio_dir)
    for clip in clips:
        shutil.copy(clip, os.path.join(audio_dir, os.path.basename(clip)))
    table = None
    if transcripts:
        table = os.path.join(folder, os.path.basename(transcripts))
        shutil.copy(transcripts, table)
    conversations = read_audio_dir(audio_dir, table)
    rows, plot = [], os.path.join(folder, "timeline.png")
    # skip_bad=False: a page shows no stderr, so a bad turn is an error on the page rather than a missing row
    predict(conversations, _pipeline(model), os.path.join(folder, "all.jsonl"), asr=asr, progress=False, plot=plot,
            rows=rows, skip_bad=False)
    return (*_outputs(rows, folder, plot), f"{len(rows)} turns")


def replay_live(model, recording, num_speakers=0, speed=0.0, asr="whisper"):
    """The Live replay tab: a generator of (table rows, status) that grows turn by turn, each turn predicted by the
    pipeline's live stream when it ends (`speed` times real time; 0 = as fast as possible)."""
    from hcam.trainer.predict import read_recording

    if not recording:
        raise ValueError("upload a recording first")
    pipe = _pipeline(model)
    transcriber = None
    if "text" in pipe.model.config.modalities and asr != "none":
        from hcam.processing.asr import Transcriber

        transcriber = Transcriber(asr)
    stream = pipe.start_conversation(transcriber=transcriber)  # refuses a bidirectional model here
    options = {"num_speakers": int(num_speakers)} if num_speakers and int(num_speakers) > 0 else {}
    turns = read_recording(recording, **options)[0]["turns"]
    rows, started = [], time.monotonic()
    for turn in turns:
        if speed and speed > 0:
            time.sleep(max(0.0, started + turn["end"] / speed - time.monotonic()))
        result = stream.add_turn(audio=turn["audio"], speaker=turn["speaker"])
        rows.append({**result, "start": turn["start"], "end": turn["end"]})
        yield _table(rows), f"turn {len(rows)} of {len(turns)}: {result['label']} ({result['score']:.2f})"


def build_app(model: str = ""):
    """The Gradio Blocks of the page (launch it with `.launch()`)."""
    gr = _gradio()
    from hcam.processing.recording import DEFAULT_MIN_PAUSE
    from hcam.trainer.predict import PredictError

    def guarded(function):
        def run(*args):
            try:
                return function(*args)
            except (PredictError, ValueError, OSError, ImportError) as error:
                raise gr.Error(str(error)) from error
        return run

    def guarded_stream(*args):
        try:
            yield from replay_live(*args)
        except (PredictError, ValueError, OSError, ImportError) as error:
            raise gr.Error(str(error)) from error

    with gr.Blocks(title="hcam: emotions in a conversation") as page:
        gr.Markdown("# hcam: emotions in a conversation\nOne emotion per turn, from the speech and the words, with "
                    "HCAM (hierarchical cross-attention).")
        model_box = gr.Textbox(label="Model: a checkpoint folder or a Hub repo id", value=model, elem_id="model")
        asr = gr.Dropdown(["whisper", "pocketsphinx", "none"], value="whisper", elem_id="asr",
                          label="Speech recognition for turns without a transcript")
        with gr.Tab("Recording"):
            with gr.Row():
                recording = gr.File(label="Recording (wav, flac, ogg, mp3, m4a, mp4, ...)", type="filepath",
                                    elem_id="recording")
                segments = gr.File(label="Segments table (optional): start,end[,speaker][,text]", type="filepath",
                                   file_types=[".csv", ".tsv", ".jsonl"], elem_id="segments")
            with gr.Row():
                num_speakers = gr.Number(label="Speakers (0 = estimate)", value=0, precision=0, minimum=0)
                min_pause = gr.Number(label="A pause this long (s) ends a turn", value=DEFAULT_MIN_PAUSE, minimum=0)
                channels = gr.Checkbox(label="One speaker per channel (stereo call)")
            run_recording = gr.Button("Analyse the recording", variant="primary", elem_id="analyse-recording")
            status = gr.Markdown(elem_id="recording-status")
            timeline = gr.Image(label="Emotion timeline", show_label=False, type="filepath", elem_id="timeline")
            table = gr.Dataframe(headers=COLUMNS, label="Turns", elem_id="turns", wrap=True)
            download = gr.File(label="JSON lines", elem_id="download")
            run_recording.click(guarded(analyse_recording),
                                [model_box, recording, segments, num_speakers, min_pause, channels, asr],
                                [timeline, table, download, status])
        with gr.Tab("Conversation"):
            clips = gr.File(label="One audio clip per turn", file_count="multiple", type="filepath", elem_id="clips")
            transcripts = gr.File(label="Transcripts table: file,text[,speaker][,label] in turn order", type="filepath",
                                  file_types=[".csv", ".tsv", ".jsonl"], elem_id="transcripts")
            run_conversation = gr.Button("Analyse the conversation", variant="primary", elem_id="analyse-conversation")
            conversation_status = gr.Markdown()
            conversation_timeline = gr.Image(label="Emotion timeline", show_label=False, type="filepath")
            conversation_table = gr.Dataframe(headers=COLUMNS, label="Turns", wrap=True)
            conversation_download = gr.File(label="JSON lines")
            run_conversation.click(guarded(analyse_conversation), [model_box, clips, transcripts, asr],
                                   [conversation_timeline, conversation_table, conversation_download,
                                    conversation_status])
        with gr.Tab("Live replay"):
            gr.Markdown("A causal model (trained with `--context causal`) predicts each turn when it ends, as during "
                        "the call: the turns of the recording are given to it one by one.")
            live_recording = gr.File(label="Recording", type="filepath", elem_id="live-recording")
            with gr.Row():
                live_speakers = gr.Number(label="Speakers (0 = estimate)", value=0, precision=0, minimum=0)
                speed = gr.Number(label="Speed (1 = real time, 0 = as fast as possible)", value=1.0, minimum=0)
            run_live = gr.Button("Replay", variant="primary", elem_id="replay")
            live_status = gr.Markdown()
            live_table = gr.Dataframe(headers=COLUMNS, label="Turns so far", wrap=True)
            run_live.click(guarded_stream, [model_box, live_recording, live_speakers, speed, asr],
                           [live_table, live_status])
    return page


def main(argv=None):
    parser = argparse.ArgumentParser(prog="hcam-app", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model", default="", help="checkpoint folder or Hub repo id shown in the page")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    try:
        page = build_app(args.model)
    except ImportError as error:
        print(f"hcam-app: error: {error}", file=sys.stderr)
        return 2
    page.queue().launch(server_name=args.host, server_port=args.port, share=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
