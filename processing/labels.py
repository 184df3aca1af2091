"""Label sets and the rules that map a corpus's raw annotations to them.

Which settings a corpus has, and their order, is the corpus registry's (``corpora.py``); the lists live here.

Label NAMES (strings) are what the readers put in the ``label`` column; the model config's
``label2id`` maps them to ids. The order of each list below is the id order we use for configs.

- IEMOCAP (raw EmoEvaluation codes: neu hap sad ang exc fru sur fea dis oth xxx):
  6-class = happy, sad, neutral, angry, excited, frustrated; 4-class = angry, happy (hap + exc),
  neutral, sad. Utterances with any other code are left out (reported as excluded, not problems).
- MELD: 7 emotions (neutral, surprise, fear, sadness, joy, disgust, anger) or 3 sentiments.
- CMU-MOSI: sentiment score in [-3, 3].
  * "binary" (default, the "Acc-2 non-negative" convention): negative if score < 0, else positive
    (a score of exactly 0 counts as positive).
  * "binary_nonzero" (the "Acc-2 negative/positive" convention): negative < 0 < positive,
    utterances scored exactly 0 are excluded.
  * "7class": the score rounded to the nearest integer and clipped to [-3, 3], named after the
    MOSI annotation scale (strongly negative ... strongly positive).
"""
from __future__ import annotations

import math

IEMOCAP_RAW_CODES = ("neu", "hap", "sad", "ang", "exc", "fru", "sur", "fea", "dis", "oth", "xxx")

IEMOCAP_6_LABELS = ["happy", "sad", "neutral", "angry", "excited", "frustrated"]
IEMOCAP_6_MAP = {"hap": "happy", "sad": "sad", "neu": "neutral", "ang": "angry", "exc": "excited",
                 "fru": "frustrated"}

IEMOCAP_4_LABELS = ["angry", "happy", "neutral", "sad"]
IEMOCAP_4_MAP = {"ang": "angry", "hap": "happy", "exc": "happy", "neu": "neutral", "sad": "sad"}

MELD_EMOTIONS = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
MELD_SENTIMENTS = ["neutral", "positive", "negative"]

MOSI_BINARY_LABELS = ["negative", "positive"]
MOSI_7_LABELS = ["strongly negative", "negative", "weakly negative", "neutral", "weakly positive",
                 "positive", "strongly positive"]

def canonical_setting(dataset: str, setting: str | None) -> str:
    """Map a user's setting name (e.g. "4-class", "4") to the canonical one, or raise (the corpus registry's)."""
    from .corpora import get_corpus

    return get_corpus(dataset).canonical_setting(setting)


def get_label_names(dataset: str, setting: str | None = None) -> list[str]:
    """Label names, in id order, of a dataset setting (e.g. ``get_label_names("iemocap", "4class")``)."""
    from .corpora import get_corpus

    return get_corpus(dataset).label_names(setting)


def iemocap_label(raw_code: str, setting: str = "6class") -> str | None:
    """Label name of a raw IEMOCAP code in a setting, or None when the setting leaves it out."""
    mapping = IEMOCAP_6_MAP if canonical_setting("iemocap", setting) == "6class" else IEMOCAP_4_MAP
    return mapping.get(raw_code)


def mosi_label(score: float, setting: str = "binary") -> str | None:
    """Label name of a MOSI sentiment score, or None when the setting excludes it (0 in binary_nonzero)."""
    setting = canonical_setting("mosi", setting)
    if math.isnan(score):
        raise ValueError("MOSI sentiment score is NaN")
    if setting == "binary":
        return "negative" if score < 0 else "positive"
    if setting == "binary_nonzero":
        if score == 0:
            return None
        return "negative" if score < 0 else "positive"
    # Python's round() rounds half to even (2.5 -> 2); the MOSI literature uses np.round, which does
    # the same, so we match it.
    return MOSI_7_LABELS[int(min(3, max(-3, round(score)))) + 3]
