"""Shared helpers of the benchmarks: interleaved timing with medians, model builders, machine name, result rows.

Every benchmark prints ratios measured side by side in one run. The machine is shared and noisy, so the two sides
of a ratio are timed alternately (A, B, A, B, ...) and the ratio of the medians is reported.
"""

import argparse
import json
import os
import platform
import statistics
import time

import torch

WAV2VEC2_BASE = dict(  # facebook/wav2vec2-base's architecture (random weights: nothing is downloaded)
    model_type="wav2vec2", hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    conv_dim=[512] * 7, conv_stride=[5, 2, 2, 2, 2, 2, 2], conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, feat_extract_norm="group",
    do_stable_layer_norm=False, mask_time_prob=0.0, layerdrop=0.0,
)
ROBERTA_BASE = dict(  # roberta-base's architecture
    model_type="roberta", vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
)
MINILM_L6 = dict(  # all-MiniLM-L6-v2's architecture, the offline default text encoder
    model_type="bert", vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
    intermediate_size=1536, max_position_embeddings=512,
)
LABELS = ["neutral", "happy", "sad", "angry", "surprise", "fear", "disgust"]


def encoder_configs(size):
    """(audio encoder config, text encoder config) for 'tiny' (the offline defaults) or 'base'."""
    from hcam.modeling_hcam import TINY_AUDIO_ENCODER_CONFIG

    if size == "tiny":
        return dict(TINY_AUDIO_ENCODER_CONFIG), dict(MINILM_L6)
    if size == "base":
        return dict(WAV2VEC2_BASE), dict(ROBERTA_BASE)
    raise ValueError(size)


# HCAMConfig arguments given on the command line (--gru_hidden_size), for every model a benchmark builds
HCAM_OVERRIDES = {}


def overrides_note():
    """What a result row's case adds when --gru_hidden_size changed HCAM's width ("" otherwise)."""
    return f", GRU {HCAM_OVERRIDES['gru_hidden_size']}/direction" if HCAM_OVERRIDES else ""


def hcam_config(size="tiny", stage=3, modalities=("audio", "text"), **overrides):
    from hcam.modeling_hcam import HCAMConfig

    audio, text = encoder_configs(size)
    kwargs = dict(
        num_stages=stage, modalities=list(modalities), audio_encoder_config=audio, text_encoder_config=text,
        id2label=dict(enumerate(LABELS)), label2id={label: i for i, label in enumerate(LABELS)},
    )
    kwargs.update(HCAM_OVERRIDES)
    kwargs.update(overrides)
    return HCAMConfig(**kwargs)


def default_processor(**feature_extractor_options):
    """The processor of a model built with `hcam_config(...)`: all-MiniLM-L6-v2's tokenizer, read offline (options such
    as `do_normalize` go to the feature extractor)."""
    from hcam.modeling_hcam import DEFAULT_TEXT_ENCODER, HCAMProcessor
    from hcam.processing.encoders import resolve_encoder_path

    return HCAMProcessor.from_encoders(DEFAULT_TEXT_ENCODER, text_encoder_path=resolve_encoder_path(DEFAULT_TEXT_ENCODER),
                                       **feature_extractor_options)


def dialogue_batch(dialogue_turns, seconds, tokens, seed=0, vocab=30000, num_labels=len(LABELS)):
    """Processor-format inputs: `dialogue_turns` dialogues, turn durations drawn from `seconds` (list per turn)."""
    generator = torch.Generator().manual_seed(seed)
    dialogues, turns = len(dialogue_turns), max(dialogue_turns)
    samples = int(16000 * max(seconds))
    utterance_mask = torch.zeros(dialogues, turns, dtype=torch.long)
    attention_mask = torch.zeros(dialogues, turns, samples, dtype=torch.long)
    text_mask = torch.zeros(dialogues, turns, tokens, dtype=torch.long)
    k = 0
    for d, n in enumerate(dialogue_turns):
        utterance_mask[d, :n] = 1
        for t in range(n):
            attention_mask[d, t, : int(16000 * seconds[k % len(seconds)])] = 1
            text_mask[d, t, : max(4, tokens - 3 * ((d + t) % 4))] = 1
            k += 1
    input_values = torch.randn(dialogues, turns, samples, generator=generator) * attention_mask
    input_ids = torch.randint(1000, vocab, (dialogues, turns, tokens), generator=generator) * text_mask
    speaker_ids = (torch.arange(turns)[None, :] % 2).repeat(dialogues, 1).masked_fill(utterance_mask == 0, -1)
    labels = torch.randint(0, num_labels, (dialogues, turns), generator=generator)
    labels = labels.masked_fill(utterance_mask == 0, -100)
    return dict(input_values=input_values, attention_mask=attention_mask, input_ids=input_ids,
                text_attention_mask=text_mask, utterance_mask=utterance_mask, speaker_ids=speaker_ids, labels=labels)


def interleaved(functions, repeats, warmup=1):
    """Run each function `warmup` times, then `repeats` rounds of all of them in turn (the order flips every round,
    so neither side always runs on a cache the other warmed); median seconds of each."""
    for _ in range(warmup):
        for function in functions.values():
            function()
    times = {name: [] for name in functions}
    for round_ in range(repeats):
        order = list(functions.items())
        for name, function in order if round_ % 2 == 0 else order[::-1]:  # alternate who goes first
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}, times


def paired_ratio(times, numerator, denominator):
    """Median and quartiles of the per-round ratios: each round's two runs are adjacent in time, so a change of load
    between rounds cancels out of their ratio."""
    ratios = sorted(a / b for a, b in zip(times[numerator], times[denominator]))
    quartile = lambda q: ratios[min(len(ratios) - 1, int(q * len(ratios)))]  # noqa: E731
    return statistics.median(ratios), quartile(0.25), quartile(0.75)


def machine(threads=None):
    threads = threads or torch.get_num_threads()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()}-core CPU ({model}), torch {torch.__version__}, {threads} intra-op thread(s)"


class _Parser(argparse.ArgumentParser):
    def parse_args(self, *args, **kwargs):
        parsed = super().parse_args(*args, **kwargs)
        if parsed.threads:
            torch.set_num_threads(parsed.threads)
        if parsed.gru_hidden_size:
            HCAM_OVERRIDES["gru_hidden_size"] = parsed.gru_hidden_size
        return parsed


def parser(description):
    p = _Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (< 30 s)")
    p.add_argument("--json", help="also write the result rows to this file")
    # On a 2-core machine shared with other work, a 2-thread op waits for the busier core at every barrier and
    # timings swing by 3x; one thread gives both sides of a ratio the same, stable conditions. 0 = torch's default.
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1; 0 = torch's default)")
    p.add_argument("--gru_hidden_size", type=int, default=None,
                   help="HCAM's bi-GRU width per direction (default: HCAMConfig's, 200), to see what a narrower "
                        "head costs")
    return p


def report(rows, json_path=None):
    """Print result rows (dicts with benchmark, case, measured, bar, ok) and optionally write them as JSON."""
    for row in rows:
        status = "info" if row["bar"] == "(info)" else ("PASS" if row["ok"] else "FAIL")
        print(f"  [{status}] {row['benchmark']} | {row['case']} | {row['measured']} | bar: {row['bar']}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


def row(benchmark, case, measured, bar, ok):
    return dict(benchmark=benchmark, case=case, measured=measured, bar=bar, ok=bool(ok))
