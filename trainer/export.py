"""hcam-export: a trained HCAM checkpoint's inference as ONNX graphs, to run with onnxruntime without PyTorch.

    hcam-export --model outputs/demo/stage3 --onnx exported/

writes into exported/:
  model.onnx          the whole inference: stage I encoders through the ensemble the model outputs as `logits`
  conversation.onnx   stages II-III and the ensemble from stage-I embeddings (small: no encoders)
  hcam_onnx.py        a runner that needs numpy, onnxruntime and `tokenizers` only (soundfile for audio paths)
  hcam_onnx.json      labels, the graphs' inputs and outputs, the processor's settings
  and the processor (tokenizer.json, processor_config.json, ...).

model.onnx takes a batch of conversations of any number of turns, audio length and token count, as HCAMProcessor
gives them:

    input_values (D, T, samples) float32, attention_mask (D, T, samples) int64   (a model that reads speech)
    input_ids (D, T, tokens) int64, text_attention_mask (D, T, tokens) int64      (a model that reads text)
    utterance_mask (D, T) int64                                                  (1 = real turn; a prefix)
    speaker_ids (D, T) int64                        (stage 2-3 with speaker masks; all -1 = no speakers)

and gives `logits` (D, T, labels), the log of the ensemble's probabilities, `<head>_logits` for each stage head, and
`<modality>_embeddings` (D, T, E). conversation.onnx takes those embeddings with utterance_mask and speaker_ids and gives
the same `logits` and heads: hcam_onnx.py encodes turns of similar length together with model.onnx (each turn as a
one-turn dialogue), as HCAM's pipeline does, rather than padding every turn to the conversation's longest.

After the export, onnxruntime is checked against PyTorch on random conversations of other lengths than the traced
ones (--check, on by default; --atol). A causal model exports too: the graphs run whole conversations (its turn-by-turn
cache, HCAMConversationStream, is not part of them; each turn's outputs are the same). Needs pip install "hcam[export]".
"""
import argparse
import contextlib
import importlib.util
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

# the graph's inputs, in order, and which modality needs each (None: every model)
GRAPH_INPUTS = {
    "input_values": "audio",
    "attention_mask": "audio",
    "input_ids": "text",
    "text_attention_mask": "text",
    "utterance_mask": None,
    "speaker_ids": "speakers",
}
# the dimensions that stay free in the graph, per input
DYNAMIC_AXES = {
    "input_values": ("dialogues", "turns", "samples"),
    "attention_mask": ("dialogues", "turns", "samples"),
    "input_ids": ("dialogues", "turns", "tokens"),
    "text_attention_mask": ("dialogues", "turns", "tokens"),
    "utterance_mask": ("dialogues", "turns"),
    "speaker_ids": ("dialogues", "turns"),
    "audio_embeddings": ("dialogues", "turns"),
    "text_embeddings": ("dialogues", "turns"),
}
RUNNER = Path(__file__).with_name("onnx_runner.py")
GRAPH_FILE = "model.onnx"
CONVERSATION_FILE = "conversation.onnx"
SETTINGS_FILE = "hcam_onnx.json"
RUNNER_FILE = "hcam_onnx.py"


class ExportError(ValueError):
    """A checkpoint or an argument that cannot be exported: the message says why and what to do."""


def graph_input_names(config) -> list[str]:
    """The exported graph's inputs for a model with `config`, in order."""
    wanted = set(config.modalities)
    if config.num_stages >= 2 and config.use_speaker_masks:
        wanted.add("speakers")
    return [name for name, needs in GRAPH_INPUTS.items() if needs is None or needs in wanted]


def graph_output_names(config) -> list[str]:
    """What both graphs give first: the ensemble (`logits`), then every stage head."""
    return ["logits"] + [f"{head}_logits" for head in config.stage_heads()]


def embedding_names(config) -> list[str]:
    """model.onnx's last outputs and conversation.onnx's first inputs: the stage-I embeddings `(D, T, E)`."""
    return [f"{modality}_embeddings" for modality in config.modalities]


