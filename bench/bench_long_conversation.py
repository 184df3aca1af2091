"""Memory and time of stages II-III on one long conversation (a recording's thousands of turns): the attention over
turns run a block of `ATTENTION_QUERY_BLOCK` query turns at a time (the default) against all queries in one block
(the code before), side by side in one run.

Each (length, block) runs in a fresh process, as the pipeline runs a conversation once its turns are encoded: the
model from the stage-I embeddings (random here; their values do not change the cost) with speaker ids. The peak
resident set size above the process's size before the call is what stages II-III needed. The two settings must give
the same logits.

    python bench/bench_long_conversation.py                       # a random stage-3 model of the demo's shape
    python bench/bench_long_conversation.py --model runs/demo/stage3 --turns 300 2425 5000
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from common import machine, parser, report, row

CHILD = r"""
import json, resource, sys, time
import torch
if int(sys.argv[4]):
    torch.set_num_threads(int(sys.argv[4]))
import hcam.modeling_hcam.modeling_hcam as modeling
from hcam.modeling_hcam import HCAMForEmotionRecognition
turns, block = int(sys.argv[2]), int(sys.argv[3])
if block:
    modeling.ATTENTION_QUERY_BLOCK = block
model = HCAMForEmotionRecognition.from_pretrained(sys.argv[1]).eval()
width = model.config.utterance_embedding_size
generator = torch.Generator().manual_seed(0)
inputs = {f"{m}_embeddings": torch.randn(1, turns, width, generator=generator) for m in model.config.modalities}
speakers = torch.randint(0, 3, (1, turns), generator=generator)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
started = time.perf_counter()
with torch.no_grad():
    logits = model(**inputs, speaker_ids=speakers).logits
seconds = time.perf_counter() - started
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before, "seconds": seconds,
                  "logits": logits[0].tolist()}))
"""


def run(model, turns, block, threads):
    result = subprocess.run([sys.executable, "-c", CHILD, str(model), str(turns), str(block), str(threads)],
                            capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"the run with {turns} turns failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    cli = parser(__doc__)
    cli.add_argument("--model", help="a stage-2 or stage-3 checkpoint folder (default: a random one of the demo's shape)")
    cli.add_argument("--turns", type=int, nargs="+", default=[300, 2425, 5000])
    args = cli.parse_args(argv)
    print(f"# bench_long_conversation on {machine(args.threads or None)}")
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model is None:
            import torch
            from common import hcam_config

            from hcam.modeling_hcam import HCAMForEmotionRecognition

            torch.manual_seed(0)
            model = os.path.join(scratch, "model")
            HCAMForEmotionRecognition(hcam_config("tiny", stage=3)).eval().save_pretrained(model)
        rows = []
        for turns in ([2425] if args.quick else args.turns):
            blocks, whole = run(model, turns, 0, args.threads), run(model, turns, 10**9, args.threads)
            difference = float(np.abs(np.array(blocks["logits"]) - np.array(whole["logits"])).max())
            rows.append(row(
                "long conversation", f"{turns} turns, stages II-III from embeddings",
                f"peak above the start: one block {whole['peak_mb']:.0f} MB vs blocks of turns {blocks['peak_mb']:.0f} "
                f"MB ({whole['peak_mb'] / max(blocks['peak_mb'], 1):.2f}x); time {whole['seconds']:.2f} s vs "
                f"{blocks['seconds']:.2f} s; largest logit difference {difference:.1e}",
                bar="same logits (1e-4)", ok=difference < 1e-4))
    report(rows, args.json)


if __name__ == "__main__":
    main()
