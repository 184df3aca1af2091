"""HCAMProcessor: dialogues of speech and/or transcripts (+ speakers, labels) → exactly the model's inputs.

Part of the Hub remote-code bundle: imports only its sibling feature extractor, never the model, so a processor
folder loads without the modeling code.
"""
from __future__ import annotations

import numbers

import numpy as np
from transformers import BatchFeature, ProcessorMixin
from transformers.utils import logging

from .feature_extraction_hcam import HCAMFeatureExtractor, as_dialogue_batch

logger = logging.get_logger(__name__)


def speaker_ids_of(speakers):
    """One dialogue's speaker labels -> ids in order of first appearance ("B", "A", "B" -> 0, 1, 0): the model only
    compares them (same speaker or not), so any labels work. Turns without a speaker (None or "") next to turns with
    one are read as one more speaker, the same for all of them: a warning says so (once)."""
    missing = [s is None or s == "" for s in speakers]
    if any(missing) and not all(missing):
        logger.warning_once("Some turns have no speaker while others have one: the turns without one are read as one "
                            "more speaker, all the same person (warned once). Give every turn its speaker, or none.")
    first_seen = {}
    return [first_seen.setdefault(speaker, len(first_seen)) for speaker in speakers]


def _text_as_batch(text) -> tuple[list[list[str]], bool]:
    if isinstance(text, str):
        raise ValueError("text must be one dialogue (list of turn strings) or a batch (list of lists), not a single string")
    if not isinstance(text, (list, tuple)) or len(text) == 0:
        raise ValueError(f"text must be a non-empty list of turns or of dialogues, got {type(text).__name__}")
    if all(isinstance(turn, str) for turn in text):
        return [list(text)], False
    batch = []
    for dialogue_index, dialogue in enumerate(text):
        if not isinstance(dialogue, (list, tuple)) or not all(isinstance(turn, str) for turn in dialogue):
            raise ValueError(f"text dialogue {dialogue_index}: expected a list of strings, got {dialogue!r:.80}")
        if len(dialogue) == 0:
            raise ValueError(f"text dialogue {dialogue_index} has no turns")
        batch.append(list(dialogue))
    return batch, True


def _per_dialogue(values, name: str, is_batch: bool, turn_counts: list[int]) -> list[list]:
    """Check that `values` (speakers or labels) nest like the dialogues and have one entry per turn."""
    if hasattr(values, "tolist"):  # numpy array / torch tensor
        values = values.tolist()
    batch = values if is_batch else [values]
    if not isinstance(batch, (list, tuple)) or len(batch) != len(turn_counts):
        raise ValueError(
            f"{name} must give one list per dialogue ({len(turn_counts)} dialogue(s)), got "
            f"{len(batch) if isinstance(batch, (list, tuple)) else type(batch).__name__}"
        )
    for dialogue_index, (dialogue, count) in enumerate(zip(batch, turn_counts)):
        if hasattr(dialogue, "tolist"):
            dialogue = dialogue.tolist()
        if not isinstance(dialogue, (list, tuple)) or len(dialogue) != count:
            found = len(dialogue) if isinstance(dialogue, (list, tuple)) else type(dialogue).__name__
            raise ValueError(f"{name} dialogue {dialogue_index}: expected {count} entries (one per turn), got {found}")
    return [list(d.tolist() if hasattr(d, "tolist") else d) for d in batch]


