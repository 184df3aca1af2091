"""F1 score (weighted, macro, micro or per class), a local evaluate metric: no network needed."""
import datasets
import evaluate
from sklearn.metrics import f1_score

_DESCRIPTION = """F1 = 2 * precision * recall / (precision + recall), averaged over classes.
`average="weighted"` weights each class by its support: the headline metric of HCAM (IEMOCAP, MELD)."""
_INPUTS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): gold class ids.
    average (str): "weighted" (default), "macro", "micro" or None for one score per class.
    labels (list of int, optional): the classes to score (default: all that appear).
Returns:
    f1 (float, or list of float when average is None).
"""
_CITATION = """@article{pedregosa2011scikit, title={Scikit-learn: Machine Learning in Python}, year={2011}}"""


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, average="weighted", labels=None):
        score = f1_score(references, predictions, average=average, labels=labels, zero_division=0)
        return {"f1": score.tolist() if average is None else float(score)}
