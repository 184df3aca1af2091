"""The `emotion-recognition-in-conversation` pipeline: a conversation in, one emotion per turn out.

Part of the Hub remote-code bundle (flat file, relative imports only). A checkpoint folder gets the pipeline with
`add_pipeline_to_folder(folder)` after `model.save_pretrained(folder)` and `processor.save_pretrained(folder)`;
then, in any process:

    from transformers import pipeline
    classifier = pipeline("emotion-recognition-in-conversation", model=folder, trust_remote_code=True)
    classifier({"turns": [{"audio": "a.wav", "text": "Where were you?", "speaker": "A"},
                          {"audio": "b.wav", "text": "Out.", "speaker": "B"}]})

A conversation is a dict with a "turns" list (a bare list of turns would be read by transformers as a batch of
separate inputs); a list of such dicts is a batch of conversations.
"""
from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .feature_extraction_hcam import load_audio

TASK = "emotion-recognition-in-conversation"


def _resample(waveform: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    import torchaudio.functional as taf

    return taf.resample(torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)), orig_rate, new_rate).numpy()


class HCAMEmotionPipeline(Pipeline):
    r"""Emotion recognition in conversation with HCAM.

    Input: `{"turns": [turn, ...]}` or a list of such conversations. A turn is a dict with
    - `"audio"`: a file path, a 1-D array at the feature extractor's rate (16 kHz), or
      `{"array": ..., "sampling_rate": ...}` (resampled when needed); optional `"sampling_rate"` next to a bare array.
      Needed when the model has the audio modality, ignored otherwise.
    - `"text"`: the transcript. Needed when the model has the text modality, unless a `transcriber` is given.
    - `"speaker"`: any hashable (optional); drives the speaker-aware attention of stage II.

    Output per conversation: a list with one dict per turn: `turn`, `speaker`, `label` (the test-time ensemble),
    `score` (its probability), `probabilities` ({label: probability}), `stages` ({head: label} for every stage head
    the model has), and `text` (the transcript used) when the model reads text.

    Call parameters:
        transcriber (`callable`, *optional*): `transcriber(list_of_16kHz_arrays) -> list[str]`, used for turns that
            have no text when the model reads text (e.g. `hcam.processing.asr.Transcriber("whisper")`).
        progress (`callable`, *optional*): called with the number of turns encoded so far (for progress bars).

    Long conversations: turns go through the utterance encoders `config.encoder_chunk_size` at a time, each chunk
    padded only to its own longest turn, so memory grows with the chunk, not with the conversation; the context and
    fusion stages then run on the whole conversation's utterance embeddings.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model.eval()
        if self.processor is None:
            raise ValueError(
                "The HCAM pipeline needs the checkpoint's HCAMProcessor: save it next to the model "
                "(processor.save_pretrained(folder)) or pass processor=..."
            )

    # ----- parameters ----------------------------------------------------------------------------------------------
    def _sanitize_parameters(self, transcriber=None, progress=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {sorted(kwargs)}")
        preprocess_params = {"transcriber": transcriber} if transcriber is not None else {}
        forward_params = {"progress": progress} if progress is not None else {}
        return preprocess_params, forward_params, {}

    def __call__(self, inputs, *args, batch_size=None, **kwargs):
        batch_size = batch_size if batch_size is not None else getattr(self, "_batch_size", None)
        if batch_size not in (None, 1):
            # transformers would stack the per-turn rows of several conversations and mix them up; conversations run
            # one at a time, each already batched internally by config.encoder_chunk_size.
            raise ValueError(
                f"batch_size={batch_size} is not supported: conversations are processed one at a time (their turns are "
                "batched internally by config.encoder_chunk_size). Leave batch_size unset."
            )
        return super().__call__(inputs, *args, **kwargs)

    # ----- preprocess ----------------------------------------------------------------------------------------------
    @property
    def modalities(self):
        return list(self.model.config.modalities)

    def _sampling_rate(self):
        return int(self.processor.feature_extractor.sampling_rate)

    def _waveform(self, audio, turn_index, turn):
        rate = self._sampling_rate()
        if isinstance(audio, (str, os.PathLike)):
            try:
                return load_audio(audio, rate)
            except ValueError as error:
                raise type(error)(f"turn {turn_index}: {error}") from error
        given_rate = turn.get("sampling_rate", rate)
        if isinstance(audio, dict):
            if "array" not in audio:
                raise ValueError(f"turn {turn_index}: an audio dict needs 'array' (and 'sampling_rate'); "
                                 f"got keys {sorted(audio)}")
            given_rate = audio.get("sampling_rate", rate)
            audio = audio["array"]
        if isinstance(audio, torch.Tensor):
            audio = audio.detach().cpu().numpy()
        waveform = np.asarray(audio)
        if waveform.ndim != 1 or waveform.size == 0:
            raise ValueError(f"turn {turn_index}: audio must be a non-empty 1-D waveform, got shape {waveform.shape}")
        if waveform.dtype.kind in "iu":
            waveform = waveform.astype(np.float32) / float(np.iinfo(waveform.dtype).max)
        waveform = waveform.astype(np.float32, copy=False)
        if int(given_rate) != rate:
            waveform = _resample(waveform, int(given_rate), rate)
        return waveform

    def preprocess(self, conversation, transcriber=None):
        if not isinstance(conversation, dict) or "turns" not in conversation:
            raise ValueError(
                'A conversation is a dict {"turns": [{"audio": ..., "text": ..., "speaker": ...}, ...]}; a list of such '
                f"dicts is a batch of conversations. Got {type(conversation).__name__}."
            )
        turns = conversation["turns"]
        if not isinstance(turns, (list, tuple)) or len(turns) == 0:
            raise ValueError('conversation["turns"] must be a non-empty list of turns')
        uses_audio, uses_text = "audio" in self.modalities, "text" in self.modalities
        waveforms, texts, speakers, missing_text = [], [], [], []
        for index, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise ValueError(f"turn {index}: expected a dict with 'audio', 'text' and/or 'speaker', got "
                                 f"{type(turn).__name__}")
            speakers.append(turn.get("speaker"))
            audio = turn.get("audio")
            needs_audio = uses_audio or (uses_text and transcriber is not None and not str(turn.get("text") or "").strip())
            if needs_audio:
                if audio is None or (isinstance(audio, str) and not audio):
                    raise ValueError(f"turn {index} has no audio, but this model reads speech "
                                     f"(modalities {self.modalities}): give each turn an 'audio' path or array")
                waveforms.append(self._waveform(audio, index, turn))
            else:
                waveforms.append(None)
            if uses_text:
                text = turn.get("text")
                if text is not None and not isinstance(text, str):
                    raise ValueError(f"turn {index}: text must be a string, got {type(text).__name__}")
                text = (text or "").strip()
                if not text:
                    if transcriber is None:
                        raise ValueError(
                            f"turn {index} has empty text, but this model reads transcripts (modalities "
                            f"{self.modalities}): give its transcript, or pass transcriber=... (ASR) to transcribe it"
                        )
                    missing_text.append(index)
                texts.append(text)
        if missing_text:
            transcripts = transcriber([waveforms[i] for i in missing_text])
            for index, transcript in zip(missing_text, transcripts):
                transcript = (transcript or "").strip()
                if not transcript:
                    raise ValueError(f"turn {index}: the speech recogniser returned an empty transcript; give the "
                                     "turn's text, or drop the turn")
                texts[index] = transcript
        if not uses_audio:
            waveforms = None
        return {"waveforms": waveforms, "texts": texts if uses_text else None, "speakers": speakers}

    # ----- forward -------------------------------------------------------------------------------------------------
    def _chunk_inputs(self, waveforms, texts, start, stop):
        try:
            features = self.processor(
                text=texts[start:stop] if texts is not None else None,
                audio=waveforms[start:stop] if waveforms is not None else None,
                sampling_rate=self._sampling_rate(),
                return_tensors="pt",
            )
        except ValueError as error:
            # the processor numbers turns inside the chunk: report the conversation's turn number
            message = re.sub(r"dialogue 0, turn (\d+)", lambda m: f"turn {int(m.group(1)) + start}", str(error))
            raise type(error)(message) from error
        return {key: value.to(self.device) for key, value in features.items()}

    def _forward(self, model_inputs, progress=None):
        waveforms, texts, speakers = model_inputs["waveforms"], model_inputs["texts"], model_inputs["speakers"]
        num_turns = len(speakers)
        chunk = max(1, int(self.model.config.encoder_chunk_size))
        pieces = {modality: [] for modality in self.modalities}
        for start in range(0, num_turns, chunk):
            stop = min(start + chunk, num_turns)
            embeddings = self.model.get_utterance_embeddings(**self._chunk_inputs(waveforms, texts, start, stop))
            for modality in self.modalities:
                pieces[modality].append(embeddings[modality])
            if progress is not None:
                progress(stop)
        first_seen = {}
        speaker_ids = [first_seen.setdefault(s, len(first_seen)) for s in speakers]
        has_speakers = any(s is not None for s in speakers)
        output = self.model(
            audio_embeddings=torch.cat(pieces["audio"], dim=1) if "audio" in pieces else None,
            text_embeddings=torch.cat(pieces["text"], dim=1) if "text" in pieces else None,
            utterance_mask=torch.ones(1, num_turns, dtype=torch.long, device=self.device),
            speaker_ids=torch.tensor([speaker_ids], device=self.device) if has_speakers else None,
        )
        heads = self.model.config.stage_heads()
        return {
            "probabilities": output.logits[0].float().softmax(-1).cpu(),
            "stage_predictions": {h: getattr(output, f"{h}_logits")[0].argmax(-1).cpu() for h in heads},
            "speakers": speakers,
            "texts": texts,
        }

    # ----- postprocess ---------------------------------------------------------------------------------------------
    def postprocess(self, model_outputs):
        id2label = self.model.config.id2label
        labels = [id2label[i] for i in range(len(id2label))]
        probabilities = model_outputs["probabilities"].tolist()
        stages = {h: p.tolist() for h, p in model_outputs["stage_predictions"].items()}
        results = []
        for index, row in enumerate(probabilities):
            best = int(np.argmax(row))
            result = {
                "turn": index,
                "speaker": model_outputs["speakers"][index],
                "label": labels[best],
                "score": float(row[best]),
                "probabilities": dict(zip(labels, map(float, row))),
                "stages": {h: labels[p[index]] for h, p in stages.items()},
            }
            if model_outputs["texts"] is not None:
                result["text"] = model_outputs["texts"][index]
            results.append(result)
        return results


def add_pipeline_to_folder(folder):
    """Make a saved HCAM checkpoint usable with `pipeline(TASK, model=folder, trust_remote_code=True)`.

    Call after `model.save_pretrained(folder)` and `processor.save_pretrained(folder)`: it copies this file (and the
    feature extractor file it imports, if missing) next to the model and records the pipeline in config.json under
    `custom_pipelines`. Running it twice is harmless.
    """
    folder = os.fspath(folder)
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{config_path} not found: call model.save_pretrained({folder!r}) first")
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("pipeline_hcam.py", "feature_extraction_hcam.py"):
        source, target = os.path.join(here, name), os.path.join(folder, name)
        if name == "pipeline_hcam.py" or not os.path.isfile(target):
            if os.path.abspath(source) != os.path.abspath(target):
                shutil.copyfile(source, target)
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    config.setdefault("custom_pipelines", {})[TASK] = {
        "impl": "pipeline_hcam.HCAMEmotionPipeline",
        "pt": ["AutoModel"],
        "type": "multimodal",
    }
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    return folder


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=HCAMEmotionPipeline, pt_model=AutoModel, type="multimodal")
