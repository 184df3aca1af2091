"""Metrics of a stage: weighted F1 (the headline), accuracy and macro F1 for every head and the ensemble.

The metric code is the local evaluate modules in `trainer/metrics/` (evaluate.load on a hub name needs network).
"""

import os

import numpy as np

METRICS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics")
_loaded = {}


def load_metric(name):
    if name not in _loaded:
        try:
            import evaluate
        except ImportError as error:
            raise ImportError(f"the metrics need the training extras ({error}): pip install \"hcam[train]\"") from error
        _loaded[name] = evaluate.load(os.path.join(METRICS_DIR, f"{name}.py"))
    return _loaded[name]


def head_scores(predictions, references):
    f1 = load_metric("f1")
    return {
        "weighted_f1": f1.compute(predictions=predictions, references=references, average="weighted")["f1"],
        "macro_f1": f1.compute(predictions=predictions, references=references, average="macro")["f1"],
        "accuracy": load_metric("accuracy").compute(predictions=predictions, references=references)["accuracy"],
    }


def flatten(predictions, label_ids):
    """[D, T, heads] predictions and [D, T] labels (padding -100) → ([N, heads], [N]) over real turns."""
    predictions, label_ids = np.asarray(predictions), np.asarray(label_ids)
    valid = label_ids != -100
    return predictions[valid], label_ids[valid]


def build_compute_metrics(heads, primary_head, label_names=None):
    """compute_metrics for the Trainer: `weighted_f1`/`accuracy`/`macro_f1` are the stage's own head (stage I:
    utterance, II: context, III: fusion); `<head>_weighted_f1` etc. for each head, `ensemble` = the model's logits.
    With `label_names`, `f1_<label>` per class of the primary head too."""

    def compute_metrics(eval_pred):
        predictions, references = flatten(eval_pred.predictions, eval_pred.label_ids)
        metrics = {}
        for index, head in enumerate(heads):
            scores = head_scores(predictions[:, index], references)
            for name, value in scores.items():
                metrics[f"{head}_{name}"] = value
                if head == primary_head:
                    metrics[name] = value
        if label_names:
            per_class = load_metric("f1").compute(
                predictions=predictions[:, heads.index(primary_head)], references=references,
                average=None, labels=list(range(len(label_names))),
            )["f1"]
            for name, value in zip(label_names, per_class):
                metrics[f"f1_{name}"] = value
        return metrics

    return compute_metrics


def detailed_report(predictions, label_ids, heads, label_names):
    """Per-class F1 and the confusion matrix (rows = reference) of every head: the report written next to a model."""
    predictions, references = flatten(predictions, label_ids)
    labels = list(range(len(label_names)))
    report = {"labels": list(label_names), "support": np.bincount(references, minlength=len(labels)).tolist(), "heads": {}}
    for index, head in enumerate(heads):
        head_predictions = predictions[:, index]
        per_class = load_metric("f1").compute(predictions=head_predictions, references=references, average=None, labels=labels)["f1"]
        report["heads"][head] = {
            **head_scores(head_predictions, references),
            "per_class_f1": dict(zip(label_names, per_class)),
            "confusion_matrix": load_metric("confusion_matrix").compute(
                predictions=head_predictions, references=references, labels=labels
            )["confusion_matrix"],
        }
    return report
