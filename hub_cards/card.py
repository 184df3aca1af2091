"""Model cards for HCAM checkpoints: YAML metadata with a model-index, stage table, per-class scores,
the confusion matrix (markdown table + PNG), the command and hyperparameters, usage, limitations.

The card is rendered from ``templates/model_card.md.j2`` with huggingface_hub's ``ModelCard.from_template``,
so its metadata is exactly what ``ModelCardData`` writes and the Hub parses.
"""
from __future__ import annotations

import json
import math
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = ["HCAMCardData", "build_model_card", "render_confusion_matrix_png", "results_to_eval_results", "TEMPLATE_PATH"]

TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md.j2"

# all_results.json prefixes (Trainer's metric_key_prefix) -> the dataset split they were measured on.
SPLIT_OF_PREFIX = {"test": "test", "eval": "validation", "validation": "validation", "train": "train"}
# metric key in all_results.json -> (model-index metric type, display name, metric args)
METRICS = {
    "weighted_f1": ("f1", "Weighted F1", {"average": "weighted"}),
    "macro_f1": ("f1", "Macro F1", {"average": "macro"}),
    "accuracy": ("accuracy", "Accuracy", None),
    "unweighted_accuracy": ("recall", "Unweighted accuracy (macro recall)", {"average": "macro"}),
}
_LOCAL_PATH = re.compile(r"^(/|\.{1,2}/|~|[A-Za-z]:\\)")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def num_stages(config):
    """How many stages a model of `config` (an HCAMConfig or its dict) has; configurations saved before the name
    num_stages say `stage`."""
    cfg = _config_dict(config)
    return cfg.get("num_stages", cfg.get("stage", 1))


def _config_dict(config) -> dict:
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    return config.to_dict()


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{100 * value:.2f}" if 0.0 <= value <= 1.0 else f"{value:.4g}"
    if isinstance(value, int):
        return str(value)
    return str(value)


def head_results(results: Mapping[str, Any], head: str | None) -> dict[str, Any]:
    """``{prefix}_{metric}`` values of one head: ``{prefix}_{head}_{metric}`` (the Trainer's per-head keys; head
    "ensemble" = what the model outputs) or, for ``head=None``, the plain keys (the head the checkpoint was selected
    on)."""
    if head is None:
        return dict(results)
    found = {}
    for key, value in results.items():
        prefix, _, rest = key.partition("_")
        if rest.startswith(head + "_") and rest[len(head) + 1:] in METRICS:
            found[f"{prefix}_{rest[len(head) + 1:]}"] = value
    return found


