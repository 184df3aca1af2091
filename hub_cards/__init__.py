"""Hub side of hcam: model cards filled from a run's results, per-stage safetensors pushes, and a local
Hub-protocol server (hcam.hub_cards.local_hub) for tests and offline demos."""
from .card import build_model_card, render_confusion_matrix_png
from .push import PickleRefusedError, push_stage

__all__ = ["build_model_card", "render_confusion_matrix_png", "push_stage", "PickleRefusedError"]
