"""HCAM model configuration."""

import os
import warnings

from transformers import PretrainedConfig

# A small wav2vec2 trained from scratch in stage I: no pretrained speech weights can be downloaded offline.
# Its feature encoder is a learned filterbank, not wav2vec2-base's 7-layer stack: a 25 ms window every 10 ms
# (kernel 400, stride 160) resolves pitch harmonics, which a randomly initialised 10-sample first layer must
# learn to build over many layers; on the demo corpus it reached validation weighted F1 0.55 in 3 epochs, where
# the 7-layer stack was still at chance after its first epoch, which took several times as long. A second convolution halves the rate to wav2vec2's
# 50 frames per second. Convolution biases let loudness (an arousal cue) survive the per-frame layer norm, and
# layer norm rather than group norm makes the encoder honour padding masks (a padded utterance gives the same
# embedding as the same utterance alone).
TINY_AUDIO_ENCODER_CONFIG = {
    "model_type": "wav2vec2",
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "conv_dim": [64, 64],
    "conv_stride": [160, 2],
    "conv_kernel": [400, 2],
    "conv_bias": True,
    "num_conv_pos_embeddings": 32,
    "num_conv_pos_embedding_groups": 4,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "mask_time_prob": 0.0,
    "hidden_dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "layerdrop": 0.0,
}

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"

ENSEMBLE = "ensemble"  # the name of the test-time ensemble among the heads (HCAMOutput.logits)
MODALITIES = ("audio", "text")

FUSION_TYPES = ("co-attention", "concat")

# Which turns stages II and III may look at: every turn of the conversation (the paper), or only the past and current
# turns (a live conversation: a turn's prediction never changes when later turns arrive).
CONTEXT_DIRECTIONS = ("bidirectional", "causal")


