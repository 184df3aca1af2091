"""Pictures: the emotion timeline of a pipeline output (lanes, boxes, transcripts, attention arcs), the confusion
matrix with label names and counts, and clear errors (missing attentions, unknown labels, matplotlib absent)."""
import os
import sys

import numpy as np
import pytest
import torch
from tiny import TINY_LABELS, minilm_processor, tiny_hcam_config

from hcam.hub_cards import render_confusion_matrix_png
from hcam.modeling_hcam import HCAMForEmotionRecognition
from hcam.modeling_hcam.pipeline_hcam import HCAMEmotionPipeline

matplotlib = pytest.importorskip("matplotlib", reason='the [plot] extra is not installed: pip install "hcam[plot]"')
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

from hcam.hub_cards.plots import PlotUnavailableError, plot_confusion_matrix, plot_timeline  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def tone(seconds, seed):
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * (150 + 30 * seed) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def results():
    torch.manual_seed(0)
    model = HCAMForEmotionRecognition(tiny_hcam_config(3)).eval()
    pipe = HCAMEmotionPipeline(model=model, processor=minilm_processor(max_text_tokens=16))
    turns = [{"audio": tone(0.3 + 0.1 * i, i), "text": f"this is turn {i} of a rather long conversation", "speaker": s}
             for i, s in enumerate("ABACB")]
    return pipe({"turns": turns}, output_attentions=True)


def boxes(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_timeline_of_a_pipeline_output(results, tmp_path):
    path = tmp_path / "timeline.png"
    fig = plot_timeline(results, path, labels=TINY_LABELS, attention_turn=4, top_k=2)
    assert path.read_bytes()[:8] == PNG
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B", "C"]  # one lane per speaker, in order
    assert ax.get_xlabel() == "turn"  # no timing given
    drawn = boxes(ax)
    assert len(drawn) == 5
    for box, result in zip(drawn, results):  # height = probability, colour = label
        assert box.get_height() == pytest.approx(0.7 * result["score"])
    assert len({tuple(b.get_facecolor()) for b in drawn}) == len({r["label"] for r in results})
    arcs = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arcs) == 2
    weights = np.mean(results[4]["attentions"]["text"], axis=0)
    top = sorted((i for i in range(5) if i != 4), key=lambda i: -weights[i])[:2]
    written = {t.get_text() for t in ax.texts}
    assert {f"{weights[i]:.2f}" for i in top} <= written
    assert any("turn 1" in text for text in written)  # transcripts under the boxes
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == TINY_LABELS


def test_timeline_with_times_references_and_several_conversations(results, tmp_path):
    from hcam.hub_cards.plots import plot_conversations

    timed = [dict(r, start=2.0 * i, end=2.0 * i + 1.5, reference=TINY_LABELS[i % 2]) for i, r in enumerate(results)]
    fig = plot_conversations([{"dialogue_id": "call-1", "turns": timed}, results[:2]], tmp_path / "two.svg",
                             labels=TINY_LABELS)
    svg = (tmp_path / "two.svg").read_text()
    assert svg.lstrip().startswith("<?xml")
    assert svg.count("<title>") == 7 and f"<title>turn 0 (A): {results[0]['label']}" in svg  # hover text per box
    assert "this is turn 3 of a rather long conversation</title>" in svg
    first, second = fig.axes[:2]
    assert first.get_xlabel() == "time (s)" and "call-1" in first.get_title(loc="left")
    assert len(boxes(first)) == 10  # a reference strip under every box
    assert len(boxes(second)) == 2


def test_timeline_errors_say_what_to_do(results, tmp_path):
    plain = [{k: v for k, v in r.items() if k != "attentions"} for r in results]
    with pytest.raises(ValueError, match="output_attentions=True"):
        plot_timeline(plain, attention_turn=1)
    with pytest.raises(ValueError, match="attention_turn=9 is not a turn"):
        plot_timeline(results, attention_turn=9)
    with pytest.raises(ValueError, match=r"labels \['mystery'\]"):
        plot_timeline([dict(plain[0], label="mystery")], labels=TINY_LABELS)
    with pytest.raises(ValueError, match="turn 1.*'score'"):
        plot_timeline([plain[0], {"label": "neutral"}])


