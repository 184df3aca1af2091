"""PyTorch HCAM: Hierarchical Cross-Attention Model for emotion recognition in conversation (arXiv 2304.06910).

Stage I encodes each utterance (wav2vec2 or a text encoder → bi-GRU → self-attention pooling), stage II adds
the dialogue context (bi-GRU → speaker-aware self-attention over turns), stage III fuses the two modalities
with co-attention. At test time the stages' predictions are averaged.

Batches are batches of dialogues: every tensor has a leading (dialogues, turns) pair of dimensions.
"""

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_hcam import ENSEMBLE, HCAMConfig, check_local_folder

# Log-probabilities of the ensemble are clamped here so that a head that is certain gives finite logits.
_MIN_PROBABILITY = 1e-8
# Attention over a conversation's turns runs this many query turns at a time when there are more (an hour-long call
# has ~1,400 turns): memory then grows with turns x block instead of turns x turns, and the result is the same.
ATTENTION_QUERY_BLOCK = 256

logger = logging.get_logger(__name__)


@dataclass
class HCAMOutput(ModelOutput):
    r"""
    Output of [`HCAMForEmotionRecognition`]. D = dialogues, T = turns, C = labels, E = embedding width.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Training loss of the configuration's stage: `classification_loss + supcon_weight * contrastive_loss`.
        classification_loss (`torch.FloatTensor` of shape `()`, *optional*):
            Cross-entropy (or focal loss) of the stage's heads, averaged over heads.
        contrastive_loss (`torch.FloatTensor` of shape `()`, *optional*):
            Supervised contrastive loss of the stage-I utterance embeddings (stage 1 only).
        logits (`torch.FloatTensor` of shape `(D, T, C)`):
            The test-time ensemble: the log of the mean softmax of the heads in `config.ensemble_stages`.
        audio_utterance_logits, text_utterance_logits (`torch.FloatTensor` of shape `(D, T, C)`, *optional*):
            Stage-I predictions per modality.
        audio_context_logits, text_context_logits (`torch.FloatTensor` of shape `(D, T, C)`, *optional*):
            Stage-II predictions per modality.
        fusion_logits (`torch.FloatTensor` of shape `(D, T, C)`, *optional*):
            Stage-III prediction.
        audio_embeddings, text_embeddings (`torch.FloatTensor` of shape `(D, T, E)`, *optional*):
            Stage-I utterance embeddings (zeros at padded turns).
        audio_context_embeddings, text_context_embeddings (`torch.FloatTensor` of shape `(D, T, E)`, *optional*):
            Stage-II context embeddings.
        audio_context_attentions, text_context_attentions (`torch.FloatTensor` of shape `(D, heads, T, T)`, *optional*):
            Stage-II self-attention weights over turns (row = attending turn; each row sums to 1), returned with
            `output_attentions=True`. With `past_turns`, `(1, heads, T, past + T)`: the new turns over every turn.
        past_turns ([`HCAMTurnCache`], *optional*):
            With `use_cache=True` (a causal model): what the next call needs of every turn so far.
    """

    loss: torch.FloatTensor | None = None
    classification_loss: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    audio_utterance_logits: torch.FloatTensor | None = None
    text_utterance_logits: torch.FloatTensor | None = None
    audio_context_logits: torch.FloatTensor | None = None
    text_context_logits: torch.FloatTensor | None = None
    fusion_logits: torch.FloatTensor | None = None
    audio_embeddings: torch.FloatTensor | None = None
    text_embeddings: torch.FloatTensor | None = None
    audio_context_embeddings: torch.FloatTensor | None = None
    text_context_embeddings: torch.FloatTensor | None = None
    audio_context_attentions: torch.FloatTensor | None = None
    text_context_attentions: torch.FloatTensor | None = None
    past_turns: "HCAMTurnCache | None" = None

    def head_logits(self, head):
        """The logits of one of `config.output_heads()`: "ensemble" (the model's prediction, `logits`) or a stage head
        ("audio_utterance", "text_context", "fusion", ...)."""
        return self.logits if head == ENSEMBLE else self[f"{head}_logits"]


@dataclass
class HCAMTurnCache:
    r"""
    What a causal HCAM (`config.context="causal"`) keeps of one conversation's turns so far, so that the next turns are
    predicted without running anything again for the earlier ones: transformers' `past_key_values`, for turns. Pass it
    back as `past_turns` with the next turns' inputs; `HCAMConversationStream` does this for you.

    Args:
        speaker_ids (`torch.LongTensor` of shape `(1, t)`, *optional*):
            Speaker id of every turn so far; `None` = the conversation runs without speaker masks.
        context (`dict[str, tuple]`):
            Per modality, stage II's GRU state `(1, 1, E)` after the last turn and its self-attention's projected keys
            and values `(1, heads, t, head_dim)` of every turn so far.
        fusion (`tuple`, *optional*):
            Stage III's four attentions' (audio to text, text to audio, audio self, text self) projected keys and
            values of every turn so far.
    """

    speaker_ids: torch.LongTensor | None = None
    context: dict = field(default_factory=dict)
    fusion: tuple | None = None
    num_turns: int = 0


class SupervisedContrastiveLoss(nn.Module):
    """Supervised contrastive loss (Khosla et al., 2020, the "L_out" form) over a batch of embeddings.

    Each anchor is pulled towards the other samples with its label and pushed from the rest. Anchors whose label
    occurs once in the batch have no positive and are left out; a batch without any positive pair gives 0.
    """

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.temperature = temperature

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """
        Args:
            embeddings (`torch.Tensor` of shape `(N, E)`): one embedding per sample (normalised here).
            labels (`torch.Tensor` of shape `(N,)`): integer labels.
        """
        features = F.normalize(embeddings.float(), dim=-1)
        similarity = features @ features.T / self.temperature
        not_self = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positives = (labels[:, None] == labels[None, :]) & not_self
        # log-softmax over every other sample; the diagonal is excluded from the denominator
        similarity = similarity.masked_fill(~not_self, float("-inf"))
        log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
        positive_counts = positives.sum(1)
        has_positive = positive_counts > 0
        if not has_positive.any():
            return embeddings.sum() * 0.0  # keeps the graph connected for DDP
        mean_log_prob_positive = log_prob.masked_fill(~positives, 0.0).sum(1)[has_positive] / positive_counts[has_positive]
        return -mean_log_prob_positive.mean()


def focal_cross_entropy(logits, labels, gamma=0.0, class_weights=None):
    """Cross-entropy when `gamma == 0`, otherwise the focal loss of Lin et al. (2017); labels -100 are ignored."""
    valid = labels != -100
    if not valid.any():
        return logits.sum() * 0.0
    logits, labels = logits[valid].float(), labels[valid]
    log_probs = F.log_softmax(logits, dim=-1)
    log_p_true = log_probs.gather(1, labels[:, None]).squeeze(1)
    losses = -log_p_true if gamma == 0 else -((1 - log_p_true.exp()) ** gamma) * log_p_true
    if class_weights is None:
        return losses.mean()
    weights = class_weights[labels]
    return (losses * weights).sum() / weights.sum()


class TurnMask:
    """An attention mask over turns that is built a block of query turns at a time, so that a conversation of T turns
    never holds a T x T mask: `rows(start, stop)` is the boolean mask `(D, 1 or heads, stop - start, T_key)` of query
    turns `start..stop-1` (counted from the first query). `HCAMAttention` takes it or a mask tensor.

    Args:
        build: `build(start, stop)` gives those rows.
    """

    def __init__(self, build):
        self.build = build

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return self.build(start, stop)


