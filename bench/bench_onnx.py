#!/usr/bin/env python
"""onnxruntime against PyTorch: one conversation's inference (stage I encoders through the ensemble) with the graph
hcam-export writes, against the model's forward on the same processor-format inputs, at a few conversation lengths.

The demo-size model: the offline default encoders ("tiny": the random tiny wav2vec2 and all-MiniLM-L6-v2's shape,
random weights), HCAM's default widths, stage 3. Both sides run one intra-op thread (torch.set_num_threads(1),
onnxruntime's intra_op_num_threads=1), timed alternately (bench/common.py's `interleaved`); the ratio is PyTorch's
time over onnxruntime's, the median of the per-round ratios. The inputs (processor format) are built once and are
not timed. Then end to end, arrays in and labels out: HCAM's pipeline against hcam_onnx.py, the runner the export
writes (preprocessing included on both sides). Needs pip install "hcam[export]".

    python bench/bench_onnx.py [--quick]
"""

import datetime
import importlib.util
import os
import tempfile

import numpy as np
import torch

from common import (default_processor, dialogue_batch, hcam_config, interleaved, machine, paired_ratio, parser, report,
                    row)

SECONDS = [2.1, 3.4, 1.2, 4.8, 2.6, 1.7, 3.0, 5.5]  # MELD-like turn durations (bench_inference.py's)


def load_average():
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv=None):
    p = parser(__doc__)
    p.add_argument("--turns", type=int, nargs="+", default=None,
                   help="conversation lengths (default 2 8 24; --quick 2 8)")
    p.add_argument("--repeats", type=int, default=None, help="rounds per length (default 9; --quick 3)")
    args = p.parse_args(argv)
    import onnxruntime

    from hcam.modeling_hcam import HCAMForEmotionRecognition
    from hcam.modeling_hcam.pipeline_hcam import HCAMEmotionPipeline
    from hcam.trainer.export import export_onnx, graph_input_names

    lengths = args.turns or ([2, 8] if args.quick else [2, 8, 24])
    repeats = args.repeats or (3 if args.quick else 9)
    start = datetime.datetime.now(datetime.timezone.utc)
    print(f"# bench_onnx on {machine()}, onnxruntime {onnxruntime.__version__} (1 intra-op thread)")
    print(f"# {start:%Y-%m-%d %H:%M} UTC, load average (1/5/15 min) at the start {load_average()}")

    torch.manual_seed(0)
    model = HCAMForEmotionRecognition(hcam_config("tiny", stage=3)).eval()
    processor = default_processor()
    folder = tempfile.mkdtemp(prefix="bench-onnx-")
    started = datetime.datetime.now()
    difference = export_onnx(model, processor, folder, log=lambda line: None)
    print(f"# export: {(datetime.datetime.now() - started).total_seconds():.0f} s, model.onnx "
          f"{os.path.getsize(os.path.join(folder, 'model.onnx')) / 2**20:.0f} MiB, "
          f"check against PyTorch {difference:.1e}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(os.path.join(folder, "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])
    names = graph_input_names(model.config)

    rows = []
    for turns in lengths:
        inputs = dialogue_batch([turns], SECONDS, 32, seed=turns)
        inputs.pop("labels")
        feed = {name: inputs[name].numpy() for name in names}
        with torch.inference_mode():
            expected = model(**inputs).logits.numpy()
        difference = float(np.abs(session.run(["logits"], feed)[0] - expected).max())
        with torch.inference_mode():
            medians, times = interleaved({
                "pytorch": lambda: model(**inputs),
                "onnxruntime": lambda: session.run(None, feed),
            }, repeats)
        ratio, low, high = paired_ratio(times, "pytorch", "onnxruntime")
        audio_seconds = float(inputs["attention_mask"].sum()) / 16000
        rows.append(row("onnx", f"1 conversation, {turns} turns, {audio_seconds:.0f} s audio",
                        f"PyTorch {medians['pytorch'] * 1000:.0f} ms vs onnxruntime "
                        f"{medians['onnxruntime'] * 1000:.0f} ms: {ratio:.2f}x (quartiles {low:.2f}-{high:.2f}, "
                        f"{repeats} rounds; max |logits difference| {difference:.1e})", "(info)", True))
    # end to end, as a user runs one conversation: HCAM's pipeline (which groups turns of similar length into encoder
    # calls) against the runner hcam-export writes (numpy preprocessing, one padded batch of every turn)
    spec = importlib.util.spec_from_file_location("hcam_onnx", os.path.join(folder, "hcam_onnx.py"))
    runner_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner_module)
    runner = runner_module.HCAMOnnx(folder, threads=1)
    pipe = HCAMEmotionPipeline(model=model, processor=processor)
    words = "well I think we should go there now but you never said why it is so late again".split()
    generator = np.random.default_rng(0)
    for turns in lengths:
        conversation = [{"audio": (0.1 * generator.standard_normal(int(16000 * SECONDS[t % len(SECONDS)])))
                         .astype(np.float32), "text": " ".join(generator.choice(words, size=12)), "speaker": "AB"[t % 2]}
                        for t in range(turns)]
        given = [{**turn, "audio": {"array": turn["audio"], "sampling_rate": 16000}} for turn in conversation]
        ours, theirs = runner(conversation), pipe({"turns": given})
        difference = max(abs(a["score"] - b["score"]) for a, b in zip(ours, theirs))
        medians, times = interleaved({
            "pipeline": lambda: pipe({"turns": given}),
            "runner": lambda: runner(conversation),
        }, repeats)
        ratio, low, high = paired_ratio(times, "pipeline", "runner")
        rows.append(row("onnx end to end", f"1 conversation, {turns} turns (arrays in, labels out)",
                        f"pipeline {medians['pipeline'] * 1000:.0f} ms vs hcam_onnx.py {medians['runner'] * 1000:.0f} "
                        f"ms: {ratio:.2f}x (quartiles {low:.2f}-{high:.2f}, {repeats} rounds; max |score difference| "
                        f"{difference:.1e})", "(info)", True))
    report(rows, args.json)
    print(f"# ratio = PyTorch time / onnxruntime time (> 1: onnxruntime is faster); load average at the end "
          f"{load_average()}")
    return rows


if __name__ == "__main__":
    main()