def check_local_folder(name_or_path, what="model"):
    """Stop with "no such folder" when `name_or_path` can only be a local folder (a path object, or a string that
    starts with /, ./, ../ or ~, holds a backslash or more than one /) and is not one here; a Hub id (`name`,
    `org/name`) passes. transformers would otherwise report "Repo id must be in the form 'repo_name'..."."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        return
    name = os.fspath(name_or_path)
    if os.path.isdir(os.path.expanduser(name)):
        return
    local = (not isinstance(name_or_path, str) or name.startswith(("/", "./", "../", "~", ".\\")) or "\\" in name
             or name.count("/") > 1)
    if os.path.isfile(name):
        raise FileNotFoundError(f"{what} {name!r} is a file, not a folder: give the folder that holds its config.json")
    if local:
        raise FileNotFoundError(f"no such folder: {what} {name!r} is a local path (not a Hub repo id) and does not "
                                "exist; check its spelling (a relative path is read from the current directory).")


class HCAMConfig(PretrainedConfig):
    r"""
    Configuration of [`HCAMForEmotionRecognition`]: every hyperparameter of all three stages.

    Defaults follow the authors' related code (GRU 200 per direction, 3 heads, fusion width 60) unless said otherwise.

    Args:
        modalities (`list[str]`, *optional*, defaults to `["audio", "text"]`):
            Which modalities the model has. Stage 3 needs both.
        num_stages (`int`, *optional*, defaults to 1):
            How many of HCAM's stages the model has: 1 = utterance encoders, 2 = + dialogue context, 3 = + co-attention
            fusion. (Configurations saved before this name have `stage`, read as `num_stages` with a FutureWarning;
            `config.stage` still reads it. A *stage* being trained is `hcam.trainer.stages.Stage`.)
        audio_encoder_name_or_path (`str`, *optional*):
            Hub name or local path of a pretrained speech encoder that `AutoModel` builds (wav2vec2, HuBERT, WavLM,
            data2vec-audio, wav2vec2-conformer; e.g. `facebook/wav2vec2-base`); `None` = the random tiny encoder
            described by `audio_encoder_config`.
        audio_encoder_config (`dict`, *optional*):
            The audio encoder's config as a dict (with `model_type`), kept nested so a saved model loads with no
            download.
        text_encoder_name_or_path (`str`, *optional*, defaults to all-MiniLM-L6-v2):
            Hub name or local path of the text encoder (any `AutoModel`, e.g. `roberta-base`).
        text_encoder_config (`dict`, *optional*):
            The text encoder's config as a dict (with `model_type`), nested for the same reason.
        use_weighted_layer_sum (`bool` or `list[str]`, *optional*, defaults to `False`):
            Pool the encoders' hidden layers with learned softmax weights instead of taking the last layer; middle
            layers of wav2vec2 carry more paralinguistic information than the last. `True` = every modality of the
            model, or the modalities that do (a stage-3 model keeps each stage-1 model's own choice).
        freeze_feature_encoder (`bool`, *optional*, defaults to `True`):
            Keep wav2vec2's convolutional feature encoder fixed when fine-tuning a *pretrained* audio encoder (the
            usual recipe; it saves memory). Ignored for the random default encoder, which must learn everything.
        freeze_audio_encoder (`bool`, *optional*, defaults to `False`):
            Never train the audio encoder (the SUPERB protocol: frozen upstream, trained head); stage I then trains
            on its hidden states, computed once and cached.
        freeze_text_encoder (`bool`, *optional*, defaults to `False`):
            The same for the text encoder.
        gru_hidden_size (`int`, *optional*, defaults to 200):
            Width of every bi-GRU per direction; utterance and context embeddings are twice as wide.
        num_attention_heads (`int`, *optional*, defaults to 3):
            Heads of every attention layer (pooling hops in stage I, heads in stages II and III).
        fusion_hidden_size (`int`, *optional*, defaults to 60):
            Width of the co-attention fusion in stage III.
        dropout (`float`, *optional*, defaults to 0.2):
            Dropout on the GRU outputs and before every classifier.
        supcon_temperature (`float`, *optional*, defaults to 0.07):
            Temperature of the supervised contrastive loss (Khosla et al.'s value, as in the paper).
        supcon_weight (`float`, *optional*, defaults to 0.5):
            Weight of the contrastive loss against cross-entropy in stage I; 0 disables it.
        focal_gamma (`float`, *optional*, defaults to 0.0):
            Focal-loss focusing parameter; 0 is plain cross-entropy. Helps on MELD's long-tailed labels.
        class_weights (`list[float]`, *optional*):
            Per-class weights for the classification loss (e.g. inverse frequency), in label-id order.
        use_speaker_masks (`bool`, *optional*, defaults to `True`):
            In stage II, the second head attends only to the same speaker's turns and the third only to the
            other speakers' turns (each turn always sees itself); the first head is global.
        context_self_attention (`bool`, *optional*, defaults to `True`):
            Stage II's self-attention over turns (with its residual layer norm) after the bi-GRU. `False` = stage II
            is the bi-GRU alone (an ablation): such a model has no attention weights, and `output_attentions=True`
            raises a `ValueError`.
        context (`str`, *optional*, defaults to `"bidirectional"`):
            Which turns stages II and III see. `"bidirectional"` (the paper): every turn of the conversation, so a
            turn's prediction uses the turns after it. `"causal"`: only the past and current turns, so each turn's
            prediction is final the moment it arrives (live conversations; `model(..., use_cache=True)` and
            `HCAMConversationStream` go on turn by turn): stage II runs a forward GRU (`2 * gru_hidden_size` wide, so
            the embeddings keep their width) and its self-attention, speaker masks kept, and stage III's co-attention
            and self-attention are masked to earlier turns. Stage I is per utterance either way, so causal stages
            II/III start from the same stage-I models.
        fusion_type (`str`, *optional*, defaults to `"co-attention"`):
            Stage III: `"co-attention"` (audio queries text and text queries audio, self-attention on each, then
            concatenation and a fully connected layer) or `"concat"` (an ablation: both context embeddings
            projected, concatenated, one fully connected layer, the classifier; no attention).
        joint_training (`bool`, *optional*, defaults to `False`):
            Non-hierarchical training (an ablation): the loss is the mean classification loss of *every* head the
            model has (utterance, context, fusion) plus `supcon_weight` times the contrastive loss on the utterance
            embeddings, so all stages learn at once, end to end. `False` = each stage trains its own heads.
        max_audio_seconds (`float`, *optional*, defaults to 15.0):
            The processor cuts longer utterances; 15 s covers > 99% of IEMOCAP and MELD turns.
        max_text_tokens (`int`, *optional*, defaults to 128):
            The processor truncates longer transcripts.
        encoder_chunk_size (`int`, *optional*, defaults to 64):
            Utterances sent through an encoder at once, so that a dialogue of hundreds of turns runs in bounded
            memory.
        ensemble_stages (`list[str]`, *optional*):
            Which stage heads the test-time ensemble averages (names as in [`HCAMOutput`], e.g.
            `["audio_context", "text_context", "fusion"]`); `None` = every head the model has.
    """

    model_type = "hcam"
    sub_configs = {}
    attribute_map = {"stage": "num_stages"}  # the name before num_stages: `config.stage` still reads and sets it

    def __init__(
        self,
        modalities=("audio", "text"),
        num_stages=1,
        audio_encoder_name_or_path=None,
        audio_encoder_config=None,
        text_encoder_name_or_path=DEFAULT_TEXT_ENCODER,
        text_encoder_config=None,
        use_weighted_layer_sum=False,
        freeze_feature_encoder=True,
        freeze_audio_encoder=False,
        freeze_text_encoder=False,
        gru_hidden_size=200,
        num_attention_heads=3,
        fusion_hidden_size=60,
        dropout=0.2,
        supcon_temperature=0.07,
        supcon_weight=0.5,
        focal_gamma=0.0,
        class_weights=None,
        use_speaker_masks=True,
        context_self_attention=True,
        fusion_type="co-attention",
        context="bidirectional",
        joint_training=False,
        max_audio_seconds=15.0,
        max_text_tokens=128,
        encoder_chunk_size=64,
        ensemble_stages=None,
        **kwargs,
    ):
        if "stage" in kwargs:  # the name before num_stages (a configuration saved before it, or old code)
            warnings.warn("HCAMConfig(stage=...) is deprecated and will be removed in the next release: the value is "
                          "num_stages (how many stages the model has). Save the configuration again to update it.",
                          FutureWarning, stacklevel=2)
            num_stages = kwargs.pop("stage")
        modalities = list(modalities)
        unknown = [m for m in modalities if m not in MODALITIES]
        if not modalities or unknown:
            raise ValueError(f"`modalities` must be a non-empty subset of {list(MODALITIES)}, got {modalities}.")
        if num_stages not in (1, 2, 3):
            raise ValueError(f"`num_stages` must be 1, 2 or 3, got {num_stages}.")
        if num_stages == 3 and len(modalities) != 2:
            raise ValueError("Stage 3 fuses audio and text: `modalities` must be ['audio', 'text'].")
        if fusion_type not in FUSION_TYPES:
            raise ValueError(f"`fusion_type` must be one of {list(FUSION_TYPES)}, got {fusion_type!r}.")
        if context not in CONTEXT_DIRECTIONS:
            raise ValueError(f"`context` must be one of {list(CONTEXT_DIRECTIONS)}, got {context!r}.")
        if "audio" in modalities and audio_encoder_config is None:
            audio_encoder_config = dict(TINY_AUDIO_ENCODER_CONFIG)
        self.modalities = modalities
        self.num_stages = num_stages
        self.audio_encoder_name_or_path = audio_encoder_name_or_path
        self.audio_encoder_config = audio_encoder_config
        self.text_encoder_name_or_path = text_encoder_name_or_path
        self.text_encoder_config = text_encoder_config
        self.use_weighted_layer_sum = use_weighted_layer_sum
        self.freeze_feature_encoder = freeze_feature_encoder
        self.freeze_audio_encoder = freeze_audio_encoder
        self.freeze_text_encoder = freeze_text_encoder
        self.gru_hidden_size = gru_hidden_size
        self.num_attention_heads = num_attention_heads
        self.fusion_hidden_size = fusion_hidden_size
        self.dropout = dropout
        self.supcon_temperature = supcon_temperature
        self.supcon_weight = supcon_weight
        self.focal_gamma = focal_gamma
        self.class_weights = class_weights
        self.use_speaker_masks = use_speaker_masks
        self.context_self_attention = context_self_attention
        self.fusion_type = fusion_type
        self.context = context
        self.joint_training = joint_training
        self.max_audio_seconds = max_audio_seconds
        self.max_text_tokens = max_text_tokens
        self.encoder_chunk_size = encoder_chunk_size
        self.ensemble_stages = ensemble_stages
        super().__init__(**kwargs)

    @classmethod
    def from_encoders(cls, audio_encoder=None, text_encoder=None, *, audio_encoder_path=None,
                      text_encoder_path=None, **kwargs):
        """A config whose encoder configs are read from pretrained encoders.

        Args:
            audio_encoder (`str`, *optional*): name of a pretrained speech encoder (any `AutoModel` of the wav2vec2
                family: wav2vec2, HuBERT, WavLM, data2vec-audio, wav2vec2-conformer), or `None` for the random tiny one.
            text_encoder (`str`, *optional*): name of a pretrained text encoder.
            audio_encoder_path, text_encoder_path (`str`, *optional*): where to read them if not from the name
                (e.g. a packaged copy); the config records the name.
            kwargs: any other [`HCAMConfig`] argument (`modalities`, `id2label`, ...).
        """
        from transformers import AutoConfig

        modalities = kwargs.get("modalities", MODALITIES)
        if "audio" in modalities and audio_encoder is not None:
            kwargs["audio_encoder_name_or_path"] = audio_encoder
            kwargs["audio_encoder_config"] = AutoConfig.from_pretrained(audio_encoder_path or audio_encoder).to_dict()
        if "text" in modalities:
            text_encoder = text_encoder or DEFAULT_TEXT_ENCODER
            kwargs["text_encoder_name_or_path"] = text_encoder
            kwargs["text_encoder_config"] = AutoConfig.from_pretrained(text_encoder_path or text_encoder).to_dict()
        return cls(**kwargs)

    @property
    def is_causal(self):
        """Whether a turn's prediction depends only on the turns up to it (`context="causal"`, or stage I alone)."""
        return self.context == "causal" or self.num_stages == 1

    @property
    def utterance_embedding_size(self):
        return 2 * self.gru_hidden_size

    def weighted_layer_sum(self, modality):
        """Whether `modality`'s utterance encoder pools its layers with learned weights (`use_weighted_layer_sum`)."""
        if isinstance(self.use_weighted_layer_sum, (list, tuple)):
            return modality in self.use_weighted_layer_sum
        return bool(self.use_weighted_layer_sum)

    def trained_heads(self):
        """The heads this configuration's last stage trains (its loss): utterance, context or fusion."""
        return trained_heads(self.num_stages, self.modalities)

    def stage_heads(self):
        """Names of the classification heads this configuration builds, in stage order."""
        heads = [f"{m}_utterance" for m in self.modalities]
        if self.num_stages >= 2:
            heads += [f"{m}_context" for m in self.modalities]
        if self.num_stages >= 3:
            heads.append("fusion")
        return heads

    def output_heads(self):
        """Every prediction the model gives: the ensemble (its `logits`, what the pipeline returns) first, then each
        stage head (`HCAMOutput.head_logits(name)` reads any of them)."""
        return [ENSEMBLE, *self.stage_heads()]


def trained_heads(stage, modalities):
    """The heads stage `stage` trains for `modalities`: stage 1 the utterance heads, stage 2 the context heads,
    stage 3 the fusion head. The one definition of what a stage trains (training, evaluation, card, demo)."""
    if stage == 3:
        return ["fusion"]
    return [f"{m}_{'utterance' if stage == 1 else 'context'}" for m in modalities]


HCAMConfig.register_for_auto_class()
