"""HCAM for transformers. This folder is also the Hub remote-code bundle (flat files, relative imports only)."""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoProcessor

from .configuration_hcam import DEFAULT_TEXT_ENCODER, TINY_AUDIO_ENCODER_CONFIG, HCAMConfig
from .feature_extraction_hcam import HCAMAudioError, HCAMFeatureExtractor, load_audio
from .modeling_hcam import (
    HCAMConversationStream,
    HCAMForEmotionRecognition,
    HCAMOutput,
    HCAMPreTrainedModel,
    HCAMTurnCache,
    SupervisedContrastiveLoss,
)
from .processing_hcam import HCAMProcessor

# In-process use (installed package) resolves the Auto classes to these classes without remote code.
AutoConfig.register("hcam", HCAMConfig, exist_ok=True)
AutoModel.register(HCAMConfig, HCAMForEmotionRecognition, exist_ok=True)
AutoFeatureExtractor.register(HCAMConfig, HCAMFeatureExtractor, exist_ok=True)
AutoProcessor.register(HCAMConfig, HCAMProcessor, exist_ok=True)

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "TINY_AUDIO_ENCODER_CONFIG",
    "HCAMAudioError",
    "HCAMConfig",
    "HCAMConversationStream",
    "HCAMFeatureExtractor",
    "HCAMForEmotionRecognition",
    "HCAMOutput",
    "HCAMPreTrainedModel",
    "HCAMTurnCache",
    "HCAMProcessor",
    "SupervisedContrastiveLoss",
    "load_audio",
]