def results_to_eval_results(results: Mapping[str, Any], *, dataset_name: str, dataset_type: str, task_type: str,
                            dataset_config: str | None = None, head_name: str | None = None) -> list[EvalResult]:
    """Every ``{prefix}_{metric}`` of ``results`` with a known prefix and metric, as model-index entries
    (``head_name``, e.g. "ensemble", is added to each metric's name).

    Values are copied unchanged (fractions, as all_results.json holds them), so the card's metadata can be
    compared with the results file exactly.
    """
    out = []
    for key in sorted(results):
        prefix, _, metric = key.partition("_")
        if prefix not in SPLIT_OF_PREFIX or metric not in METRICS:
            continue
        value = results[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        metric_type, metric_name, metric_args = METRICS[metric]
        out.append(
            EvalResult(
                task_type=task_type,
                task_name="Emotion recognition in conversation",
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                dataset_config=dataset_config,
                dataset_split=SPLIT_OF_PREFIX[prefix],
                metric_type=metric_type,
                metric_name=f"{metric_name} ({head_name})" if head_name else metric_name,
                metric_value=value,
                metric_args=metric_args,
            )
        )
    return out


def _hub_ids(names: Sequence[str] | None) -> list[str]:
    """Names that can be Hub repo ids (local folders are not: they go in the card's text only)."""
    ids = []
    for name in names or []:
        if name and not _LOCAL_PATH.match(name) and not os.path.isdir(name) and _HUB_ID.match(name):
            ids.append(name)
    return list(dict.fromkeys(ids))


def _table(rows: Any, preferred: Sequence[str]) -> tuple[list[str], list[dict]]:
    """Rows given as {name: {col: value}} or [{"name"/"stage": ..., col: value}] -> (columns, rows)."""
    if isinstance(rows, Mapping):
        items = [(str(name), dict(values)) for name, values in rows.items()]
    else:
        items = []
        for row in rows or []:
            row = dict(row)
            name = row.pop("name", None) or row.pop("stage", None) or row.pop("label", None)
            items.append((str(name), row))
    columns = []
    for _, values in items:
        for col in values:
            if col not in columns:
                columns.append(col)
    order = list(columns)
    columns.sort(key=lambda c: (preferred.index(c) if c in preferred else len(preferred), order.index(c)))
    pretty = {"weighted_f1": "Weighted F1", "macro_f1": "Macro F1", "accuracy": "Accuracy", "precision": "Precision",
              "recall": "Recall", "f1": "F1", "support": "Support"}
    return [pretty.get(c, c) for c in columns], [
        {"name": name, "values": [_fmt(values.get(c, float("nan"))) for c in columns]} for name, values in items
    ]


@dataclass
class HCAMCardData:
    """Everything the HCAM model card says (like setfit's card-data object); `hcam.trainer.hub.card_data` builds
    it from a finished stage folder.

    Args:
        config: the model's `HCAMConfig` (or its dict): modalities, stage, labels and encoder names.
        results: the run's all_results.json; every `test_*`/`eval_*` weighted F1, macro F1 and accuracy goes into the
            model-index, with its value unchanged.
        stage_table: one row per stage and one for the ensemble, as `{name: {metric: value}}` or a list of dicts with
            a "name" (or "stage") key; fractions in [0, 1] are shown as percentages.
        per_class: `{label: {"precision":, "recall":, "f1":, "support":}}` (or a list of dicts with "label").
        confusion_matrix: counts, rows = true labels, columns = predicted labels, in `labels` order.
        labels: the label names in id order.
        setting: e.g. "6class, 6 labels".
        command: the exact command that produced the checkpoint.
        hyperparameters: the hyperparameters of the run (shown as a table).
        dataset_name: human name of the corpus (model-index dataset name), e.g. "IEMOCAP".
        repo_id: the Hub repo the card is for (used in the usage snippet).
        base_models: encoder names; Hub ids go to the `base_model` metadata, local folders only into the text.
        dataset_id: Hub dataset id for the `datasets` metadata and the model-index dataset type (defaults to
            the lower-cased dataset name).
        dataset_config: the label setting, for the model-index.
        language: the corpus's language code(s).
        revision: the revision this card describes, shown in the usage snippet (None = main).
        revisions: stage name -> revision, listed in the card.
        confusion_matrix_file: the PNG's name in the repo (None = no picture).
        confusion_matrix_split: the split the confusion matrix was counted on.
        transcripts: what the text branch was trained on (limitations).
        extra_tags: more Hub tags (e.g. the stage tag).
        dataset_nature: what the recordings are, completing "<dataset_name> ..." in the limitations (the corpus
            registry's `nature`); None = a generic caution.
        data_lines: more "Labels and setting" bullet lines, e.g. the split protocol, split sizes, data problems.
        reported_head: the head whose numbers lead the card (headline, model-index, per-class table, confusion
            matrix): "ensemble" (default), what the model's `logits`, the pipeline and hcam-predict give; read from
            `results`' `{prefix}_ensemble_{metric}` keys. Results without them: the plain keys, `selected_head`'s.
        selected_head: in words, the head the checkpoint was selected on, whose numbers are the plain
            `{prefix}_{metric}` keys (e.g. "Stage III (fusion)"); the headline names it and its score too.
        labels_note: where the labels come from (limitations); None: the annotators' caution.
    """

    config: Any
    results: Mapping[str, Any]
    stage_table: Any
    per_class: Any
    confusion_matrix: Sequence[Sequence[int]]
    labels: Sequence[str]
    setting: str
    command: str
    hyperparameters: Mapping[str, Any]
    dataset_name: str
    repo_id: str
    base_models: Sequence[str] | None = None
    dataset_id: str | None = None
    dataset_config: str | None = None
    license: str = "apache-2.0"
    language: str | list[str] | None = None
    revision: str | None = None
    revisions: Mapping[str, str] | None = None
    confusion_matrix_file: str | None = "confusion_matrix.png"
    confusion_matrix_split: str = "test"
    transcripts: str = "the corpus's human transcripts"
    extra_tags: Sequence[str] = ()
    dataset_nature: str | None = None
    data_lines: Sequence[str] = ()
    reported_head: str | None = "ensemble"
    selected_head: str = "the newest stage's head"
    labels_note: str | None = None

    def reported(self) -> tuple[dict, str]:
        """(the `{prefix}_{metric}` results the card leads with, which head they are, in words)."""
        found = head_results(self.results, self.reported_head) if self.reported_head else {}
        if found:
            return found, self.reported_head
        return head_results(self.results, None), self.selected_head

    @property
    def modalities(self) -> list[str]:
        return list(_config_dict(self.config).get("modalities") or ["audio", "text"])

    @property
    def task_type(self) -> str:
        return "audio-classification" if "audio" in self.modalities else "text-classification"

    @property
    def pipeline_tag(self) -> str | None:
        """The Hub task of a one-modality model; none for speech + text: no Hub task classifies both (the model's
        own pipeline task, emotion-recognition-in-conversation, is in the tags)."""
        present = [m for m in ("audio", "text") if m in self.modalities]
        return {("audio",): "audio-classification", ("text",): "text-classification"}.get(tuple(present))


def public_paths(text: str) -> str:
    """`text` with this machine's paths made fit for a public card: the working directory is dropped (paths become
    relative to where the command ran) and the home directory becomes `~`."""
    for prefix, replacement in ((os.getcwd().rstrip(os.sep) + os.sep, ""),
                                (os.path.expanduser("~").rstrip(os.sep) + os.sep, "~" + os.sep)):
        if len(prefix) > 1:
            text = text.replace(prefix, replacement)
    return text


def _metadata(data: HCAMCardData, eval_results) -> ModelCardData:
    encoders = _hub_ids(data.base_models)
    tags = ["hcam", "emotion-recognition", "emotion-recognition-in-conversation", "multimodal", "custom_code",
            "safetensors"] + [m for m in data.modalities if m in ("audio", "text")] + list(data.extra_tags)
    if _config_dict(data.config).get("context") == "causal":
        tags.append("streaming")
    return ModelCardData(
        language=data.language,
        license=data.license,
        library_name="transformers",
        pipeline_tag=data.pipeline_tag,
        tags=list(dict.fromkeys(tags)),
        datasets=[data.dataset_id] if data.dataset_id else None,
        base_model=(encoders[0] if len(encoders) == 1 else encoders) or None,
        metrics=sorted({r.metric_type for r in eval_results}) or None,
        model_name=data.repo_id.split("/")[-1],
        eval_results=eval_results or None,
    )


def _headline(reported, head, data) -> str:
    """The card's first number: what the model outputs (`head`), and the selected head's own score next to it."""
    for prefix, split in (("test", "test"), ("eval", "validation")):
        if f"{prefix}_weighted_f1" in reported:
            what = ("the model's output (the ensemble of its stages, as `logits`, the pipeline and hcam-predict give it)"
                    if head == "ensemble" else head)
            headline = f"{split.capitalize()} weighted F1 of {what}: {_fmt(reported[f'{prefix}_weighted_f1'])}"
            if f"{prefix}_accuracy" in reported:
                headline += f", accuracy: {_fmt(reported[f'{prefix}_accuracy'])}"
            headline += f" ({data.setting})."
            own = data.results.get(f"{prefix}_weighted_f1")
            several_heads = num_stages(data.config) > 1  # stage I: the ensemble is its one head
            if head == "ensemble" and several_heads and isinstance(own, (int, float)):
                headline += f" {data.selected_head} alone, the head the checkpoint was selected on: {_fmt(own)}."
            return headline
    return ""


def _encoder_lines(data: HCAMCardData) -> list[str]:
    cfg, encoders = _config_dict(data.config), _hub_ids(data.base_models)
    lines = []
    for name, key in (("audio", "audio_encoder_name_or_path"), ("text", "text_encoder_name_or_path")):
        if name not in data.modalities:
            continue
        value = cfg.get(key)
        if value is None and name == "audio":
            lines.append("audio: a small wav2vec2 initialised at random and trained in stage I")
        elif value is not None:
            lines.append(f"{name}: `{value}`")
    for name in data.base_models or []:
        if name not in encoders:
            lines.append(f"also given: `{name}` (a local folder, not a Hub id)")
    return lines


def _context_line(config) -> str:
    """Which turns the model's prediction for a turn uses (HCAMConfig.context), in words, with how to run it."""
    cfg = _config_dict(config)
    if num_stages(cfg) == 1:
        return "none: a stage-I model reads each turn alone (it runs live too: `model.start_conversation(processor)`)."
    if cfg.get("context") == "causal":
        return ("**causal**: a turn's prediction uses that turn and the earlier ones only, so it is final the moment the "
                "turn arrives and the model runs live, turn by turn (`model.start_conversation(processor)`, the "
                "pipeline's `stream=True`, `hcam-predict --live`).")
    return ("bidirectional (the paper's): a turn's prediction also uses the turns after it, so it runs on finished "
            "conversations; for live use, stages 2 and 3 are trained with `--context causal`.")


def _usage(modalities) -> tuple[str, str, str]:
    """(what the model reads, in words; the processor arguments of the usage snippet; the pipeline's turns)."""
    present = tuple(m for m in ("audio", "text") if m in modalities)
    phrase = {("audio", "text"): "speech and its transcript", ("audio",): "speech alone",
              ("text",): "the transcript alone"}.get(present, ", ".join(modalities))
    inputs = {("audio", "text"): 'text=["Hi.", "Go away!"], audio=[wave_1, wave_2]',
              ("audio",): "audio=[wave_1, wave_2]"}.get(present, 'text=["Hi.", "Go away!"]')
    turns = [{"speaker": "A"}, {"speaker": "B"}]
    for turn, (wav, text) in zip(turns, (("turn0.wav", "Hi."), ("turn1.wav", "Go away!"))):
        if "audio" in present:
            turn["audio"] = wav
        if "text" in present:
            turn["text"] = text
    pipeline_turns = ", ".join(json.dumps({k: t[k] for k in ("audio", "text", "speaker") if k in t}) for t in turns)
    return phrase, inputs, pipeline_turns


def build_model_card(data: HCAMCardData) -> ModelCard:
    """Fill the HCAM model card (`hub_cards/templates/model_card.md.j2`) from an `HCAMCardData`.

    Returns:
        huggingface_hub.ModelCard (call `.validate()` against an endpoint, `.save(path)` to write README.md).
    """
    labels = [str(label) for label in data.labels]
    matrix = data.confusion_matrix
    if len(matrix) != len(labels) or any(len(row) != len(labels) for row in matrix):
        raise ValueError(
            f"confusion_matrix must be {len(labels)}x{len(labels)} (one row and column per label {labels}); "
            f"got {len(matrix)} rows of lengths {[len(r) for r in matrix]}"
        )
    dataset_type = data.dataset_id or data.dataset_name.lower().replace(" ", "-")
    reported, head = data.reported()
    eval_results = results_to_eval_results(reported, dataset_name=data.dataset_name, dataset_type=dataset_type,
                                           task_type=data.task_type, dataset_config=data.dataset_config,
                                           head_name=head)
    stage_columns, stage_rows = _table(data.stage_table, ["weighted_f1", "accuracy", "macro_f1"])
    per_class_columns, per_class_rows = _table(data.per_class, ["precision", "recall", "f1", "support"])
    modality_phrase, usage_inputs, pipeline_turns = _usage(data.modalities)
    lang = data.language if isinstance(data.language, str) else ", ".join(data.language or [])
    return ModelCard.from_template(
        _metadata(data, eval_results),
        template_path=str(TEMPLATE_PATH),
        model_title=f"HCAM — {data.dataset_name} ({data.setting})",
        repo_id=data.repo_id,
        revision_arg=f', revision="{data.revision}"' if data.revision and data.revision != "main" else "",
        dataset_name=data.dataset_name,
        setting=data.setting,
        headline=_headline(reported, head, data),
        reported_head=head,
        selected_head=data.selected_head,
        ensemble=head == "ensemble",
        pipeline_turns=pipeline_turns,
        cli_usage=not data.revision or data.revision == "main",
        revision=data.revision,
        labels_note=data.labels_note,
        labels=labels,
        modalities=data.modalities,
        modality_phrase=modality_phrase,
        stage=num_stages(data.config),
        context_line=_context_line(data.config),
        base_model_lines=[public_paths(line) for line in _encoder_lines(data)],
        results_rows=[{"split": r.dataset_split, "metric": r.metric_name, "value": _fmt(r.metric_value)}
                      for r in eval_results],
        stage_columns=stage_columns,
        stage_rows=stage_rows,
        revision_rows=[{"stage": s, "revision": r} for s, r in (data.revisions or {}).items()],
        per_class_columns=per_class_columns,
        per_class_rows=per_class_rows,
        matrix_rows=[{"label": label, "values": [int(v) for v in row]} for label, row in zip(labels, matrix)],
        matrix_split=data.confusion_matrix_split,
        confusion_matrix_file=data.confusion_matrix_file,
        command=public_paths(data.command.strip()),
        hyperparameters=[(k, public_paths(json.dumps(v) if not isinstance(v, str) else v))
                         for k, v in data.hyperparameters.items()],
        dataset_nature=data.dataset_nature or "may be acted or collected in particular conditions: check how it was recorded.",
        data_lines=list(data.data_lines),
        language_phrase=f"language `{lang}`" if lang else "the corpus's language(s) only",
        transcript_phrase=data.transcripts,
        usage_inputs=usage_inputs,
    )


# ---- the confusion-matrix picture (no matplotlib: a PNG written with zlib and struct) -------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _write_png(path: str | os.PathLike, pixels: list[bytearray], width: int, height: int) -> None:
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)  # filter type 0 on every scanline
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))  # 8-bit RGB
        + _png_chunk(b"IDAT", zlib.compress(raw, 9))
        + _png_chunk(b"IEND", b"")
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(png)


