"""Hub side of hcam: model cards filled from a run's results and per-stage safetensors pushes.
(The local Hub-protocol server the tests and `make demo` push to is a test fixture: tests/local_hub.py.)"""
from .card import HCAMCardData, build_model_card, render_confusion_matrix_png
from .push import PickleRefusedError, push_stage

__all__ = ["HCAMCardData", "build_model_card", "render_confusion_matrix_png", "push_stage", "PickleRefusedError"]
