"""Tiny HCAM configurations and inputs shared by the tests (importable as `from tiny import ...`)."""

import torch

from hcam.modeling_hcam import HCAMConfig

# Same vocabulary size as the packaged MiniLM tokenizer, so tiny models accept its token ids.
TINY_TEXT_ENCODER_CONFIG = dict(
    model_type="bert", vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=24, max_position_embeddings=128,
)
TINY_AUDIO_ENCODER_CONFIG = dict(
    model_type="wav2vec2", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
    conv_dim=[8, 8, 8], conv_stride=[5, 4, 4], conv_kernel=[10, 4, 4], num_conv_pos_embeddings=8,
    num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True, mask_time_prob=0.0,
)
TINY_LABELS = ["neutral", "happy", "sad", "angry"]


def tiny_hcam_config(stage=1, modalities=("audio", "text"), **overrides):
    kwargs = dict(
        num_stages=stage, modalities=list(modalities), audio_encoder_config=dict(TINY_AUDIO_ENCODER_CONFIG),
        text_encoder_config=dict(TINY_TEXT_ENCODER_CONFIG), gru_hidden_size=6, fusion_hidden_size=6,
        id2label=dict(enumerate(TINY_LABELS)), label2id={l: i for i, l in enumerate(TINY_LABELS)},
    )
    kwargs.update(overrides)
    return HCAMConfig(**kwargs)


def random_inputs(dialogue_turns=(3, 2), samples=1600, tokens=7, num_labels=4, seed=0):
    """A padded batch of dialogues in the processor's format, with varied lengths inside each dialogue."""
    generator = torch.Generator().manual_seed(seed)
    dialogues, turns = len(dialogue_turns), max(dialogue_turns)
    utterance_mask = torch.zeros(dialogues, turns, dtype=torch.long)
    for d, n in enumerate(dialogue_turns):
        utterance_mask[d, :n] = 1
    attention_mask = torch.zeros(dialogues, turns, samples, dtype=torch.long)
    text_attention_mask = torch.zeros(dialogues, turns, tokens, dtype=torch.long)
    for d, n in enumerate(dialogue_turns):
        for t in range(n):
            attention_mask[d, t, : int(samples * (0.5 + 0.5 * ((d + t) % 2)))] = 1
            text_attention_mask[d, t, : max(2, tokens - t)] = 1
    input_values = torch.randn(dialogues, turns, samples, generator=generator) * attention_mask
    input_ids = torch.randint(1000, 2000, (dialogues, turns, tokens), generator=generator) * text_attention_mask
    speaker_ids = (torch.arange(turns)[None, :] % 2).repeat(dialogues, 1).masked_fill(utterance_mask == 0, -1)
    labels = torch.randint(0, num_labels, (dialogues, turns), generator=generator).masked_fill(utterance_mask == 0, -100)
    return dict(input_values=input_values, attention_mask=attention_mask, input_ids=input_ids,
                text_attention_mask=text_attention_mask, utterance_mask=utterance_mask, speaker_ids=speaker_ids,
                labels=labels)


def minilm_processor(**kwargs):
    """`HCAMProcessor.from_encoders` for the default text encoder (all-MiniLM-L6-v2), read offline like the trainer."""
    from hcam.modeling_hcam import DEFAULT_TEXT_ENCODER, HCAMProcessor
    from hcam.processing.encoders import resolve_encoder_path

    return HCAMProcessor.from_encoders(DEFAULT_TEXT_ENCODER, text_encoder_path=resolve_encoder_path(DEFAULT_TEXT_ENCODER),
                                       **kwargs)


def save_checkpoint(folder, stage=3, modalities=("audio", "text"), seed=0, processor=None, pipeline=False,
                    **overrides):
    """A tiny HCAM (seed `seed`, `tiny_hcam_config(stage, modalities, **overrides)`) saved with a processor (the
    MiniLM one unless given) in `folder`, as a checkpoint folder is; with `pipeline`, the pipeline file added too.
    Returns the model, in eval mode."""
    from hcam.modeling_hcam import HCAMForEmotionRecognition
    from hcam.modeling_hcam.pipeline_hcam import add_pipeline_to_folder

    torch.manual_seed(seed)
    model = HCAMForEmotionRecognition(tiny_hcam_config(stage, modalities, **overrides)).eval()
    model.save_pretrained(folder)
    (processor or minilm_processor()).save_pretrained(folder)
    if pipeline:
        add_pipeline_to_folder(folder)
    return model
