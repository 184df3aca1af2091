"""Label sets and the rules that map a corpus's raw annotations to them.

This module is the leaf: it imports nothing from hcam. It owns each corpus's settings (canonical name -> label
names in id order, the first being the default) and the rules from raw annotations to those labels. The corpus
registry (``corpora.py``) imports the settings into its entries and owns what users type: corpus names and setting
aliases. ``load_hcam_dataset`` resolves a user's setting there and hands the reader the canonical setting and its
label names, so the rules below take canonical settings only and readers never look anything up.

Label NAMES (strings) are what the readers put in the ``label`` column; the model config's
``label2id`` maps them to ids. The order of each list below is the id order we use for configs.

- IEMOCAP (raw EmoEvaluation codes: neu hap sad ang exc fru sur fea dis oth xxx):
  6-class = happy, sad, neutral, angry, excited, frustrated; 4-class = angry, happy (hap + exc),
  neutral, sad. Utterances with any other code are left out (reported as excluded, not problems).
- MELD: 7 emotions (neutral, surprise, fear, sadness, joy, disgust, anger) or 3 sentiments.
- demo: neutral, happy, sad, angry (given by construction: the corpus is synthesised for its labels).
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

DEMO_LABELS = ["neutral", "happy", "sad", "angry"]  # the synthetic demo corpus (data/demo)

# Each corpus's settings: canonical name -> label names in id order; the first one is the default. The corpus
# registry takes these as its entries' settings (and adds the aliases users may type).
IEMOCAP_SETTINGS = {"6class": IEMOCAP_6_LABELS, "4class": IEMOCAP_4_LABELS}
MELD_SETTINGS = {"emotion": MELD_EMOTIONS, "sentiment": MELD_SENTIMENTS}
MOSI_SETTINGS = {"binary": MOSI_BINARY_LABELS, "binary_nonzero": MOSI_BINARY_LABELS, "7class": MOSI_7_LABELS}
DEMO_SETTINGS = {"emotion": DEMO_LABELS}
_IEMOCAP_MAPS = {"6class": IEMOCAP_6_MAP, "4class": IEMOCAP_4_MAP}


def _known(corpus: str, setting: str, settings) -> None:
    if setting not in settings:
        raise ValueError(f"{corpus} setting {setting!r} is not one of {list(settings)} (canonical names: the corpus "
                         "registry resolves aliases such as '4-class')")


def iemocap_label(raw_code: str, setting: str = "6class") -> str | None:
    """Label name of a raw IEMOCAP code in a canonical setting ("6class", "4class"), or None when the setting
    leaves it out."""
    _known("IEMOCAP", setting, IEMOCAP_SETTINGS)
    return _IEMOCAP_MAPS[setting].get(raw_code)


def mosi_label(score: float, setting: str = "binary") -> str | None:
    """Label name of a MOSI sentiment score in a canonical setting ("binary", "binary_nonzero", "7class"), or None
    when the setting excludes it (0 in binary_nonzero)."""
    _known("CMU-MOSI", setting, MOSI_SETTINGS)
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