class HCAMProcessor(ProcessorMixin):
    r"""Builds HCAM's inputs from conversations: audio through [`HCAMFeatureExtractor`], transcripts through the text
    encoder's tokenizer, plus turn masks, per-dialogue speaker ids and padded labels.

    Args:
        feature_extractor ([`HCAMFeatureExtractor`]): speech feature extractor.
        tokenizer ([`PreTrainedTokenizerBase`]): tokenizer of the text encoder.
        max_text_tokens (`int`, defaults to 128): turns are truncated to this many tokens (special tokens included).
    """

    def __init__(self, feature_extractor=None, tokenizer=None, max_text_tokens: int = 128, **kwargs):
        self.max_text_tokens = int(max_text_tokens)
        super().__init__(feature_extractor, tokenizer, **kwargs)

    @classmethod
    def from_encoders(cls, text_encoder, *, text_encoder_path=None, audio: bool = True, max_text_tokens: int = 128,
                      **feature_extractor_kwargs):
        """A processor for a model built with [`HCAMConfig.from_encoders`]: the text encoder's tokenizer and an
        [`HCAMFeatureExtractor`].

        Args:
            text_encoder (`str`): name of the text encoder whose tokenizer is used (e.g.
                `"sentence-transformers/all-MiniLM-L6-v2"`); recorded as the tokenizer's `name_or_path`.
            text_encoder_path (`str`, *optional*): where to read it if not from the name (e.g. a packaged copy; in
                hcam, `hcam.processing.encoders.resolve_encoder_path(name)` finds it offline).
            audio (`bool`, defaults to `True`): whether the processor will be fed audio. It always carries a feature
                extractor (every sub-processor must save and reload), so with `audio=False` it gets the default one
                and feature-extractor arguments are refused rather than silently ignored.
            max_text_tokens (`int`, defaults to 128): turns are truncated to this many tokens.
            feature_extractor_kwargs: passed to [`HCAMFeatureExtractor`] (e.g. `max_duration_seconds`, `resample`,
                `sampling_rate`, `do_normalize`).
        """
        from transformers import AutoTokenizer

        if not audio and feature_extractor_kwargs:
            raise ValueError(f"feature extractor arguments {sorted(feature_extractor_kwargs)} given with audio=False; "
                             "drop them or set audio=True")
        tokenizer = AutoTokenizer.from_pretrained(text_encoder_path or text_encoder)
        tokenizer.name_or_path = str(text_encoder)
        return cls(feature_extractor=HCAMFeatureExtractor(**feature_extractor_kwargs), tokenizer=tokenizer,
                   max_text_tokens=max_text_tokens)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_values", "attention_mask", "input_ids", "text_attention_mask", "utterance_mask", "speaker_ids"]

    def __call__(
        self,
        text=None,
        audio=None,
        sampling_rate: int | None = None,
        speakers=None,
        labels=None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Turn one dialogue or a batch of dialogues into model inputs.

        Args:
            text: one dialogue (list of str) or a batch (list of lists of str). Empty turns are an error.
            audio: one dialogue (list of 1-D float arrays or file paths) or a batch (list of lists).
            sampling_rate: rate of the audio arrays (`None` = the feature extractor's rate).
            speakers: same nesting as the dialogues, any hashables; mapped per dialogue to 0, 1, 2, ... in order of
                first appearance.
            labels: same nesting, integer class ids (-100 = ignore).
            return_tensors: "pt" (default), "np" or `None` (numpy).
            max_text_tokens: (keyword) override the processor's truncation length for this call.

        Returns:
            `BatchFeature` with `input_values` + `attention_mask` [D, T, S] (audio), `input_ids` +
            `text_attention_mask` [D, T, L] (text), `utterance_mask` [D, T], `speaker_ids` [D, T] (-1 for padded
            turns, only with speakers) and `labels` [D, T] (-100 for padded turns, only with labels).
        """
        max_text_tokens = int(kwargs.pop("max_text_tokens", self.max_text_tokens))
        if kwargs:
            raise TypeError(f"HCAMProcessor got unexpected arguments: {sorted(kwargs)}")
        if text is None and audio is None:
            raise ValueError("HCAMProcessor needs text, audio or both")

        data = {}
        turn_counts = is_batch = None
        if audio is not None:
            audio_batch, is_batch = as_dialogue_batch(audio)
            turn_counts = [len(dialogue) for dialogue in audio_batch]
            audio_features = self.feature_extractor(
                audio_batch, sampling_rate=sampling_rate, return_tensors=None, return_attention_mask=True
            )
            data["input_values"] = audio_features["input_values"]
            data["attention_mask"] = audio_features["attention_mask"]
        if text is not None:
            text_batch, text_is_batch = _text_as_batch(text)
            text_counts = [len(dialogue) for dialogue in text_batch]
            if turn_counts is not None and text_counts != turn_counts:
                raise ValueError(
                    f"text and audio disagree: text has {len(text_counts)} dialogue(s) with turns {text_counts}, audio "
                    f"has {len(turn_counts)} with turns {turn_counts}; give one audio clip per transcript turn"
                )
            turn_counts, is_batch = text_counts, text_is_batch
            data.update(self._tokenize(text_batch, max_text_tokens))

        num_turns = max(turn_counts)
        for dialogue_index, count in enumerate(turn_counts):
            if count == 0:
                raise ValueError(f"dialogue {dialogue_index} has no turns")
        counts = np.asarray(turn_counts, dtype=np.int64)
        data["utterance_mask"] = (np.arange(num_turns) < counts[:, None]).astype(np.int64)

        if speakers is not None:
            speaker_ids = np.full((len(counts), num_turns), -1, dtype=np.int64)
            for dialogue_index, dialogue in enumerate(_per_dialogue(speakers, "speakers", is_batch, turn_counts)):
                try:
                    speaker_ids[dialogue_index, : len(dialogue)] = speaker_ids_of(dialogue)
                except TypeError as error:
                    raise ValueError(f"speakers dialogue {dialogue_index}: speakers must be hashable ({error})") from error
            data["speaker_ids"] = speaker_ids
        if labels is not None:
            label_ids = np.full((len(counts), num_turns), -100, dtype=np.int64)
            for dialogue_index, dialogue in enumerate(_per_dialogue(labels, "labels", is_batch, turn_counts)):
                for turn_index, label in enumerate(dialogue):
                    if not isinstance(label, numbers.Integral) or isinstance(label, bool):
                        raise ValueError(
                            f"labels dialogue {dialogue_index}, turn {turn_index}: {label!r} is not an integer class id; "
                            "map label names to ids with the model config's label2id (-100 = ignore)"
                        )
                label_ids[dialogue_index, : len(dialogue)] = dialogue
            data["labels"] = label_ids
        return BatchFeature(data, tensor_type=return_tensors)

    def _tokenize(self, text_batch: list[list[str]], max_text_tokens: int) -> dict:
        flat_turns = []
        for dialogue_index, dialogue in enumerate(text_batch):
            for turn_index, turn in enumerate(dialogue):
                if not turn.strip():
                    raise ValueError(
                        f"text dialogue {dialogue_index}, turn {turn_index} is empty: give its transcript (or an ASR "
                        "transcript), or drop the turn"
                    )
                flat_turns.append(turn)
        encoded = self.tokenizer(
            flat_turns,
            padding="longest",
            truncation=True,
            max_length=max_text_tokens,
            return_attention_mask=True,
            return_token_type_ids=False,
            return_tensors="np",
        )
        ids, mask = encoded["input_ids"].astype(np.int64), encoded["attention_mask"].astype(np.int64)
        full = [turn for turn, length in zip(flat_turns, mask.sum(1)) if length >= max_text_tokens]
        if full and any(len(ids_) > max_text_tokens for ids_ in self.tokenizer(full)["input_ids"]):
            logger.warning_once(f"A transcript longer than {max_text_tokens} tokens is truncated to its first "
                                f"{max_text_tokens} (max_text_tokens / --max_text_tokens; warned once).")
        num_turns = max(len(dialogue) for dialogue in text_batch)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = np.full((len(text_batch), num_turns, ids.shape[1]), pad_id, dtype=np.int64)
        text_attention_mask = np.zeros_like(input_ids)
        dialogue_index = np.repeat(np.arange(len(text_batch)), [len(dialogue) for dialogue in text_batch])
        turn_index = np.concatenate([np.arange(len(dialogue)) for dialogue in text_batch])
        input_ids[dialogue_index, turn_index] = ids
        text_attention_mask[dialogue_index, turn_index] = mask
        return {"input_ids": input_ids, "text_attention_mask": text_attention_mask}

    def batch_decode(self, *args, **kwargs):
        """Forwards to the tokenizer's `batch_decode`."""
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        """Forwards to the tokenizer's `decode`."""
        return self.tokenizer.decode(*args, **kwargs)


HCAMProcessor.register_for_auto_class("AutoProcessor")
