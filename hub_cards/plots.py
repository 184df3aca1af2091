"""Pictures of results: a conversation's emotion timeline and the confusion matrix.

Both need matplotlib (`pip install "hcam[plot]"`), imported only when a picture is drawn, so nothing else in hcam
depends on it.

    from transformers import pipeline
    from hcam.hub_cards.plots import plot_timeline
    erc = pipeline("emotion-recognition-in-conversation", model=..., trust_remote_code=True)
    turns = erc(conversation, output_attentions=True)
    plot_timeline(turns, "conversation.png", attention_turn=5)

A timeline has one lane per speaker and one box per turn along time (the turns' `start`/`end` in seconds when every
turn has them, else the turn index). The box's colour is the predicted emotion, its height the probability of that
emotion; a thin strip under it shows the reference label when there is one; the transcript is written under the box
where it fits, and in an SVG each box shows the turn, label, probability and transcript on hover. With
`attention_turn`, arcs join that turn to the turns stage II attended to most (the mean over heads of the model's
attention weights, returned with `output_attentions=True`), the weight written on each arc.
"""
from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence

__all__ = ["plot_timeline", "plot_conversations", "plot_confusion_matrix", "label_colours", "PlotUnavailableError",
           "CARD_TIMELINE_FILE", "CARD_ASR_FILE", "embed_card_section", "embed_timeline_in_card"]

# The timeline picture a model card may embed (hub_cards.push uploads it with the card).
CARD_TIMELINE_FILE = "conversation_timeline.png"
CARD_ASR_FILE = "asr_robustness.png"  # bench/bench_asr_robustness.py --card: weighted F1 against the WER

# Colours people expect for the usual emotion names; any other label gets the next unused colour of tab10.
_NAMED_COLOURS = {
    "neutral": "#9e9e9e", "neu": "#9e9e9e",
    "happy": "#f2b701", "hap": "#f2b701", "joy": "#f2b701", "happiness": "#f2b701",
    "excited": "#ff7f0e", "exc": "#ff7f0e",
    "sad": "#1f77b4", "sadness": "#1f77b4",
    "angry": "#d62728", "ang": "#d62728", "anger": "#d62728",
    "frustrated": "#9467bd", "fru": "#9467bd",
    "surprise": "#17becf", "fear": "#8c564b", "disgust": "#2ca02c",
    "positive": "#2ca02c", "negative": "#d62728", "non-negative": "#2ca02c",
}


class PlotUnavailableError(ImportError):
    """matplotlib is not installed; the message says what to install."""