def conversation_input_names(config) -> list[str]:
    return embedding_names(config) + [n for n in graph_input_names(config) if n in ("utterance_mask", "speaker_ids")]


# ----------------------------------------------------------------------------------------------------- the GRUs
@torch.library.custom_op("hcam::gru", mutates_args=())
def _gru(inputs: torch.Tensor, lengths: torch.Tensor, weights: torch.Tensor, recurrent: torch.Tensor,
         biases: torch.Tensor, hidden_size: int, bidirectional: bool) -> torch.Tensor:
    """One GRU layer over left-aligned padded sequences `(N, T, E)` with ONNX's weight layout (`W`, `R`, `B` of ONNX's
    GRU, gates z, r, h): the op the exporter sees, written out as ONNX's GRU with `sequence_lens` (`_gru_onnx`).
    Run eagerly, it is the model's own `run_gru` on an `nn.GRU` holding the same weights."""
    from hcam.modeling_hcam.modeling_hcam import run_gru

    gru = nn.GRU(inputs.shape[-1], hidden_size, batch_first=True, bidirectional=bidirectional).to(inputs)
    suffixes = ["", "_reverse"] if bidirectional else [""]
    with torch.no_grad():
        for direction, suffix in enumerate(suffixes):
            getattr(gru, f"weight_ih_l0{suffix}").copy_(_swap_gates(weights[direction]))
            getattr(gru, f"weight_hh_l0{suffix}").copy_(_swap_gates(recurrent[direction]))
            input_bias, hidden_bias = biases[direction].chunk(2)
            getattr(gru, f"bias_ih_l0{suffix}").copy_(_swap_gates(input_bias))
            getattr(gru, f"bias_hh_l0{suffix}").copy_(_swap_gates(hidden_bias))
    return run_gru(gru.eval(), inputs, lengths)


@_gru.register_fake
def _(inputs, lengths, weights, recurrent, biases, hidden_size, bidirectional):
    return inputs.new_empty(inputs.shape[0], inputs.shape[1], hidden_size * (2 if bidirectional else 1))


def _swap_gates(tensor):
    """PyTorch's gate order (r, z, n) <-> ONNX's (z, r, h), along the first dimension (the swap is its own inverse)."""
    reset, update, new = tensor.chunk(3)
    return torch.cat([update, reset, new])


def _gru_onnx(inputs, lengths, weights, recurrent, biases, hidden_size: int, bidirectional: bool):
    """`hcam::gru` in ONNX: GRU over time-major inputs with `sequence_lens` (which, like packing, keeps every padded
    step away from the real ones, and reads each sequence backwards from its own last step), batch-major again."""
    from onnxscript import opset18 as op

    steps = op.Transpose(inputs, perm=[1, 0, 2])
    outputs, _ = op.GRU(steps, weights, recurrent, biases, op.Cast(lengths, to=6),  # 6 = int32
                        direction="bidirectional" if bidirectional else "forward", hidden_size=hidden_size,
                        linear_before_reset=1)  # PyTorch's GRU applies the reset gate after the recurrent product
    outputs = op.Transpose(outputs, perm=[2, 0, 1, 3])  # (T, directions, N, H) -> (N, T, directions, H)
    return op.Reshape(outputs, op.Constant(value_ints=[0, 0, -1]))