class HCAMAttention(nn.Module):
    """Multi-head attention whose head width is `ceil(embed_dim / num_heads)`, so any width works with 3 heads.

    `attention_mask` is boolean, `True` = may attend, of shape `(D, 1 or heads, T_query, T_key)`, or a `TurnMask`.
    More than `ATTENTION_QUERY_BLOCK` queries attend a block at a time (not while exporting, nor when the weights are
    asked for, which are T_query x T_key anyway).
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, key_value_dim=None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = math.ceil(embed_dim / num_heads)
        inner_dim = num_heads * self.head_dim
        key_value_dim = key_value_dim or embed_dim
        self.q_proj = nn.Linear(embed_dim, inner_dim)
        self.k_proj = nn.Linear(key_value_dim, inner_dim)
        self.v_proj = nn.Linear(key_value_dim, inner_dim)
        self.out_proj = nn.Linear(inner_dim, embed_dim)
        self.dropout = dropout

    def forward(self, query, key_value, attention_mask, output_attentions=False, past=None):
        """`(attended values, weights, (keys, values))`: the weights `(D, heads, T_query, T_key)` with
        `output_attentions` (else None); the projected keys and values of every turn attended to, `past`'s (a causal
        model going on turn by turn) followed by `key_value`'s own, so that the next call projects only its new turns."""
        batch, query_len, _ = query.shape

        def split_heads(x):
            return x.view(batch, x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = split_heads(self.q_proj(query)), split_heads(self.k_proj(key_value)), split_heads(self.v_proj(key_value))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        def mask_rows(start, stop):
            if isinstance(attention_mask, TurnMask):
                return attention_mask.rows(start, stop)
            return attention_mask if (start, stop) == (0, query_len) else attention_mask[..., start:stop, :]

        if output_attentions:  # the same computation as SDPA's math path, keeping the weights
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
            weights = scores.masked_fill(~mask_rows(0, query_len), float("-inf")).softmax(-1)
            attended = F.dropout(weights, self.dropout, self.training) @ v
            return self.out_proj(attended.transpose(1, 2).reshape(batch, query_len, -1)), weights, (k, v)
        # (checked first: an exported graph keeps the number of turns symbolic, and has no blocks)
        if torch.compiler.is_compiling() or query_len <= ATTENTION_QUERY_BLOCK:
            blocks = [(0, query_len)]
        else:
            blocks = [(start, min(start + ATTENTION_QUERY_BLOCK, query_len))
                      for start in range(0, query_len, ATTENTION_QUERY_BLOCK)]
        attended = torch.cat([F.scaled_dot_product_attention(
            q[:, :, start:stop], k, v, attn_mask=mask_rows(start, stop), dropout_p=self.dropout if self.training else 0.0
        ) for start, stop in blocks], dim=2)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, query_len, -1)), None, (k, v)


class HCAMAttentionPooling(nn.Module):
    """Structured self-attention pooling (Lin et al., 2017): one attention distribution over frames per head, the
    heads' weighted sums concatenated and projected back to the input width."""

    def __init__(self, hidden_size, num_heads):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, num_heads))
        self.projection = nn.Linear(num_heads * hidden_size, hidden_size)

    def forward(self, hidden_states, mask):
        scores = self.score(hidden_states).masked_fill(~mask[..., None], float("-inf"))
        weights = scores.softmax(dim=1)  # (N, frames, heads)
        pooled = torch.einsum("nfh,nfd->nhd", weights, hidden_states)
        return torch.tanh(self.projection(pooled.flatten(1)))


def reverse_padded(sequences, lengths):
    """Reverse the first `lengths[i]` steps of each sequence `i` of `sequences` `(N, T, E)`; padding stays behind."""
    positions = torch.arange(sequences.shape[1], device=sequences.device)
    index = lengths[:, None] - 1 - positions[None, :]
    index = torch.where(index >= 0, index, positions[None, :])
    return sequences.gather(1, index[..., None].expand(-1, -1, sequences.shape[2]))


def run_bigru(gru, inputs, lengths):
    """A bi-GRU over left-aligned padded sequences; padded steps give zeros and never touch real ones.

    When gradients flow on CPU, each direction runs as a one-directional GRU over the padded batch, the backward one
    over every sequence reversed within its length: real steps come first in both, so the padding after them cannot
    reach them. That is the packed bi-GRU's result without packing, whose per-step slicing makes the CPU backward
    pass twice as slow. Without gradients (inference, frozen stages) packing is faster: it skips the padded steps.
    """
    needs_gradient = torch.is_grad_enabled() and (inputs.requires_grad or gru.weight_hh_l0.requires_grad)
    if inputs.device.type != "cpu" or not needs_gradient:
        packed = nn.utils.rnn.pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, _ = gru(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=inputs.shape[1])
        return outputs
    lengths = lengths.to(inputs.device)
    weights = gru._flat_weights
    per_direction = len(weights) // 2
    initial = inputs.new_zeros(1, inputs.shape[0], gru.hidden_size)
    settings = (gru.bias, 1, 0.0, gru.training, False, True)  # bias, layers, dropout, train, bidirectional, batch_first
    forward, _ = torch.gru(inputs, initial, weights[:per_direction], *settings)
    backward, _ = torch.gru(reverse_padded(inputs, lengths), initial, weights[per_direction:], *settings)
    outputs = torch.cat([forward, reverse_padded(backward, lengths)], dim=-1)
    real = torch.arange(inputs.shape[1], device=inputs.device)[None, :] < lengths[:, None]
    return outputs * real[..., None]


def run_gru(gru, inputs, lengths):
    """`gru` over left-aligned padded sequences `(N, T, E)`, zeros at padded steps: `run_bigru` for a bi-GRU; a
    forward-only GRU (causal stage II) reads the real steps before the padding, so it runs on the padded batch as is.
    A stand-in that `takes_lengths` is called with them: hcam-export's (`hcam.trainer.export.ExportableGRU`), since
    torch.export can trace neither packing nor a GRU over a dynamic number of steps."""
    if getattr(gru, "takes_lengths", False):
        return gru(inputs, lengths)
    if gru.bidirectional:
        return run_bigru(gru, inputs, lengths)
    outputs, _ = gru(inputs)
    real = torch.arange(inputs.shape[1], device=inputs.device)[None, :] < lengths.to(inputs.device)[:, None]
    return outputs * real[..., None]


# Speech encoders HCAM reads raw 16 kHz-style waveforms with: AutoModel's class for each of these reads `input_values`
# with an attention mask and maps samples to frames (tested: tests/test_encoders.py). Others of the same kind work too.
SPEECH_ENCODER_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer")


def build_speech_encoder(encoder_config: dict) -> nn.Module:
    """The speech encoder that `AutoModel` builds from `encoder_config` (a config dict with `model_type`), randomly
    initialised: wav2vec2, HuBERT, WavLM, data2vec-audio, wav2vec2-conformer, or any model that reads raw waveforms
    (`input_values`) with an attention mask."""
    config = AutoConfig.for_model(**encoder_config)
    if config.model_type == "whisper":
        raise ValueError(
            "Whisper's encoder cannot be HCAM's audio encoder: it reads log-mel features in fixed 30 s windows "
            "(3000 frames, refused otherwise) and ignores attention masks, so every utterance would cost a 30 s window "
            "and its padding would change its features. Use one of " + ", ".join(SPEECH_ENCODER_TYPES) + "."
        )
    encoder = AutoModel.from_config(config)
    if encoder.main_input_name != "input_values" or not hasattr(encoder, "_get_feature_vector_attention_mask"):
        raise ValueError(
            f"audio encoder of type {config.model_type!r} ({type(encoder).__name__}) does not read raw waveforms "
            f"(`input_values` with an attention mask); use a speech encoder such as {', '.join(SPEECH_ENCODER_TYPES)}."
        )
    return encoder