def test_confusion_matrix_has_names_counts_and_row_shading(tmp_path):
    labels = ["neutral", "happy", "sad"]
    fig = plot_confusion_matrix([[8, 2, 0], [1, 3, 0], [0, 0, 0]], labels, tmp_path / "cm.png", title="test split")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert ax.get_xlabel() == "predicted label" and ax.get_ylabel() == "true label"
    texts = [t.get_text() for t in ax.texts]
    assert texts[:3] == ["8\n80%", "2\n20%", "0\n0%"] and texts[3] == "1\n25%"
    shading = ax.images[0].get_array()
    assert shading[0, 0] == pytest.approx(0.8) and shading[1, 1] == pytest.approx(0.75) and shading[2].sum() == 0
    # the card's picture is this one whenever matplotlib is installed
    path = render_confusion_matrix_png([[8, 2], [1, 3]], labels[:2], tmp_path / "card.png")
    assert path.endswith("card.png") and (tmp_path / "card.png").stat().st_size > 5000


def test_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(PlotUnavailableError, match=r'pip install "hcam\[plot\]"'):
        plot_confusion_matrix([[1]], ["a"])
    # the card falls back to the plain grid
    path = render_confusion_matrix_png([[3, 1], [0, 2]], ["a", "b"], tmp_path / "grid.png", cell=10, border=1)
    assert (tmp_path / "grid.png").read_bytes()[:8] == PNG and path.endswith("grid.png")


def test_card_embeds_the_timeline_once():
    from hcam.hub_cards.plots import CARD_TIMELINE_FILE, embed_timeline_in_card
    from hcam.hub_cards.push import ALLOWED_PATTERNS

    card = "# model\n\n## Results\n\nnumbers\n\n## Training\n\nhow\n"
    once = embed_timeline_in_card(card, "first caption")
    twice = embed_timeline_in_card(once, "second caption")
    assert once.index("A test conversation") < once.index("## Training")
    assert f"]({CARD_TIMELINE_FILE})" in once and "first caption" in once
    assert twice.count("A test conversation") == 1 and "second caption" in twice and "first caption" not in twice
    assert twice.replace("second", "first") == once
    assert CARD_TIMELINE_FILE in ALLOWED_PATTERNS  # pushed with the card
    assert embed_timeline_in_card("# no training section", "c").endswith(f"({CARD_TIMELINE_FILE})\n<!-- /hcam:timeline -->\n\n")


def test_asr_robustness_section_goes_into_the_card_next_to_the_timeline(tmp_path):
    import importlib.util

    from hcam.hub_cards.plots import CARD_ASR_FILE, embed_timeline_in_card

    spec = importlib.util.spec_from_file_location(
        "bench_asr_robustness", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                                             "bench_asr_robustness.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (tmp_path / "README.md").write_text(embed_timeline_in_card("# card\n\n## Results\n\n## Training\n\nrun", "c"))
    (tmp_path / "plot.png").write_bytes(b"png")
    rows = [{"condition": "gold transcripts", "wer": 0.0, "weighted_f1": {"ensemble": 0.85, "fusion": 0.83}},
            {"condition": "Whisper, clean", "wer": 0.105, "weighted_f1": {"ensemble": 0.73, "fusion": 0.68}}]
    report = {"turns": 439, "date": "2026-12-06 15:00 UTC", "machine": "2-core x86_64"}
    for _ in range(2):  # twice leaves one section
        bench.embed_in_card(str(tmp_path), rows, ["ensemble", "fusion"], report, str(tmp_path / "plot.png"))
    card = (tmp_path / "README.md").read_text()
    assert card.count("### Robustness to ASR transcripts") == 1 and card.count("### A test conversation") == 1
    assert "| Whisper, clean | 0.105 | 0.730 | 0.680 |" in card and f"]({CARD_ASR_FILE})" in card
    assert card.index("Robustness to ASR") < card.index("## Training")
    assert (tmp_path / CARD_ASR_FILE).read_bytes() == b"png"