def render_confusion_matrix_png(matrix: Sequence[Sequence[float]], labels: Sequence[str], path: str | os.PathLike,
                                *, title: str | None = None, use_matplotlib: bool | None = None, cell: int = 48,
                                border: int = 2) -> str:
    """Draw the confusion matrix to a PNG; return the path written.

    With matplotlib (`pip install "hcam[plot]"`; `use_matplotlib=None` = whenever it is installed) it is drawn like
    scikit-learn's ConfusionMatrixDisplay by `hcam.hub_cards.plots.plot_confusion_matrix`: label names on both axes,
    counts and row shares in the cells, row-normalised shading. Without it, a bare heat-map grid (`cell`, `border` in
    pixels; white = 0, dark blue = the whole row, the diagonal framed) written with zlib: the card's table then
    carries the labels and counts. Rows are true labels, columns predicted labels, both in `labels` order.
    """
    if use_matplotlib is None:
        import importlib.util

        use_matplotlib = importlib.util.find_spec("matplotlib") is not None
    if use_matplotlib:
        from .plots import plot_confusion_matrix

        plot_confusion_matrix(matrix, labels, path, title=title)
        return str(path)
    n = len(labels)
    if n == 0 or len(matrix) != n or any(len(row) != n for row in matrix):
        raise ValueError(f"matrix must be {n}x{n} for labels {list(labels)}")
    side = n * cell + (n + 1) * border
    grid, white, dark = (200, 200, 200), (255, 255, 255), (8, 48, 107)
    pixels = [bytearray(grid * side) for _ in range(side)]
    for i, row in enumerate(matrix):
        total = float(sum(row))
        for j, count in enumerate(row):
            share = float(count) / total if total > 0 else 0.0
            colour = bytes(round(w + (d - w) * share) for w, d in zip(white, dark))
            if i == j:  # a thin frame marks the diagonal (correct predictions)
                frame = bytes((220, 120, 0))
            else:
                frame = colour
            top, left = border + i * (cell + border), border + j * (cell + border)
            for y in range(top, top + cell):
                line = pixels[y]
                edge_row = y < top + 2 or y >= top + cell - 2
                for x in range(left, left + cell):
                    edge = edge_row or x < left + 2 or x >= left + cell - 2
                    line[3 * x:3 * x + 3] = frame if edge else colour
    _write_png(path, pixels, side, side)
    return str(path)


