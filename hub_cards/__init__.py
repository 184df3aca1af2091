"""Hub side of hcam: model cards filled from a run's results and per-stage safetensors pushes.
(`local_hub`: the Hub-protocol server on 127.0.0.1 that `make demo` and the tests push to.)"""
from .card import HCAMCardData, build_model_card, render_confusion_matrix_png
from .push import PickleRefusedError, push_stage

__all__ = ["HCAMCardData", "build_model_card", "render_confusion_matrix_png", "push_stage", "PickleRefusedError"]