def load_encoder_weights(encoder: nn.Module, name_or_path: str) -> nn.Module:
    """Copy the pretrained weights of `name_or_path` into `encoder` (built from the nested config), strictly.

    The checkpoint is read with `AutoModel` (its own architecture); a weight it lacks, or one whose shape differs, is
    an error, and so is any parameter name that differs between it and `encoder` (e.g. WavLM weights for a wav2vec2
    config). Heads of the checkpoint's own task outside the base model (a CTC head, the pre-training quantizer) are
    dropped, as `AutoModel` always does, and logged.
    """
    kwargs = {"output_loading_info": True}
    try:  # the same architecture HCAM builds: text encoders without their (unused) pooler
        pretrained, info = AutoModel.from_pretrained(name_or_path, add_pooling_layer=False, **kwargs)
    except TypeError:
        pretrained, info = AutoModel.from_pretrained(name_or_path, **kwargs)
    if info.get("missing_keys") or info.get("mismatched_keys"):
        found = [f"no weights for {sorted(info['missing_keys'])[:8]}"] if info.get("missing_keys") else []
        if info.get("mismatched_keys"):
            found.append(f"weights of another shape than its config says: {sorted(map(str, info['mismatched_keys']))[:8]}")
        raise ValueError(f"the checkpoint {name_or_path} is incomplete: " + "; ".join(found) + ". They would stay "
                         "random. Copy or download it again, or save the complete model there.")
    problems = []
    ours, theirs = encoder.state_dict(), pretrained.state_dict()
    missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing:
        problems.append(f"HCAM's {type(encoder).__name__} has parameters the checkpoint's {type(pretrained).__name__} "
                        f"lacks: {missing[:8]}")
    if unexpected:
        problems.append(f"the checkpoint's {type(pretrained).__name__} has parameters HCAM's "
                        f"{type(encoder).__name__} lacks: {unexpected[:8]}")
    shapes = sorted(k for k in set(ours) & set(theirs) if ours[k].shape != theirs[k].shape)
    if shapes:
        problems.append(f"parameters of another shape: {shapes[:8]}")
    if problems:
        raise ValueError(
            f"cannot load the encoder weights of {name_or_path}: " + "; ".join(problems) + ". Build the HCAM config "
            "with HCAMConfig.from_encoders(...) from this same checkpoint, so that its nested encoder config matches."
        )
    if info.get("unexpected_keys"):
        logger.info("%s: checkpoint weights outside the base model left out: %s", name_or_path,
                    sorted(info["unexpected_keys"])[:8])
    encoder.load_state_dict(theirs, strict=True)
    return encoder