def card_metadata_problems(content: str) -> list[str]:
    """What is wrong with a card's (README.md's) YAML metadata by the Hub's rules (a subset: the ones the local Hub
    server, hcam.hub_cards.local_hub, checks on /api/validate-yaml as the Hub does)."""
    import yaml

    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
    if match is None:
        return []
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        return [f"YAML front matter does not parse: {err}"]
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ["YAML front matter must be a mapping"]
    errors = [f'"{key}" must be a string or a list of strings' for key in ("tags", "datasets", "base_model", "language")
              if meta.get(key) is not None and not isinstance(meta[key], (str, list))]
    if "license" in meta and not isinstance(meta["license"], str):
        errors.append('"license" must be a string')
    index = meta.get("model-index")
    if index is not None and not isinstance(index, list):
        return errors + ['"model-index" must be an array']
    for i, model in enumerate(index or []):
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            errors.append(f'"model-index[{i}].name" is required and must be a string')
            continue
        for j, result in enumerate(model.get("results") or []):
            where = f"model-index[{i}].results[{j}]"
            if not isinstance((result.get("task") or {}).get("type"), str):
                errors.append(f'"{where}.task.type" is required')
            dataset = result.get("dataset") or {}
            if not isinstance(dataset.get("name"), str) or not isinstance(dataset.get("type"), str):
                errors.append(f'"{where}.dataset" needs "name" and "type"')
            metrics = result.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                errors.append(f'"{where}.metrics" must be a non-empty array')
                continue
            errors += [f'"{where}.metrics[{k}]" needs "type" and "value"' for k, metric in enumerate(metrics)
                       if not isinstance(metric, dict) or not isinstance(metric.get("type"), str) or "value" not in metric]
    return errors
