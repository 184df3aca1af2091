"""The causal model (config.context="causal"): no turn's output depends on a later turn, for every head and the
ensemble; going on turn by turn with `past_turns` gives what the whole dialogue gives; bidirectional models refuse."""

import pytest
import torch

from hcam.modeling_hcam import HCAMConfig, HCAMForEmotionRecognition
from tiny import random_inputs, tiny_hcam_config

HEADS = ["audio_utterance", "text_utterance", "audio_context", "text_context", "fusion"]
STAGES = [(2, ("audio",)), (2, ("text",)), (3, ("audio", "text"))]


def causal_model(stage, modalities, seed=0, **overrides):
    torch.manual_seed(seed)
    return HCAMForEmotionRecognition(tiny_hcam_config(stage, modalities, context="causal", **overrides)).eval()


def outputs(model, inputs):
    names = [f"{h}_logits" for h in HEADS] + ["logits"]
    with torch.no_grad():
        result = model(**{k: v for k, v in inputs.items() if k != "labels"})
    return {name: getattr(result, name) for name in names if getattr(result, name) is not None}


def cut(inputs, turns):
    return {k: v[:, :turns] for k, v in inputs.items()}


@pytest.mark.parametrize("stage,modalities,settings", [(*s, {}) for s in STAGES] + [
    (3, ("audio", "text"), {"fusion_type": "concat"}), (2, ("text",), {"context_self_attention": False}),
    (2, ("audio",), {"use_speaker_masks": False})])
def test_later_turns_never_change_earlier_outputs(stage, modalities, settings):
    model = causal_model(stage, modalities, **settings)
    inputs = random_inputs(dialogue_turns=(6,), seed=1)
    full = outputs(model, inputs)
    changed = random_inputs(dialogue_turns=(6,), seed=2)  # other audio, words and speakers
    for t in range(1, 6):
        # turns t+1..T removed, and replaced by other turns
        shorter = outputs(model, cut(inputs, t))
        other = {k: torch.cat([inputs[k][:, :t], changed[k][:, t:]], dim=1) for k in inputs}
        replaced = outputs(model, other)
        for name, values in full.items():
            torch.testing.assert_close(shorter[name], values[:, :t], atol=1e-5, rtol=1e-5, msg=f"{name}, turn {t}")
            torch.testing.assert_close(replaced[name][:, :t], values[:, :t], atol=1e-5, rtol=1e-5,
                                       msg=f"{name}, turn {t}")
        assert not torch.allclose(replaced["logits"][:, t:], full["logits"][:, t:])  # the change did reach later turns


def test_the_bidirectional_model_looks_ahead():
    """The check above can fail: the paper's model changes earlier turns' outputs when later turns change."""
    torch.manual_seed(0)
    model = HCAMForEmotionRecognition(tiny_hcam_config(3)).eval()
    inputs = random_inputs(dialogue_turns=(6,), seed=1)
    full, shorter = outputs(model, inputs), outputs(model, cut(inputs, 3))
    assert not torch.allclose(shorter["audio_context_logits"], full["audio_context_logits"][:, :3], atol=1e-5)


@pytest.mark.parametrize("stage,modalities", STAGES + [(1, ("audio", "text"))])
@pytest.mark.parametrize("speakers", [True, False])
def test_turn_by_turn_with_the_cache_equals_the_whole_dialogue(stage, modalities, speakers):
    model = causal_model(stage, modalities)
    inputs = random_inputs(dialogue_turns=(7,), seed=3)
    inputs["speaker_ids"] = torch.tensor([[0, 1, 0, 0, 2, 1, 0]])
    if not speakers:
        inputs.pop("speaker_ids")
    full = outputs(model, inputs)
    past, steps = None, []
    for start, end in ((0, 1), (1, 2), (2, 5), (5, 6), (6, 7)):  # one turn at a time, and several at once
        piece = {k: v[:, start:end] for k, v in inputs.items() if k != "labels"}
        with torch.no_grad():
            result = model(**piece, past_turns=past, use_cache=True)
        past = result.past_turns
        assert past.num_turns == end
        steps.append(result)
    for name, values in full.items():
        continued = torch.cat([getattr(r, name) for r in steps], dim=1)
        torch.testing.assert_close(continued, values, atol=1e-5, rtol=1e-4, msg=name)


def test_attention_weights_of_continued_turns_cover_every_turn_so_far():
    model = causal_model(2, ("text",))
    inputs = random_inputs(dialogue_turns=(4,), seed=3)
    inputs.pop("labels")
    with torch.no_grad():
        full = model(**inputs, output_attentions=True).text_context_attentions
        first = model(**cut(inputs, 3), use_cache=True)
        last = model(**{k: v[:, 3:] for k, v in inputs.items()}, past_turns=first.past_turns, output_attentions=True)
    assert last.text_context_attentions.shape == (1, 3, 1, 4)
    torch.testing.assert_close(last.text_context_attentions, full[:, :, 3:], atol=1e-5, rtol=1e-4)
    assert torch.all(full.triu(1) == 0)  # no weight on later turns


def test_bidirectional_models_and_bad_continuations_are_refused():
    inputs = {k: v for k, v in random_inputs(dialogue_turns=(3, 2)).items() if k != "labels"}
    torch.manual_seed(0)
    bidirectional = HCAMForEmotionRecognition(tiny_hcam_config(2, ("text",))).eval()
    one = {k: v[:1] for k, v in inputs.items()}
    with pytest.raises(ValueError, match="only a causal model"):
        bidirectional(**one, use_cache=True)
    model = causal_model(2, ("text",))
    with pytest.raises(ValueError, match="one dialogue"):
        model(**inputs, use_cache=True)
    first = model(**{k: v[:, :1] for k, v in one.items()}, use_cache=True)
    without_speakers = {k: v[:, 1:2] for k, v in one.items() if k != "speaker_ids"}
    with pytest.raises(ValueError, match="for every call of a conversation or for none"):
        model(**without_speakers, past_turns=first.past_turns)
    with pytest.raises(ValueError, match="`context` must be one of"):
        HCAMConfig(context="forward")


def test_causal_stage_ii_keeps_the_embedding_width_and_stage_i():
    causal, bidirectional = causal_model(3, ("audio", "text")), HCAMForEmotionRecognition(tiny_hcam_config(3))
    assert not causal.context_encoders["audio"].gru.bidirectional
    assert causal.context_encoders["audio"].gru.hidden_size == causal.config.utterance_embedding_size
    # stage I is the same module either way: a causal stage 2 loads a stage-1 folder's weights as they are
    assert causal.utterance_encoders.state_dict().keys() == bidirectional.utterance_encoders.state_dict().keys()


def test_stage_three_refuses_stage_two_models_of_different_directions():
    torch.manual_seed(0)
    audio = HCAMForEmotionRecognition(tiny_hcam_config(2, ("audio",), context="causal"))
    text = HCAMForEmotionRecognition(tiny_hcam_config(2, ("text",)))
    with pytest.raises(ValueError, match="same --context"):
        HCAMForEmotionRecognition.from_unimodal(audio, text)
    text = HCAMForEmotionRecognition(tiny_hcam_config(2, ("text",), context="causal"))
    assert HCAMForEmotionRecognition.from_unimodal(audio, text).config.context == "causal"
