"""Confusion matrix, a local evaluate metric: no network needed."""
import datasets
import evaluate
from sklearn.metrics import confusion_matrix

_DESCRIPTION = "Confusion matrix: row = reference class, column = predicted class."
_INPUTS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): gold class ids.
    labels (list of int, optional): row/column order (default: sorted classes that appear).
Returns:
    confusion_matrix (list of list of int).
"""
_CITATION = """@article{pedregosa2011scikit, title={Scikit-learn: Machine Learning in Python}, year={2011}}"""


class ConfusionMatrix(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, labels=None):
        return {"confusion_matrix": confusion_matrix(references, predictions, labels=labels).tolist()}