def pyplot():
    """matplotlib.pyplot (files only, the Agg backend), or a PlotUnavailableError saying what to install."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise PlotUnavailableError(
            'drawing needs matplotlib: pip install "hcam[plot]" (or pip install matplotlib)') from error
    return plt


def label_colours(labels: Sequence[str]) -> dict[str, str]:
    """One colour per label, the usual one for common emotion names (neutral grey, sad blue, angry red, ...)."""
    from matplotlib import colormaps

    spare = [colormaps["tab10"](i) for i in range(10)]
    colours = {}
    for index, label in enumerate(labels):
        colours[label] = _NAMED_COLOURS.get(str(label).lower(), spare[index % len(spare)])
    return colours


def _turns_of(conversation) -> tuple[str | None, list[dict]]:
    if isinstance(conversation, Mapping):
        if "turns" not in conversation:
            raise ValueError('a conversation to plot is the pipeline\'s list of turn results, or {"turns": [...]}')
        return conversation.get("dialogue_id"), list(conversation["turns"])
    return None, list(conversation)


def _check_turns(turns, name):
    if not turns:
        raise ValueError(f"{name}: no turns to plot")
    for index, turn in enumerate(turns):
        missing = [key for key in ("label", "score") if key not in turn]
        if missing:
            raise ValueError(f"{name}, turn {index}: {missing} missing; give the pipeline's results for each turn")


def _lane_name(turn) -> str:
    return "?" if turn.get("speaker") in (None, "") else str(turn["speaker"])


def _draw_timeline(ax, turns, colours, *, name, attention_turn=None, attention_modality=None, top_k=3,
                   max_text_chars=60):
    from matplotlib.patches import FancyArrowPatch, Rectangle

    _check_turns(turns, name)
    timed = all(turn.get("start") is not None and turn.get("end") is not None for turn in turns)
    if timed:
        spans = [(float(t["start"]), float(t["end"])) for t in turns]
    else:
        spans = [(index + 0.05, index + 0.95) for index in range(len(turns))]
    speakers = list(dict.fromkeys(_lane_name(t) for t in turns))
    lane = {speaker: len(speakers) - 1 - i for i, speaker in enumerate(speakers)}  # first speaker on top
    total = spans[-1][1] - min(s for s, _ in spans)
    for index, (turn, (start, end)) in enumerate(zip(turns, spans)):
        y = lane[_lane_name(turn)]
        height = 0.7 * float(turn["score"])
        box = ax.add_patch(Rectangle((start, y + 0.15), end - start, height,
                                     facecolor=colours.get(turn["label"], "black"),
                                     edgecolor="black" if index == attention_turn else "none", linewidth=1.5))
        # an SVG shows this on hover: the turn, its label and probability, the reference, the transcript
        tooltip = f"turn {index} ({turn.get('speaker') or '?'}): {turn['label']} {float(turn['score']):.2f}"
        if turn.get("reference"):
            tooltip += f", reference {turn['reference']}"
        if turn.get("text"):
            tooltip += f"\n{turn['text']}"
        box.set_gid(f"hcam-turn-{len(ax.figure._hcam_tooltips)}")
        ax.figure._hcam_tooltips.append(tooltip)
        if turn.get("reference"):
            ax.add_patch(Rectangle((start, y + 0.04), end - start, 0.07,
                                   facecolor=colours.get(turn["reference"], "black"), edgecolor="none"))
        text = str(turn.get("text") or "")
        # the transcript under the box where it fits (about 1 character per 1.1 % of the axis width)
        room = int((end - start) / max(total, 1e-9) * 2.2 * ax.figure.get_figwidth() * 72 / 6 / 0.6 / 2.2)
        if text and room >= 6:  # up to two lines of 6-point text under the box
            lines = textwrap.wrap(text, width=room)[:2]
            if len(textwrap.wrap(text, width=room)) > 2:
                lines[1] = textwrap.shorten(lines[1] + " …", width=room, placeholder=" …")
            ax.text((start + end) / 2, y - 0.02, "\n".join(lines), ha="center", va="top", fontsize=6, color="#333333")
    if attention_turn is not None:
        weights = _attention_weights(turns, attention_turn, attention_modality, name)
        source = spans[attention_turn]
        top = len(speakers) + 0.05  # the arcs run above every lane, from turn to turn
        others = sorted((i for i in range(len(turns)) if i != attention_turn), key=lambda i: -weights[i])[:top_k]
        for i in others:
            start_point = ((source[0] + source[1]) / 2, top)
            end_point = ((spans[i][0] + spans[i][1]) / 2, top)
            # bow upwards, over the boxes; flatter for distant turns so that the arc stays inside the axes
            bend = min(0.3, 0.6 / abs(attention_turn - i)) * (1 if end_point[0] < start_point[0] else -1)
            ax.add_patch(FancyArrowPatch(start_point, end_point, connectionstyle=f"arc3,rad={bend}", arrowstyle="-|>",
                                         mutation_scale=8, linewidth=0.5 + 4 * weights[i], color="black", alpha=0.7))
            ax.text(end_point[0], end_point[1] - 0.03, f"{weights[i]:.2f}", ha="center", va="top", fontsize=6)
    ax.set_yticks([lane[s] + 0.5 for s in speakers], speakers)
    ax.set_ylim(-0.3, len(speakers) + (0.35 if attention_turn is None else 1.2))
    ax.set_xlim(min(s for s, _ in spans) - 0.02 * total, spans[-1][1] + 0.02 * total)
    ax.set_xlabel("time (s)" if timed else "turn")
    if not timed:
        step = max(1, len(turns) // 20)
        ax.set_xticks([i + 0.5 for i in range(0, len(turns), step)], [str(i) for i in range(0, len(turns), step)])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    title = f"{name}" if name else "conversation"
    if attention_turn is not None:
        title += (f" — arcs: turns that turn {attention_turn} attended to most (stage II, {attention_modality}, "
                  "mean over heads)")
    ax.set_title(title, fontsize=9, loc="left")


def _attention_weights(turns, attention_turn, modality, name):
    if not 0 <= attention_turn < len(turns):
        raise ValueError(f"{name}: attention_turn={attention_turn} is not a turn (0..{len(turns) - 1})")
    attentions = turns[attention_turn].get("attentions")
    if not attentions:
        raise ValueError(f"{name}: turn {attention_turn} has no 'attentions': call the pipeline with "
                         "output_attentions=True (stage-2 or stage-3 models)")
    if modality not in attentions:
        raise ValueError(f"{name}: no {modality!r} attention; this model has {sorted(attentions)}")
    heads = attentions[modality]
    return [sum(head[i] for head in heads) / len(heads) for i in range(len(turns))]


def _legend(fig, labels, colours, with_reference):
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colours[label], label=str(label)) for label in labels]
    note = "box: predicted emotion, height = its probability" + ("; strip below: reference" if with_reference else "")
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False,
               title=note, title_fontsize=7)


def plot_timeline(conversation, path: str | os.PathLike | None = None, *, labels: Sequence[str] | None = None,
                  attention_turn: int | None = None, attention_modality: str | None = None, top_k: int = 3,
                  title: str | None = None, width: float = 12.0):
    """Draw one conversation's emotion timeline; return the matplotlib figure (and save it to `path` if given).

    Args:
        conversation: the pipeline's output for one conversation (a list of turn dicts with `label`, `score`,
            `speaker`, and optionally `text`, `start`/`end` in seconds, `reference`, `attentions`), or
            `{"dialogue_id": ..., "turns": [...]}`.
        path: where to save (.png, .svg, .pdf; the format follows the suffix).
        labels: every label in the model's order (for the legend and stable colours); default: the labels seen.
        attention_turn: draw arcs from this turn (-1 = the last) to the `top_k` turns stage II attended to most
            (needs the pipeline's `output_attentions=True`).
        attention_modality: "text" or "audio" (default: text if present).
        title: replaces the conversation's id in the title.
    """
    return plot_conversations([conversation], path, labels=labels, attention_turn=attention_turn,
                              attention_modality=attention_modality, top_k=top_k, titles=[title] if title else None,
                              width=width)


def plot_conversations(conversations, path: str | os.PathLike | None = None, *, labels: Sequence[str] | None = None,
                       attention_turn: int | None = None, attention_modality: str | None = None, top_k: int = 3,
                       titles: Sequence[str] | None = None, width: float = 12.0):
    """Several timelines stacked in one figure (see `plot_timeline`); `attention_turn` applies to each."""
    plt = pyplot()
    conversations = [_turns_of(c) for c in conversations]
    if not conversations:
        raise ValueError("no conversations to plot")
    seen = list(dict.fromkeys(t.get(key) for _, turns in conversations for t in turns for key in ("label", "reference")
                              if t.get(key)))
    labels = list(labels) if labels is not None else seen
    unknown = [label for label in seen if label not in labels]
    if unknown:
        raise ValueError(f"labels {unknown} are in the turns but not in labels={list(labels)}")
    colours = label_colours(labels)
    heights = [1.1 + 0.8 * len({str(t.get("speaker")) for t in turns}) + (0.6 if attention_turn is not None else 0)
               for _, turns in conversations]
    fig, axes = plt.subplots(len(conversations), 1, figsize=(width, sum(heights) + 0.7),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    fig._hcam_tooltips = []
    for index, ((name, turns), ax) in enumerate(zip(conversations, axes[:, 0])):
        modality, chosen = attention_modality, attention_turn
        if chosen is not None and chosen < 0:  # -1 = the last turn, as in Python
            chosen += len(turns)
        if chosen is not None and modality is None:
            available = (turns[chosen].get("attentions") or {}) if 0 <= chosen < len(turns) else {}
            modality = "text" if "text" in available else next(iter(available), "text")
        label = titles[index] if titles else (f"dialogue {name}" if name else f"conversation {index}")
        _draw_timeline(ax, turns, colours, name=label, attention_turn=chosen, attention_modality=modality,
                       top_k=top_k)
    with_reference = any(t.get("reference") for _, turns in conversations for t in turns)
    _legend(fig, labels, colours, with_reference)
    fig.tight_layout(rect=(0, 0.65 / (sum(heights) + 0.7), 1, 1))
    if path is not None:
        _save(fig, path)
    return fig


def plot_confusion_matrix(matrix: Sequence[Sequence[float]], labels: Sequence[str], path: str | os.PathLike | None = None,
                          *, title: str | None = None):
    """The confusion matrix as scikit-learn's ConfusionMatrixDisplay draws it: true labels down, predicted across,
    label names on both axes, each cell's count (and its share of the row) written in it, shaded by that share."""
    import numpy as np

    plt = pyplot()
    counts = np.asarray(matrix, dtype=float)
    n = len(labels)
    if n == 0 or counts.shape != (n, n):
        raise ValueError(f"matrix must be {n}x{n} for labels {list(labels)}, got shape {counts.shape}")
    totals = counts.sum(1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    side = 1.2 + 0.75 * n
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            colour = "white" if shares[i, j] > 0.5 else "black"
            count = int(counts[i, j]) if float(counts[i, j]).is_integer() else f"{counts[i, j]:.2g}"
            ax.text(j, i, f"{count}\n{shares[i, j]:.0%}", ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(n), [str(label) for label in labels], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(label) for label in labels])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true label's turns")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        _save(fig, path)
    return fig


def _save(fig, path):
    import matplotlib.pyplot as plt

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tooltips = getattr(fig, "_hcam_tooltips", None)
    if tooltips and path.lower().endswith(".svg"):  # hover text: a <title> in each turn's box group
        import io
        import re
        from xml.sax.saxutils import escape

        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
        svg = re.sub(r'(<g id="hcam-turn-(\d+)">)',
                     lambda m: f"{m.group(1)}<title>{escape(tooltips[int(m.group(2))])}</title>", buffer.getvalue())
        with open(path, "w", encoding="utf-8") as f:
            f.write(svg)
    else:
        fig.savefig(path, dpi=110)
    plt.close(fig)


def embed_card_section(card_text: str, name: str, body: str) -> str:
    """The model card's markdown with `body` as a section between `<!-- hcam:{name} -->` markers (before
    "## Training", else at the end); a section embedded earlier under the same name is replaced, so embedding twice
    leaves one."""
    start, end = f"<!-- hcam:{name} -->", f"<!-- /hcam:{name} -->"
    if start in card_text and end in card_text:
        card_text = card_text[: card_text.index(start)] + card_text[card_text.index(end) + len(end):].lstrip("\n")
    section = f"{start}\n{body.strip()}\n{end}\n\n"
    anchor = card_text.find("\n## Training")
    if anchor < 0:
        return card_text.rstrip("\n") + "\n\n" + section
    return card_text[: anchor + 1] + section + card_text[anchor + 1:]


def embed_timeline_in_card(card_text: str, caption: str, file: str = CARD_TIMELINE_FILE) -> str:
    """The model card's markdown with a "A test conversation" section showing `file` (`embed_card_section`)."""
    return embed_card_section(card_text, "timeline", f"### A test conversation\n\n{caption}\n\n"
                                                     f"![Emotion timeline of a test conversation]({file})")