"""Accuracy, a local evaluate metric: no network needed."""
import datasets
import evaluate
from sklearn.metrics import accuracy_score

_DESCRIPTION = "Fraction of predictions equal to the reference."
_INPUTS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): gold class ids.
Returns:
    accuracy (float).
"""
_CITATION = """@article{pedregosa2011scikit, title={Scikit-learn: Machine Learning in Python}, year={2011}}"""


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return {"accuracy": float(accuracy_score(references, predictions))}
