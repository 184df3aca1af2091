"""HCAM for transformers. This folder is also the Hub remote-code bundle (flat files, relative imports only)."""

from transformers import AutoConfig, AutoModel

from .configuration_hcam import DEFAULT_TEXT_ENCODER, TINY_AUDIO_ENCODER_CONFIG, HCAMConfig
from .modeling_hcam import HCAMForEmotionRecognition, HCAMOutput, HCAMPreTrainedModel, SupervisedContrastiveLoss

# In-process use (installed package) resolves the Auto classes to these classes without remote code.
AutoConfig.register("hcam", HCAMConfig, exist_ok=True)
AutoModel.register(HCAMConfig, HCAMForEmotionRecognition, exist_ok=True)

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "TINY_AUDIO_ENCODER_CONFIG",
    "HCAMConfig",
    "HCAMForEmotionRecognition",
    "HCAMOutput",
    "HCAMPreTrainedModel",
    "SupervisedContrastiveLoss",
]