class HCAMUtteranceEncoder(nn.Module):
    """Stage I for one modality: encoder → bi-GRU → self-attention pooling → classifier.

    With `config.freeze_<modality>_encoder` the encoder never trains (no gradients, always in eval mode), so its
    hidden states can be computed once and cached (`forward_features(..., precomputed=True)` takes them).
    """

    def __init__(self, config: HCAMConfig, modality: str):
        super().__init__()
        self.modality = modality
        if modality == "audio":
            self.encoder = build_speech_encoder(config.audio_encoder_config)
        else:
            if config.text_encoder_config is None:
                raise ValueError(
                    "HCAMConfig.text_encoder_config is missing: build the config with "
                    "HCAMConfig.from_encoders(text_encoder=...) so the text encoder's architecture is known."
                )
            encoder_config = AutoConfig.for_model(**config.text_encoder_config)
            try:  # the pooler is never used: leaving it out keeps every parameter trainable
                self.encoder = AutoModel.from_config(encoder_config, add_pooling_layer=False)
            except TypeError:
                self.encoder = AutoModel.from_config(encoder_config)
        encoder_width = self.encoder.config.hidden_size
        num_layers = self.encoder.config.num_hidden_layers + 1  # + the embedding output
        self.use_weighted_layer_sum = config.weighted_layer_sum(modality)
        if self.use_weighted_layer_sum:
            self.layer_weights = nn.Parameter(torch.zeros(num_layers))
        self.gru = nn.GRU(encoder_width, config.gru_hidden_size, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(config.dropout)
        self.pooling = HCAMAttentionPooling(config.utterance_embedding_size, config.num_attention_heads)
        self.classifier = nn.Linear(config.utterance_embedding_size, config.num_labels)
        self.chunk_size = config.encoder_chunk_size
        self.frozen = bool(getattr(config, f"freeze_{modality}_encoder", False))
        if self.frozen:
            self.encoder.requires_grad_(False)

    def freeze_feature_encoder(self):
        """Fix a speech encoder's convolutional feature encoder (every wav2vec2-family model has one)."""
        self.encoder.feature_extractor._freeze_parameters()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:  # no dropout: a frozen encoder always gives the hidden states its cache holds
            self.encoder.eval()
        return self

    def encoder_hidden_states(self, values, mask):
        """What stage I takes from the encoder, and what the frozen-encoder cache stores.

        Returns `hidden` `(N, frames, layers, width)`, every layer with the embedding output first, when
        `use_weighted_layer_sum` is on, else the last layer `(N, frames, width)`; and the frame mask `(N, frames)`.
        """
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            if self.modality == "audio":
                outputs = self.encoder(values, attention_mask=mask, output_hidden_states=self.use_weighted_layer_sum)
                frame_mask = self.encoder._get_feature_vector_attention_mask(outputs.last_hidden_state.shape[1], mask)
            else:
                outputs = self.encoder(input_ids=values, attention_mask=mask,
                                       output_hidden_states=self.use_weighted_layer_sum)
                frame_mask = mask
        if self.use_weighted_layer_sum:
            # the last entry as the encoder returns it: wav2vec2's stable-layer-norm variant applies its final
            # layer norm only to last_hidden_state
            return torch.stack(outputs.hidden_states[:-1] + (outputs.last_hidden_state,), dim=2), frame_mask.bool()
        return outputs.last_hidden_state, frame_mask.bool()

    def _encode(self, values, mask, precomputed=False):
        if precomputed:  # hidden states as `encoder_hidden_states` gives them (e.g. fp16 from the cache)
            expected = 4 if self.use_weighted_layer_sum else 3
            if values.dim() != expected or values.shape[-1] != self.gru.input_size or (
                    self.use_weighted_layer_sum and values.shape[2] != len(self.layer_weights)):
                layout = "(N, frames, layers, width)" if self.use_weighted_layer_sum else "(N, frames, width)"
                raise ValueError(f"precomputed {self.modality} hidden states must be {layout} with width "
                                 f"{self.gru.input_size}, got {tuple(values.shape)}: were they cached with another "
                                 "encoder or use_weighted_layer_sum setting?")
            hidden, frame_mask = values.to(self.gru.weight_ih_l0.dtype), mask.bool()
        else:
            hidden, frame_mask = self.encoder_hidden_states(values, mask)
        if self.use_weighted_layer_sum:
            hidden = (self.layer_weights.softmax(0)[:, None] * hidden).sum(2)
        return hidden, frame_mask

    def forward_features(self, values, mask, precomputed=False):
        """Utterance embeddings `(N, E)` for `N` utterances given as padded `values` `(N, length)` and `mask`, or,
        with `precomputed=True`, as the encoder's hidden states `(N, frames, ...)` and frame mask `(N, frames)`."""
        embeddings = []
        for start in range(0, len(values), self.chunk_size):
            chunk_mask = mask[start : start + self.chunk_size]
            # Cut the chunk's common padding: utterances batched with longer ones cost only their own length.
            length = int(chunk_mask.sum(1).max())
            chunk_values, chunk_mask = values[start : start + self.chunk_size, :length], chunk_mask[:, :length]
            hidden, frame_mask = self._encode(chunk_values, chunk_mask, precomputed)
            hidden = run_bigru(self.gru, hidden, frame_mask.sum(1))
            embeddings.append(self.pooling(self.dropout(hidden), frame_mask))
        return torch.cat(embeddings)

    def forward_head(self, embeddings):
        return self.classifier(self.dropout(embeddings))


class HCAMContextEncoder(nn.Module):
    """Stage II for one modality: bi-GRU over a dialogue's utterance embeddings → self-attention → classifier
    (the bi-GRU alone with `config.context_self_attention=False`). With `config.context="causal"` the GRU runs
    forward only, `2 * gru_hidden_size` wide, and the attention mask (built by the model) hides later turns."""

    def __init__(self, config: HCAMConfig):
        super().__init__()
        width = config.utterance_embedding_size
        if config.context == "causal":
            self.gru = nn.GRU(width, width, batch_first=True)
        else:
            self.gru = nn.GRU(width, config.gru_hidden_size, batch_first=True, bidirectional=True)
        self.has_attention = config.context_self_attention
        if self.has_attention:
            self.attention = HCAMAttention(width, config.num_attention_heads, dropout=config.dropout)
            self.layer_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(width, config.num_labels)

    def forward_features(self, embeddings, lengths, attention_mask, output_attentions=False, past=None,
                         use_cache=False):
        """`(context embeddings (D, T, E), attention weights, new past)`: the weights with `output_attentions` (else
        None); with `use_cache` (a causal encoder going on from `past`, one dialogue whose new turns are all real), the
        updated `(GRU state, the attention's projected keys and values)` (else None)."""
        weights = keys = None
        if use_cache:
            state, keys = past if past is not None else (None, None)
            hidden, state = self.gru(embeddings, state)
            hidden = self.dropout(hidden)
        else:
            hidden = self.dropout(run_gru(self.gru, embeddings, lengths))
        if not self.has_attention:
            if output_attentions:
                raise ValueError("This model's stage II has no self-attention (config.context_self_attention=False): "
                                 "there are no attention weights to return; drop output_attentions.")
            context = hidden
        else:
            attended, weights, keys = self.attention(hidden, hidden, attention_mask, output_attentions, past=keys)
            context = self.layer_norm(hidden + attended)
        return context, weights, (state, keys) if use_cache else None

    def forward_head(self, context):
        return self.classifier(self.dropout(context))


class HCAMFusion(nn.Module):
    """Stage III: co-attention in both directions (audio queries text, text queries audio), self-attention on
    each result, concatenation and a fully connected classifier. With `config.fusion_type="concat"` the projected
    context embeddings are concatenated directly (no attention)."""

    def __init__(self, config: HCAMConfig):
        super().__init__()
        width, heads = config.fusion_hidden_size, config.num_attention_heads
        self.audio_projection = nn.Linear(config.utterance_embedding_size, width)
        self.text_projection = nn.Linear(config.utterance_embedding_size, width)
        self.co_attention = config.fusion_type == "co-attention"
        if self.co_attention:
            self.audio_to_text = HCAMAttention(width, heads, dropout=config.dropout)
            self.text_to_audio = HCAMAttention(width, heads, dropout=config.dropout)
            self.audio_self_attention = HCAMAttention(width, heads, dropout=config.dropout)
            self.text_self_attention = HCAMAttention(width, heads, dropout=config.dropout)
            self.norms = nn.ModuleList([nn.LayerNorm(width) for _ in range(4)])
        self.dropout = nn.Dropout(config.dropout)
        self.fully_connected = nn.Linear(2 * width, width)
        self.classifier = nn.Linear(width, config.num_labels)

    def forward_features(self, audio_context, text_context, attention_mask, past=None, use_cache=False):
        """`(fused embeddings (D, T, W), new past)`: with `use_cache` (a causal model, one dialogue), the projected keys
        and values of every turn so far for each of the four attentions (`past` holds the earlier turns'), so the new
        turns attend to the earlier ones without projecting them again (else None). `attention_mask` is
        `(D, 1, T, keys)`."""
        audio = self.audio_projection(self.dropout(audio_context))
        text = self.text_projection(self.dropout(text_context))
        if not self.co_attention:
            return torch.relu(self.fully_connected(self.dropout(torch.cat([audio, text], dim=-1)))), None
        past = past or (None,) * 4
        caches = []

        def attend(attention, query, key_value, index):
            attended, _, keys = attention(query, key_value, attention_mask, past=past[index])
            caches.append(keys)
            return attended

        audio_attended = self.norms[0](audio + attend(self.audio_to_text, audio, text, 0))
        text_attended = self.norms[1](text + attend(self.text_to_audio, text, audio, 1))
        audio_attended = self.norms[2](audio_attended + attend(self.audio_self_attention, audio_attended,
                                                               audio_attended, 2))
        text_attended = self.norms[3](text_attended + attend(self.text_self_attention, text_attended, text_attended, 3))
        fused = torch.relu(self.fully_connected(self.dropout(torch.cat([audio_attended, text_attended], dim=-1))))
        return fused, tuple(caches) if use_cache else None

    def forward_head(self, fused):
        return self.classifier(self.dropout(fused))


class HCAMPreTrainedModel(PreTrainedModel):
    config_class = HCAMConfig
    config: HCAMConfig
    base_model_prefix = "hcam"
    main_input_name = "input_values"
    # forward returns a mean loss: the Trainer must not pass num_items_in_batch or rescale it
    accepts_loss_kwargs = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained` that reads safetensors only.

        Pickled weights (`pytorch_model.bin`, `*.pt`) can run code when they are loaded, so they are refused without
        being opened; a truncated or corrupt `model.safetensors` raises an `OSError` naming the model and the file.
        """
        if kwargs.get("use_safetensors") is False:
            raise ValueError("HCAM loads safetensors weights only (unpickling a checkpoint can run code): drop "
                             "use_safetensors=False.")
        kwargs["use_safetensors"] = True
        check_local_folder(pretrained_model_name_or_path)
        source = pretrained_model_name_or_path
        source = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        folder = os.path.join(source, kwargs.get("subfolder") or "") if source else None
        if folder and os.path.isdir(folder):
            files = os.listdir(folder)
            pickled = sorted(f for f in files if f.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl")))
            if pickled and not any(f.endswith(".safetensors") for f in files):
                raise OSError(
                    f"{folder} holds pickled weights only ({', '.join(pickled)}); HCAM reads safetensors only, because "
                    "loading a pickle can run arbitrary code. If you trust the file, convert it once with "
                    "`model.save_pretrained(folder)` from a session that loaded it, which writes model.safetensors."
                )
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except Exception as error:
            if type(error).__name__ != "SafetensorError":
                raise
            local = folder and os.path.isdir(folder)
            where = os.path.join(folder, "model.safetensors") if local else "model.safetensors"
            raise OSError(
                f"cannot read the weights of {source or 'the model'}: {where} is truncated or corrupt ({error}). "
                "Copy or download it again (an interrupted copy or push leaves a partial file)."
            ) from error

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, nn.GRU):
            for name, param in module.named_parameters():
                if name.startswith("weight_hh"):
                    init.orthogonal_(param)
                elif name.startswith("weight_ih"):
                    init.xavier_uniform_(param)
                else:
                    init.zeros_(param)
        elif isinstance(module, HCAMUtteranceEncoder) and module.use_weighted_layer_sum:
            init.zeros_(module.layer_weights)


class HCAMForEmotionRecognition(HCAMPreTrainedModel):
    r"""
    HCAM with every stage the configuration enables: `config.num_stages` 1 has the utterance encoders, 2 adds the
    dialogue context encoders, 3 adds the co-attention fusion. `logits` is the test-time ensemble.
    """

    def __init__(self, config: HCAMConfig):
        super().__init__(config)
        self.utterance_encoders = nn.ModuleDict({m: HCAMUtteranceEncoder(config, m) for m in config.modalities})
        if config.num_stages >= 2:
            self.context_encoders = nn.ModuleDict({m: HCAMContextEncoder(config) for m in config.modalities})
        if config.num_stages >= 3:
            self.fusion = HCAMFusion(config)
        self.supcon = SupervisedContrastiveLoss(config.supcon_temperature)
        self._frozen_below_stage = 1
        if "audio" in config.modalities and config.audio_encoder_name_or_path and config.freeze_feature_encoder:
            self.utterance_encoders["audio"].freeze_feature_encoder()
        self.post_init()

    # ----- freezing ---------------------------------------------------------------------------------------------
    def stage_modules(self, stage: int) -> list:
        """The modules that belong to `stage`."""
        if stage == 1:
            return list(self.utterance_encoders.values())
        if stage == 2:
            return list(self.context_encoders.values()) if self.config.num_stages >= 2 else []
        return [self.fusion] if self.config.num_stages >= 3 else []

    def freeze_stages_below(self, stage: int):
        """Freeze every stage below `stage`: no gradients, and eval mode (no dropout) even under `model.train()`."""
        self._frozen_below_stage = stage
        for lower in range(1, stage):
            for module in self.stage_modules(lower):
                module.requires_grad_(False)
        return self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for lower in range(1, self._frozen_below_stage):
            for module in self.stage_modules(lower):
                module.eval()
        return self

    # ----- construction helpers ---------------------------------------------------------------------------------
    def load_pretrained_encoders(self, audio_encoder_path=None, text_encoder_path=None):
        """Load pretrained encoder weights (once, when stage I starts from scratch), strictly (`load_encoder_weights`:
        a missing, unexpected or reshaped parameter is an error naming it). Paths default to the config's encoder
        names; an audio encoder without a name stays randomly initialised."""
        paths = {"audio": audio_encoder_path or self.config.audio_encoder_name_or_path,
                 "text": text_encoder_path or self.config.text_encoder_name_or_path}
        for modality in self.config.modalities:
            if paths[modality]:
                load_encoder_weights(self.utterance_encoders[modality].encoder, paths[modality])
        if "audio" in self.config.modalities and paths["audio"] and self.config.freeze_feature_encoder:
            self.utterance_encoders["audio"].freeze_feature_encoder()
        return self

    @classmethod
    def from_unimodal(cls, audio_model: "HCAMForEmotionRecognition", text_model: "HCAMForEmotionRecognition",
                      **config_overrides):
        """A stage-3 model made of an audio and a text stage-2 model (their weights are copied, fusion is new).

        Two stage-1 models give their utterance encoders only (context encoders and fusion new): the start of
        non-hierarchical training (`joint_training`). `config_overrides` are set on the new config."""
        stages = {model.config.num_stages for model in (audio_model, text_model)}
        for name, model, modality in (("audio", audio_model, "audio"), ("text", text_model, "text")):
            if modality not in model.config.modalities or model.config.num_stages == 3 or len(stages) > 1:
                raise ValueError(f"The {name} model must be a stage-2 {modality} model (or both stage-1 models); it "
                                 f"has modalities {model.config.modalities} and {model.config.num_stages} stage(s).")
        if audio_model.config.context != text_model.config.context:
            raise ValueError(f"The audio and text stage-2 models read their context differently (audio "
                             f"{audio_model.config.context!r}, text {text_model.config.context!r}): stage 3 fuses two "
                             "models of the same direction; train both stage-2 models with the same --context.")
        if audio_model.config.label2id != text_model.config.label2id:
            raise ValueError(f"The audio and text models have different labels: {audio_model.config.label2id} vs "
                             f"{text_model.config.label2id}.")
        config_dict = audio_model.config.to_dict()
        for key in ("text_encoder_name_or_path", "text_encoder_config", "max_text_tokens", "freeze_text_encoder"):
            config_dict[key] = getattr(text_model.config, key)
        config_dict.update(modalities=["audio", "text"], num_stages=3, use_weighted_layer_sum=[
            m for m, source in (("audio", audio_model), ("text", text_model)) if source.config.weighted_layer_sum(m)])
        for key in ("model_type", "transformers_version", "architectures", "auto_map"):
            config_dict.pop(key, None)
        model = cls(HCAMConfig(**{**config_dict, **config_overrides}))
        for modality, source in (("audio", audio_model), ("text", text_model)):
            model.utterance_encoders[modality].load_state_dict(source.utterance_encoders[modality].state_dict())
            if source.config.num_stages == 2:
                model.context_encoders[modality].load_state_dict(source.context_encoders[modality].state_dict())
        return model

    # ----- forward ----------------------------------------------------------------------------------------------
    @staticmethod
    def _turn_lengths(utterance_mask):
        lengths = utterance_mask.sum(1)
        positions = torch.arange(utterance_mask.shape[1], device=utterance_mask.device)
        if not torch.equal(utterance_mask.bool(), positions[None, :] < lengths[:, None]):
            raise ValueError("`utterance_mask` must mark each dialogue's turns as a prefix (1s, then 0s for padding).")
        if (lengths == 0).any():
            raise ValueError(f"Dialogues {torch.nonzero(lengths == 0).flatten().tolist()} have no turns.")
        return lengths

    def _check_inputs(self, tensors, labels):
        """Clear errors for inputs of the wrong shape, type or label range, before torch fails somewhere deep inside.

        `tensors` maps argument names to tensors (or None); all share the leading (dialogues, turns) dimensions.
        """
        given = {name: t for name, t in tensors.items() if t is not None}
        expected_dims = {"utterance_mask": 2, "speaker_ids": 2, "labels": 2}
        for modality, values in (("audio", "input_values"), ("text", "input_ids")):
            hidden = f"{modality}_hidden_states"
            if hidden in given:  # (D, T, frames, [layers,] width); the encoder's checks come in forward_features
                expected_dims[hidden] = given[hidden].dim() if given[hidden].dim() in (4, 5) else 4
                if values in given:
                    raise ValueError(f"pass `{values}` or `{hidden}` (the {modality} encoder's precomputed output), "
                                     "not both.")
                mask = "attention_mask" if modality == "audio" else "text_attention_mask"
                if mask in given and tuple(given[mask].shape) != tuple(given[hidden].shape[:3]):
                    raise ValueError(f"`{mask}` has shape {tuple(given[mask].shape)} but `{hidden}` has "
                                     f"{tuple(given[hidden].shape)}: with hidden states it marks their frames, "
                                     "(dialogues, turns, frames).")
        for name, tensor in given.items():
            dims = expected_dims.get(name, 3)
            if tensor.dim() != dims:
                layout = "(dialogues, turns)" if dims == 2 else "(dialogues, turns, ...)"
                raise ValueError(f"`{name}` must have shape {layout}, got {tuple(tensor.shape)}. Use HCAMProcessor, or "
                                 "add the batch dimension (a single dialogue is a batch of 1).")
        leading = {name: tuple(t.shape[:2]) for name, t in given.items()}
        if len(set(leading.values())) > 1:
            raise ValueError(f"The inputs disagree on (dialogues, turns): {leading}. Every tensor must cover the same "
                             "dialogues and turns.")
        for values, mask in (("input_values", "attention_mask"), ("input_ids", "text_attention_mask")):
            if values in given and mask in given and given[values].shape != given[mask].shape:
                raise ValueError(f"`{mask}` has shape {tuple(given[mask].shape)} but `{values}` has "
                                 f"{tuple(given[values].shape)}: they must match.")
        if "input_ids" in given and given["input_ids"].is_floating_point():
            raise ValueError("`input_ids` must hold integer token ids, got a floating-point tensor.")
        width = self.config.utterance_embedding_size
        for name in ("audio_embeddings", "text_embeddings"):
            if name in given and given[name].shape[-1] != width:
                raise ValueError(f"`{name}` must be {width} wide (2 x gru_hidden_size), got {given[name].shape[-1]}: "
                                 "were they computed by a model with another configuration?")
        if labels is not None:
            bad = (labels != -100) & ((labels < 0) | (labels >= self.config.num_labels))
            if "utterance_mask" in given:  # padded turns are ignored anyway
                bad &= given["utterance_mask"].bool()
            if bad.any():
                positions = [tuple(p) for p in torch.nonzero(bad)[:5].tolist()]
                raise ValueError(f"labels {labels[bad][:5].tolist()} at (dialogue, turn) {positions} are outside this "
                                 f"model's label ids 0..{self.config.num_labels - 1} ({list(self.config.label2id)}); "
                                 "use -100 to ignore a turn.")

    def _default_utterance_mask(self, *tensors):
        reference = next(t for t in tensors if t is not None)
        return torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)

    def get_utterance_embeddings(self, input_values=None, attention_mask=None, input_ids=None,
                                 text_attention_mask=None, utterance_mask=None, modalities=None,
                                 audio_hidden_states=None, text_hidden_states=None, **unused):
        """Stage-I utterance embeddings per modality, each `(D, T, E)` with zeros at padded turns."""
        inputs = {"audio": (input_values, attention_mask), "text": (input_ids, text_attention_mask)}
        hidden_states = {"audio": audio_hidden_states, "text": text_hidden_states}
        if utterance_mask is None:
            utterance_mask = self._default_utterance_mask(input_values, input_ids, audio_hidden_states,
                                                          text_hidden_states)
        turns = utterance_mask.bool()
        embeddings = {}
        for modality in modalities or self.config.modalities:
            values, mask = inputs[modality]
            precomputed = hidden_states[modality] is not None
            if precomputed:  # the encoder's cached output; the mask marks its real frames
                values = hidden_states[modality]
            if values is None:
                raise ValueError(f"This model has the {modality} modality: pass its inputs "
                                 f"({'input_values' if modality == 'audio' else 'input_ids'}) or precomputed "
                                 f"`{modality}_embeddings`.")
            if mask is None:
                mask = torch.ones(values.shape[:3], dtype=torch.long, device=values.device)
            if turns.all():  # a view, not a copy of every sample (stage I batches one-turn dialogues)
                values, mask = values.flatten(0, 1), mask.flatten(0, 1)
            else:
                values, mask = values[turns], mask[turns]
            features = self.utterance_encoders[modality].forward_features(values, mask, precomputed)
            scattered = features.new_zeros(*turns.shape, features.shape[-1])
            scattered[turns] = features
            embeddings[modality] = scattered
        return embeddings

    def _attention_masks(self, utterance_mask, speaker_ids, first_query=0, last_query=None):
        """Turn-level boolean masks: `context` (D, heads, Q, T) with optional speaker masks, `plain` (D, 1, Q, T), for
        the queries `first_query`..`last_query`-1 (all turns by default; the new turns when a causal model goes on
        from its cache). A causal model's masks also hide every later turn."""
        turns = utterance_mask.bool()
        keys = torch.arange(turns.shape[1], device=turns.device)
        queries = keys[first_query:last_query]
        self_only = queries[:, None] == keys[None, :]
        # every turn may attend to itself, so no row is empty (padded rows attend only to themselves)
        plain = (turns[:, None, None, :] | self_only)
        if self.config.context == "causal":
            plain = plain & (keys[None, :] <= queries[:, None])
        if not self.config.use_speaker_masks or speaker_ids is None:
            return plain, plain
        same = speaker_ids[:, first_query:last_query, None] == speaker_ids[:, None, :]
        heads = [plain[:, 0]] + [plain[:, 0] & same, plain[:, 0] & ~same]
        heads = [heads[h % 3] for h in range(self.config.num_attention_heads)]
        context = torch.stack(heads, dim=1) | self_only
        return context, plain

    def _continued_inputs(self, past_turns, utterance_mask, speaker_ids, labels):
        """`use_cache` / `past_turns`: check that the model is causal and the inputs are one dialogue's new turns; the
        attention masks of the new turns (rows) over every turn so far (columns), and every turn's speaker ids."""
        if not self.config.is_causal:
            raise ValueError(
                "use_cache/past_turns continue a conversation turn by turn, which only a causal model can do: this "
                f"model's stages II/III look at later turns (config.context={self.config.context!r}). Train stages 2 "
                "and 3 with --context causal (HCAMConfig(context='causal')), or run the whole conversation at once."
            )
        if labels is not None:
            raise ValueError("use_cache/past_turns are for inference: pass labels without them (training runs whole "
                             "dialogues).")
        if utterance_mask.shape[0] != 1 or not utterance_mask.bool().all():
            raise ValueError(f"use_cache/past_turns take one dialogue's new turns, all real: got utterance_mask of "
                             f"shape {tuple(utterance_mask.shape)} with padding. Continue each conversation apart.")
        past = past_turns or HCAMTurnCache()
        if past.num_turns and (past.speaker_ids is None) != (speaker_ids is None):
            raise ValueError("speaker_ids must be given for every call of a conversation or for none: the earlier "
                             f"turns were run {'without' if past.speaker_ids is None else 'with'} speaker ids.")
        if speaker_ids is not None and past.speaker_ids is not None:
            speaker_ids = torch.cat([past.speaker_ids.to(speaker_ids.device), speaker_ids], dim=1)
        total = past.num_turns + utterance_mask.shape[1]
        context_mask, plain_mask = self._attention_masks(utterance_mask.new_ones(1, total), speaker_ids, past.num_turns)
        return past, speaker_ids, context_mask, plain_mask

    def forward(
        self,
        input_values: torch.FloatTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        text_attention_mask: torch.LongTensor | None = None,
        utterance_mask: torch.LongTensor | None = None,
        speaker_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        audio_embeddings: torch.FloatTensor | None = None,
        text_embeddings: torch.FloatTensor | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        audio_hidden_states: torch.FloatTensor | None = None,
        text_hidden_states: torch.FloatTensor | None = None,
        past_turns: HCAMTurnCache | None = None,
        use_cache: bool | None = None,
    ) -> HCAMOutput | tuple:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(D, T, samples)`, *optional*):
                Normalised 16 kHz audio per turn, zero-padded; from [`HCAMProcessor`].
            attention_mask (`torch.LongTensor` of shape `(D, T, samples)`, *optional*):
                1 for real audio samples, 0 for padding.
            input_ids (`torch.LongTensor` of shape `(D, T, tokens)`, *optional*):
                Token ids of each turn's transcript.
            text_attention_mask (`torch.LongTensor` of shape `(D, T, tokens)`, *optional*):
                1 for real tokens, 0 for padding.
            utterance_mask (`torch.LongTensor` of shape `(D, T)`, *optional*):
                1 for real turns, 0 for padded turns (a prefix per dialogue). Defaults to all turns real.
            speaker_ids (`torch.LongTensor` of shape `(D, T)`, *optional*):
                Speaker index per turn, used by the stage-II speaker masks.
            labels (`torch.LongTensor` of shape `(D, T)`, *optional*):
                Label ids; -100 is ignored. When given, `loss` is the loss of the model's last stage (`config.trained_heads()`).
            audio_embeddings, text_embeddings (`torch.FloatTensor` of shape `(D, T, E)`, *optional*):
                Precomputed stage-I embeddings; the encoder of that modality is then not run.
            audio_hidden_states, text_hidden_states (`torch.FloatTensor` of shape `(D, T, frames, [layers,] width)`, *optional*):
                The (frozen) encoder's precomputed output, as `HCAMUtteranceEncoder.encoder_hidden_states` gives it
                (every layer with `use_weighted_layer_sum`), instead of `input_values` / `input_ids`; then
                `attention_mask` / `text_attention_mask` `(D, T, frames)` mark the real frames. Stage I trains on
                these from the frozen-encoder cache.
            output_attentions (`bool`, *optional*):
                Also return the stage-II attention weights over turns (`{modality}_context_attentions`).
            past_turns ([`HCAMTurnCache`], *optional*):
                A causal model (`config.context="causal"`) going on with a conversation: the cache the previous call
                returned. The inputs are then the next turns of that one conversation (D = 1, every turn real, speaker
                ids continuing the earlier ones'), and the outputs are those turns' — equal to what the whole
                conversation at once gives for them.
            use_cache (`bool`, *optional*):
                Return `past_turns` for the next call (implied by passing `past_turns`).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self._check_inputs(dict(input_values=input_values, attention_mask=attention_mask, input_ids=input_ids,
                                text_attention_mask=text_attention_mask, utterance_mask=utterance_mask,
                                speaker_ids=speaker_ids, labels=labels, audio_embeddings=audio_embeddings,
                                text_embeddings=text_embeddings, audio_hidden_states=audio_hidden_states,
                                text_hidden_states=text_hidden_states), labels)
        precomputed = {"audio": audio_embeddings, "text": text_embeddings}
        if utterance_mask is None:
            utterance_mask = self._default_utterance_mask(input_values, input_ids, audio_embeddings, text_embeddings,
                                                          audio_hidden_states, text_hidden_states)
        lengths = self._turn_lengths(utterance_mask)
        turns = utterance_mask.bool()
        use_cache = bool(use_cache) or past_turns is not None
        if use_cache:
            past, all_speaker_ids, context_mask, plain_mask = self._continued_inputs(past_turns, utterance_mask,
                                                                                      speaker_ids, labels)
            cache = HCAMTurnCache(speaker_ids=all_speaker_ids, num_turns=past.num_turns + utterance_mask.shape[1])

        needs_encoding = [m for m in self.config.modalities if precomputed[m] is None]
        if needs_encoding:
            precomputed.update(self.get_utterance_embeddings(
                input_values=input_values, attention_mask=attention_mask, input_ids=input_ids,
                text_attention_mask=text_attention_mask, utterance_mask=utterance_mask, modalities=needs_encoding,
                audio_hidden_states=audio_hidden_states, text_hidden_states=text_hidden_states,
            ))

        output = {}
        for modality in self.config.modalities:
            embeddings = precomputed[modality]
            output[f"{modality}_embeddings"] = embeddings
            output[f"{modality}_utterance_logits"] = self.utterance_encoders[modality].forward_head(embeddings)

        if self.config.num_stages >= 2:
            if not use_cache:  # built a block of turns at a time (`TurnMask`)
                context_mask, plain_mask = (TurnMask(
                    lambda start, stop, which=which: self._attention_masks(utterance_mask, speaker_ids, start,
                                                                           stop)[which]) for which in (0, 1))
            for modality in self.config.modalities:
                encoder = self.context_encoders[modality]
                context, weights, new_past = encoder.forward_features(
                    output[f"{modality}_embeddings"], lengths, context_mask, output_attentions=bool(output_attentions),
                    past=past.context.get(modality) if use_cache else None, use_cache=use_cache)
                if use_cache:
                    cache.context[modality] = new_past
                if output_attentions:
                    output[f"{modality}_context_attentions"] = weights
                output[f"{modality}_context_embeddings"] = context
                output[f"{modality}_context_logits"] = encoder.forward_head(context)
        if self.config.num_stages >= 3:
            fused, new_past = self.fusion.forward_features(
                output["audio_context_embeddings"], output["text_context_embeddings"], plain_mask,
                past=past.fusion if use_cache else None, use_cache=use_cache,
            )
            if use_cache:
                cache.fusion = new_past
            output["fusion_logits"] = self.fusion.forward_head(fused)
        if use_cache:
            output["past_turns"] = cache

        output["logits"] = self.ensemble({h: output[f"{h}_logits"] for h in self.config.stage_heads()
                                          if output.get(f"{h}_logits") is not None})

        if labels is not None:
            output.update(self._loss(output, labels.masked_fill(~turns, -100)))
        result = HCAMOutput(**output)
        return result if return_dict else result.to_tuple()

    def ensemble(self, head_logits):
        """The test-time ensemble, what `logits` holds: the log of the mean probability of the heads in
        `config.ensemble_stages` (default: every head the model has), from `{head: logits}` (the one definition;
        hcam-export's graph calls it too)."""
        heads = self.config.ensemble_stages or self.config.stage_heads()
        missing = [h for h in heads if h not in head_logits]
        if missing:
            raise ValueError(f"config.ensemble_stages names heads this model does not have: {missing}.")
        probabilities = torch.stack([head_logits[h].float().softmax(-1) for h in heads]).mean(0)
        return probabilities.clamp_min(_MIN_PROBABILITY).log()

    def _loss(self, output, labels):
        stage, joint = self.config.num_stages, self.config.joint_training
        heads = self.config.stage_heads() if joint else self.config.trained_heads()
        class_weights = None
        if self.config.class_weights is not None:
            class_weights = torch.tensor(self.config.class_weights, device=labels.device)
        classification = torch.stack([
            focal_cross_entropy(output[f"{h}_logits"], labels, self.config.focal_gamma, class_weights) for h in heads
        ]).mean()
        losses = {"classification_loss": classification, "loss": classification}
        if (stage == 1 or joint) and self.config.supcon_weight > 0:
            valid = labels != -100
            contrastive = torch.stack([
                self.supcon(output[f"{m}_embeddings"][valid], labels[valid]) for m in self.config.modalities
            ]).mean()
            losses["contrastive_loss"] = contrastive
            losses["loss"] = classification + self.config.supcon_weight * contrastive
        return losses


    # ----- live conversations -----------------------------------------------------------------------------------
    def start_conversation(self, processor, transcriber=None) -> "HCAMConversationStream":
        """A live conversation for this (causal) model: `add_turn(...)` gives each turn's prediction as it arrives.
        See [`HCAMConversationStream`]."""
        return HCAMConversationStream(self, processor, transcriber=transcriber)


HCAMForEmotionRecognition.register_for_auto_class("AutoModel")

# A turn whose transcript the recogniser left empty (silence, noise) is read as this, and marked "asr:empty".
INAUDIBLE = "[inaudible]"


def transcript_and_source(transcript):
    """What a turn's text becomes after speech recognition, and how the output marks it ("asr" or "asr:empty")."""
    transcript = (transcript or "").strip()
    return (transcript, "asr") if transcript else (INAUDIBLE, "asr:empty")


def turn_prediction(index, probabilities, head_labels, id2label, speaker=None, text=None, text_source=None) -> dict:
    """One turn's result as the pipeline, the stream and hcam-predict give it: `turn`, `speaker`, `label` (the
    ensemble), `score`, `probabilities` ({label: p}), `stages` ({head: label}) and, for models that read text, `text`
    and `text_source`. `probabilities` is the ensemble's row, `head_labels` {head: label id}."""
    labels = [id2label[i] for i in range(len(id2label))]
    probabilities = [float(p) for p in probabilities]
    best = int(np.argmax(probabilities))
    result = {"turn": index, "speaker": speaker, "label": labels[best], "score": probabilities[best],
              "probabilities": dict(zip(labels, probabilities)),
              "stages": {head: labels[int(i)] for head, i in head_labels.items()}}
    if text is not None:
        result.update(text=text, text_source=text_source)
    return result


class HCAMConversationStream:
    r"""
    One live conversation for a causal HCAM (`config.context="causal"`, or a stage-1 model): turns go in one at a time
    and each turn's prediction comes back in the same call, final (later turns never change it).

        stream = model.start_conversation(processor)        # or pipeline(...).start_conversation()
        result = stream.add_turn(audio="turn1.wav", text="Where were you?", speaker="A")
        result["label"], result["probabilities"], result["stages"]

    Each turn's encoders run once (stage I); stages II and III go on from what the earlier turns left in the cache
    ([`HCAMTurnCache`]: stage II's recurrent state and every attention's keys), so a turn costs its own encoders plus
    attention over the cached vectors, however long the conversation. The results equal those of the model on the whole
    conversation at once (and of the pipeline on it).

    Args:
        model ([`HCAMForEmotionRecognition`]): a causal model, in eval mode (it is put there).
        processor ([`HCAMProcessor`]): the checkpoint's processor.
        transcriber (`callable`, *optional*): `transcriber(list_of_16kHz_arrays) -> list[str]` for turns that come
            without text when the model reads text (e.g. `hcam.processing.asr.Transcriber("whisper")`).

    Speakers: like the pipeline, the speaker-aware attention uses speaker labels (any hashable). A conversation whose
    first turn has no speaker runs without speaker masks to the end (a later speaker is then ignored, with a warning),
    since the earlier turns' results cannot change.
    """

    def __init__(self, model, processor, transcriber=None):
        if not model.config.is_causal:
            raise ValueError(
                "A live conversation needs a causal model, whose predictions for a turn never depend on later turns: "
                f"this one's stages II/III look at the whole conversation (config.context={model.config.context!r}). "
                "Train stages 2 and 3 with --context causal, or run finished conversations with the pipeline."
            )
        self.model = model.eval()
        self.processor = processor
        self.transcriber = transcriber
        self.modalities = list(model.config.modalities)
        self.device = next(model.parameters()).device
        self.cache = None
        self.speakers = {}  # label -> id, in order of first appearance (as speaker_ids_of numbers them)
        self.use_speakers = None
        self.results = []

    def __len__(self):
        return len(self.results)

    def _text(self, text, waveform, where):
        if "text" not in self.modalities:
            return None, None
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{where}: text must be a string, got {type(text).__name__}")
        if text and text.strip():
            return text.strip(), "given"
        if waveform is None or self.transcriber is None:
            raise ValueError(f"{where} has empty text, but this model reads transcripts (modalities {self.modalities}): "
                             "give its transcript, or its audio and a transcriber=... (ASR) to transcribe it")
        transcripts = list(self.transcriber([waveform]))
        if len(transcripts) != 1:
            raise ValueError(f"the transcriber returned {len(transcripts)} transcripts for 1 turn")
        return transcript_and_source(transcripts[0])

    def _speaker_ids(self, speaker):
        if self.use_speakers is None:
            self.use_speakers = speaker is not None and bool(self.model.config.use_speaker_masks)
        if not self.use_speakers:
            if speaker is not None and self.model.config.use_speaker_masks:
                logger.warning_once("This conversation's first turn had no speaker: it runs without speaker masks "
                                    "to the end (earlier turns' results are final); later speakers are ignored.")
            return None
        return torch.tensor([[self.speakers.setdefault(speaker, len(self.speakers))]], device=self.device)

    @torch.no_grad()
    def add_turn(self, audio=None, text=None, speaker=None, sampling_rate=None) -> dict:
        """Predict the next turn of the conversation, and remember what the next turns need of it.

        Args:
            audio: a file path, a 1-D array at `sampling_rate` (default the feature extractor's 16 kHz) or
                `{"array": ..., "sampling_rate": ...}`; needed when the model reads speech, or to transcribe.
            text (`str`, *optional*): the transcript; without it, the transcriber hears `audio`.
            speaker (*optional*): any hashable label of who speaks.

        Returns:
            `dict` with `turn`, `speaker`, `label`, `score`, `probabilities`, `stages` (every head's label), and,
            when the model reads text, `text` and `text_source`.
        """
        index = len(self.results)
        where = f"turn {index}"
        needs_audio = "audio" in self.modalities or ("text" in self.modalities and not (text or "").strip())
        if needs_audio and (audio is None or (isinstance(audio, str) and not audio)):
            if "audio" in self.modalities:
                raise ValueError(f"{where} has no audio, but this model reads speech (modalities {self.modalities}): "
                                 "give each turn an 'audio' path or array")
        waveform = None
        if needs_audio and audio is not None:
            waveform = self.processor.feature_extractor.waveform(audio, where, sampling_rate)
        text, text_source = self._text(text, waveform, where)
        try:
            features = self.processor(text=[text] if text is not None else None,
                                      audio=[waveform] if "audio" in self.modalities else None, return_tensors="pt")
        except ValueError as error:  # the processor sees a one-turn dialogue: name the conversation's turn
            raise type(error)(str(error).replace("dialogue 0, turn 0", where)) from error
        features = {key: value.to(self.device) for key, value in features.items()}
        embeddings = self.model.get_utterance_embeddings(**features)
        output = self.model(audio_embeddings=embeddings.get("audio"), text_embeddings=embeddings.get("text"),
                            utterance_mask=torch.ones(1, 1, dtype=torch.long, device=self.device),
                            speaker_ids=self._speaker_ids(speaker), past_turns=self.cache, use_cache=True)
        self.cache = output.past_turns
        heads = self.model.config.stage_heads()
        result = turn_prediction(index, output.logits[0, 0].float().softmax(-1).tolist(),
                                 {h: int(getattr(output, f"{h}_logits")[0, 0].argmax()) for h in heads},
                                 self.model.config.id2label, speaker, text, text_source)
        self.results.append(result)
        return result