class ExportableGRU(nn.Module):
    """Stands in for one of the model's `nn.GRU`s while it is exported (`run_gru` calls it with the lengths): the same
    parameters, given to `hcam::gru` in ONNX's layout. Outside an export it runs the GRU as the model does."""

    takes_lengths = True  # what run_gru looks for

    def __init__(self, gru: nn.GRU):
        super().__init__()
        if gru.num_layers != 1 or not gru.bias or not gru.batch_first:
            raise ExportError(f"hcam-export writes one-layer batch-first GRUs with biases; this model has {gru}")
        self.gru = gru
        self.bidirectional = gru.bidirectional

    def forward(self, inputs, lengths):
        from hcam.modeling_hcam.modeling_hcam import run_gru

        if not torch.compiler.is_exporting():
            return run_gru(self.gru, inputs, lengths)
        suffixes = ["", "_reverse"] if self.bidirectional else [""]
        layer = {name: torch.stack([_swap_gates(getattr(self.gru, f"{name}_l0{s}")) for s in suffixes])
                 for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        outputs = _gru(inputs, lengths, layer["weight_ih"], layer["weight_hh"],
                       torch.cat([layer["bias_ih"], layer["bias_hh"]], dim=1), self.gru.hidden_size,
                       self.bidirectional)
        real = torch.arange(inputs.shape[1], device=inputs.device)[None, :] < lengths[:, None]
        return outputs * real[..., None]


# ---------------------------------------------------------------------------------------------------- the graph
class HCAMInferenceGraph(nn.Module):
    """What `HCAMForEmotionRecognition.forward` computes at inference for `logits` (the ensemble) and every stage
    head, written without data-dependent Python (no chunk loop cut to each chunk's longest utterance, no boolean
    indexing of the real turns, no checks that read tensor values), so that one graph serves every number of
    dialogues, turns, samples and tokens. Build it with `exportable(model)`, which puts `ExportableGRU`s in.

    Every turn of the padded batch goes through the encoders in one call per modality (padded turns too; their
    embeddings are set to zero, as the model's are), each padded to the batch's longest turn: an encoder that honours
    its attention mask (layer-norm wav2vec2, BERT) gives what the model gives with its chunks. Per dialogue, speaker
    ids that are all -1 mean no speakers: stage II then attends without speaker masks, as the model does with
    `speaker_ids=None`.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_values=None, attention_mask=None, input_ids=None, text_attention_mask=None,
                utterance_mask=None, speaker_ids=None):
        """model.onnx: `graph_output_names` (the ensemble, the stage heads), then each modality's stage-I
        embeddings `(D, T, E)`."""
        from hcam.modeling_hcam.modeling_hcam import run_gru

        sources = {"audio": (input_values, attention_mask), "text": (input_ids, text_attention_mask)}
        turns = utterance_mask.bool()
        embeddings = {}
        for modality in self.model.config.modalities:
            encoder = self.model.utterance_encoders[modality]
            values, mask = sources[modality]
            # HCAMUtteranceEncoder.forward_features with one chunk of every turn (a padded turn's length 0 is read as
            # 1: packing, in an eager run, takes no empty sequence; its embedding is replaced below)
            hidden, frame_mask = encoder._encode(values.flatten(0, 1), mask.flatten(0, 1))
            hidden = run_gru(encoder.gru, hidden, frame_mask.sum(1).clamp_min(1))
            pooled = encoder.pooling(hidden, frame_mask).unflatten(0, tuple(turns.shape))
            embeddings[modality] = torch.where(turns[..., None], pooled, torch.zeros_like(pooled))
        outputs = self.from_embeddings(embeddings, utterance_mask, speaker_ids)
        return (*outputs, *(embeddings[m] for m in self.model.config.modalities))

    def from_embeddings(self, embeddings, utterance_mask, speaker_ids=None):
        """The ensemble and every stage head from the stage-I embeddings (`{modality: (D, T, E)}`)."""
        model, config = self.model, self.model.config
        logits = {f"{m}_utterance": model.utterance_encoders[m].forward_head(embeddings[m]) for m in config.modalities}
        if config.num_stages >= 2:
            context_mask, plain_mask = model._attention_masks(utterance_mask, speaker_ids)
            if speaker_ids is not None:  # dialogues whose speaker ids are all -1 have no speakers
                has_speakers = (speaker_ids >= 0).any(1)[:, None, None, None]
                context_mask = (context_mask & has_speakers) | (plain_mask & ~has_speakers)  # (ORT: no bool Where)
            lengths = utterance_mask.sum(1)
            contexts = {}
            for modality in config.modalities:
                context_encoder = model.context_encoders[modality]
                contexts[modality], _, _ = context_encoder.forward_features(embeddings[modality], lengths,
                                                                            context_mask)
                logits[f"{modality}_context"] = context_encoder.forward_head(contexts[modality])
            if config.num_stages >= 3:
                fused, _ = model.fusion.forward_features(contexts["audio"], contexts["text"], plain_mask)
                logits["fusion"] = model.fusion.forward_head(fused)
        # the ensemble: the model's own (HCAMForEmotionRecognition.ensemble, what forward gives in `logits`)
        return (model.ensemble(logits), *(logits[h] for h in config.stage_heads()))


class HCAMConversationGraph(nn.Module):
    """conversation.onnx: stages II-III and the ensemble from stage-I embeddings `(D, T, E)` per modality, for a runner
    that encodes turns in groups of similar length with model.onnx (each turn a one-turn dialogue) rather than padding
    every turn of a conversation to its longest (hcam_onnx.py does)."""

    def __init__(self, inference: HCAMInferenceGraph):
        super().__init__()
        self.inference = inference  # (not `graph`: the traced module has a `graph` of its own)

    def forward(self, audio_embeddings=None, text_embeddings=None, utterance_mask=None, speaker_ids=None):
        embeddings = {"audio": audio_embeddings, "text": text_embeddings}
        return self.inference.from_embeddings(embeddings, utterance_mask, speaker_ids)


@contextlib.contextmanager
def exportable(model):
    """`HCAMInferenceGraph(model)` with every GRU of `model` replaced by an `ExportableGRU` while the block runs (the
    model is given back as it was)."""
    encoders = list(model.utterance_encoders.values())
    if model.config.num_stages >= 2:
        encoders += list(model.context_encoders.values())
    originals = [encoder.gru for encoder in encoders]
    try:
        for encoder, gru in zip(encoders, originals):
            encoder.gru = ExportableGRU(gru)
        yield HCAMInferenceGraph(model).eval()
    finally:
        for encoder, gru in zip(encoders, originals):
            encoder.gru = gru


# ------------------------------------------------------------------------------------------------------ the export
@contextlib.contextmanager
def _quiet_exporter():
    """The exporter's own warnings and log lines (deprecations inside torch, constant-folding notes) are not the
    user's business; HCAM_DEBUG=1 shows them."""
    import logging
    import warnings

    from hcam.processing.cli import debugging

    if debugging():
        yield
        return
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript",
                                                    "onnx_ir")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _example_conversations(processor, config, turn_counts, seed):
    """Processor inputs for random conversations with `turn_counts` turns: noise of 0.6-1.4 s per turn (the
    processor normalises it), short texts of common words, two speakers taking turns."""
    generator = np.random.default_rng(seed)
    words = "well I think we should go there now but you never said why it is so late again".split()
    rate = processor.feature_extractor.sampling_rate
    audio = [[generator.standard_normal(int(rate * generator.uniform(0.6, 1.4))).astype(np.float32)
              for _ in range(n)] for n in turn_counts]
    text = [[" ".join(generator.choice(words, size=int(generator.integers(2, 9)))) for _ in range(n)]
            for n in turn_counts]
    speakers = [["A" if t % 2 == 0 else "B" for t in range(n)] for n in turn_counts]
    return processor(audio=audio if "audio" in config.modalities else None,
                     text=text if "text" in config.modalities else None, speakers=speakers, return_tensors="pt")


def check_exportable(model):
    """Refuse, with the reason, what the graph cannot give as the model does."""
    config = model.config
    missing = [h for h in config.ensemble_stages or [] if h not in config.stage_heads()]
    if missing:
        raise ExportError(f"config.ensemble_stages names heads this model does not have: {missing}.")


def export_onnx(model, processor, folder, opset=18, check=True, atol=1e-4, log=print):
    """Write `model`'s inference (`HCAMInferenceGraph`) to `folder`/model.onnx, with the processor, hcam_onnx.json
    and the numpy runner hcam_onnx.py beside it. With `check`, onnxruntime's outputs on a random batch of
    conversations of other lengths than the traced ones must match PyTorch's within `atol`.

    Returns the largest difference found by the check (None without it)."""
    check_exportable(model)
    if any(parameter.device.type != "cpu" for parameter in model.parameters()):
        raise ExportError("export a model on the CPU (model.cpu()): the graph is traced and checked there")
    training = model.training
    try:
        return _export_onnx(model.eval(), processor, Path(folder), opset, check, atol, log)
    finally:
        model.train(training)


def _export_onnx(model, processor, folder, opset, check, atol, log):
    config = model.config
    folder.mkdir(parents=True, exist_ok=True)
    example = _example_conversations(processor, config, (3, 2), seed=0)
    log(f"hcam-export: tracing {type(model).__name__} ({config.num_stages} stage(s), {', '.join(config.modalities)}"
        f"{', causal' if config.context == 'causal' and config.num_stages >= 2 else ''}) ...")
    width = config.utterance_embedding_size
    with torch.no_grad(), exportable(model) as graph:
        _write_graph(graph, {name: example[name] for name in graph_input_names(config)},
                     graph_output_names(config) + embedding_names(config), folder / GRAPH_FILE, opset)
        embeddings = {name: torch.randn(*example["utterance_mask"].shape, width) for name in embedding_names(config)}
        _write_graph(HCAMConversationGraph(graph), {**embeddings, **{
            name: example[name] for name in conversation_input_names(config) if name not in embeddings}},
            graph_output_names(config), folder / CONVERSATION_FILE, opset)
    processor.save_pretrained(folder)
    from hcam.modeling_hcam.pipeline_hcam import HCAMEmotionPipeline

    settings = {
        "labels": [config.id2label[i] for i in range(config.num_labels)],
        "inputs": graph_input_names(config),
        "outputs": graph_output_names(config) + embedding_names(config),
        "conversation_inputs": conversation_input_names(config),
        "conversation_outputs": graph_output_names(config),
        "modalities": list(config.modalities),
        "num_stages": config.num_stages,
        "context": config.context,
        "sampling_rate": processor.feature_extractor.sampling_rate,
        "do_normalize": processor.feature_extractor.do_normalize,
        "max_duration_seconds": processor.feature_extractor.max_duration_seconds,
        "padding_value": processor.feature_extractor.padding_value,
        "max_text_tokens": processor.max_text_tokens,
        "pad_token_id": processor.tokenizer.pad_token_id or 0,
        # how the runner groups turns for the encoders, as the pipeline does
        "encoder_chunk_size": int(config.encoder_chunk_size),
        "same_chunk_ratio": HCAMEmotionPipeline.SAME_CHUNK_RATIO,
    }
    (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
    shutil.copyfile(RUNNER, folder / RUNNER_FILE)
    log(f"hcam-export: wrote {folder / GRAPH_FILE} ({(folder / GRAPH_FILE).stat().st_size / 2**20:.1f} MiB), "
        f"{CONVERSATION_FILE}, {SETTINGS_FILE}, {RUNNER_FILE} and the processor")
    if not check:
        return None
    difference = compare_with_pytorch(model, processor, folder)
    if difference > atol:
        raise ExportError(f"onnxruntime's outputs differ from PyTorch's by up to {difference:.2e} (more than "
                          f"--atol {atol:g}) on a check batch: the graphs in {folder} are not to be trusted; please "
                          "report it with the model's config.json")
    log(f"hcam-export: onnxruntime matches PyTorch within {difference:.1e} on conversations of 5 and 2 turns "
        "(traced on 3 and 2)")
    return difference


def _write_graph(module, kwargs, output_names, path, opset):
    names = list(kwargs)
    dims = {axis: torch.export.Dim(axis) for axis in ("dialogues", "turns", "samples", "tokens")}
    with _quiet_exporter():
        program = torch.onnx.export(
            module, (), kwargs=kwargs, input_names=names, output_names=output_names,
            dynamic_shapes={name: {i: dims[axis] for i, axis in enumerate(DYNAMIC_AXES[name])} for name in names},
            opset_version=opset, dynamo=True, verbose=False,
            external_data=sum(p.numel() * p.element_size() for p in module.parameters()) > 1.8e9,
            custom_translation_table={torch.ops.hcam.gru.default: _gru_onnx},
        )
    program.save(str(path))


def compare_with_pytorch(model, processor, folder, turn_counts=(5, 2), seed=1):
    """The largest difference, over every output and real turn, between the model's own forward on random
    conversations of `turn_counts` turns and onnxruntime: model.onnx on the processor's inputs, and conversation.onnx
    on the embeddings model.onnx gives."""
    import onnxruntime

    config = model.config
    inputs = {name: value.numpy() for name, value in _example_conversations(processor, config, turn_counts,
                                                                            seed).items()}
    session = onnxruntime.InferenceSession(str(Path(folder) / GRAPH_FILE), providers=["CPUExecutionProvider"])
    results = dict(zip(graph_output_names(config) + embedding_names(config),
                       session.run(None, {name: inputs[name] for name in graph_input_names(config)})))
    conversation = onnxruntime.InferenceSession(str(Path(folder) / CONVERSATION_FILE),
                                                providers=["CPUExecutionProvider"])
    from_embeddings = conversation.run(None, {name: {**inputs, **results}[name]
                                              for name in conversation_input_names(config)})
    with torch.no_grad():
        output = model(**{name: torch.from_numpy(inputs[name]) for name in graph_input_names(config)})
    turns = inputs["utterance_mask"].astype(bool)
    return max(float(np.abs(result - output[name].numpy())[turns].max())
               for name, result in [*results.items(), *zip(graph_output_names(config), from_embeddings)])


# ------------------------------------------------------------------------------------------------------- the command
@dataclass
class ExportArguments:
    """hcam-export's options."""

    model: str = field(metadata={"help": "trained HCAM checkpoint: folder or Hub repo id"})
    onnx: str = field(metadata={"help": f"folder to write the ONNX export to ({GRAPH_FILE}, {CONVERSATION_FILE}, "
                                        f"{SETTINGS_FILE}, {RUNNER_FILE} and the processor)"})
    opset: int = field(default=18, metadata={"help": "ONNX opset version"})
    check: bool = field(default=True, metadata={
        "help": "compare onnxruntime with PyTorch on random conversations of other lengths than the traced ones"})
    atol: float = field(default=1e-4, metadata={"help": "the largest difference --check accepts"})


def main(argv=None):
    from hcam.processing.cli import HCAMArgumentParser, command_errors

    parser = HCAMArgumentParser(ExportArguments, prog="hcam-export", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    with command_errors("hcam-export"):
        (args,) = parser.parse_args_into_dataclasses(argv, look_for_args_file=False)
        needed = ["onnx", "onnxscript"] + (["onnxruntime"] if args.check else [])
        missing = [name for name in needed if importlib.util.find_spec(name) is None]
        if missing:  # checked before the model loads
            raise SystemExit(f"{', '.join(missing)} not installed: hcam-export needs pip install \"hcam[export]\" "
                             "(onnx, onnxscript, onnxruntime)")
        from hcam.modeling_hcam.configuration_hcam import check_local_folder
        from hcam.processing.cli import debugging
        from hcam.trainer.predict import PredictError, load_pipeline

        try:
            check_local_folder(args.model)  # "no such folder" rather than transformers' "Repo id must ..."
            pipe = load_pipeline(args.model, device="cpu")
            export_onnx(pipe.model, pipe.processor, args.onnx, opset=args.opset, check=args.check, atol=args.atol,
                        log=lambda line: print(line, file=sys.stderr))
        except (PredictError, ExportError, ValueError, OSError) as error:
            if debugging():
                raise
            raise SystemExit(str(error)) from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
