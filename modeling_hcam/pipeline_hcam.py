"""The `emotion-recognition-in-conversation` pipeline: a conversation in, one emotion per turn out.

Part of the Hub remote-code bundle (flat file, relative imports only). A checkpoint folder gets the pipeline with
`add_pipeline_to_folder(folder)` after `model.save_pretrained(folder)` and `processor.save_pretrained(folder)`;
then, in any process:

    from transformers import pipeline
    classifier = pipeline("emotion-recognition-in-conversation", model=folder, trust_remote_code=True)
    classifier({"turns": [{"audio": "a.wav", "text": "Where were you?", "speaker": "A"},
                          {"audio": "b.wav", "text": "Out.", "speaker": "B"}]})

A conversation is a dict with a "turns" list, or the list of turns itself; a list of conversations (dicts or lists
of turns) is a batch, and `[]` gives `[]`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence

import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .feature_extraction_hcam import is_audio_span
from .modeling_hcam import HCAMConversationStream, transcript_and_source, turn_prediction
from .processing_hcam import speaker_ids_of

TASK = "emotion-recognition-in-conversation"


class HCAMEmotionPipeline(Pipeline):
    r"""Emotion recognition in conversation with HCAM.

    Input: one conversation, `{"turns": [turn, ...]}` (optionally with a `"dialogue_id"`, used in error messages) or
    just its list of turns `[turn, ...]`; or a list of conversations (each a dict or a list of turns): the result is
    then one list of turn results per conversation (`[]` gives `[]`). A turn is a dict with
    - `"audio"`: a file path, an encoded file's bytes, a 1-D array at the feature extractor's rate (16 kHz; integer PCM
      is scaled, 2-D stereo averaged; a warning says once that a bare array was read at that rate), or
      `{"array" or "raw": ..., "sampling_rate": ...}` (resampled when needed), or 🤗 datasets' undecoded
      `{"bytes": ..., "path": ...}`; optional `"sampling_rate"` next to a bare array. Or a span of a file,
      `{"path": ..., "start": seconds, "end": seconds[, "channel": k]}`: read when the turn is encoded or transcribed
      and not kept, so that the turns of an hour-long recording never sit in memory together. Needed when the model
      has the audio modality, ignored otherwise.
    - `"text"`: the transcript. Needed when the model has the text modality, unless a `transcriber` is given.
    - `"speaker"`: any hashable (optional); drives the speaker-aware attention of stage II.

    Output per conversation: a list with one dict per turn: `turn`, `speaker`, `label` (the test-time ensemble),
    `score` (its probability), `probabilities` ({label: probability}), `stages` ({head: label} for every stage head
    the model has), and, when the model reads text, `text` (the transcript used) and `text_source` ("given", "asr",
    or "asr:empty" when the recogniser heard nothing and the turn was read as "[inaudible]").

    Call parameters:
        batch_size (`int`, *optional*, defaults to 1): conversations per forward pass. Their turns are encoded
            together (longest first, `config.encoder_chunk_size` turns per encoder call) and the context and fusion
            stages run on the conversations padded by turns; results equal those of one conversation at a time.
        transcriber (`callable` or a transformers ASR pipeline, *optional*): used for turns that have no text when the
            model reads text. A callable takes the list of 16 kHz arrays of every such turn of the batch and returns
            one transcript per array (a string, or a dict with "text"; a sequence rather than a list when turns are
            spans of a file: each item is read when taken, so a transcriber that takes them a slice at a time holds
            only that slice; e.g. `hcam.processing.asr.Transcriber(
            "whisper")`); a `pipeline("automatic-speech-recognition", ...)` is called with
            `{"raw": array, "sampling_rate": rate}` inputs.
        top_k (`int` or `None`, *optional*): also return, per turn, `scores`: the `top_k` best labels of the
            ensemble as `[{"label": ..., "score": ...}]`, best first (`None`: every label), as transformers'
            text-classification pipeline does. Not given: no `scores` field.
        function_to_apply (`str`, *optional*, defaults to `"softmax"`): what `score` (and `scores`) hold, applied to
            the ensemble's logits: `"softmax"`, `"sigmoid"` or `"none"` (the logits). `probabilities` are always the
            softmax probabilities, and `label` the best label, whichever function.
        progress (`callable`, *optional*): called with the number of turns just encoded (for progress bars:
            `progress=bar.update`).
        output_attentions (`bool`, *optional*): also return, per turn, `attentions`: {modality: list over heads of the
            stage-II attention weights over every turn of the conversation} (stage ≥ 2 models).

    Device: `pipeline(..., device="cuda:0")` (or `device=0`), like any transformers pipeline.

    Live (a causal model, `config.context="causal"`): `pipe(turns, stream=True)` reads an iterable of turns lazily and
    yields each turn's result as soon as that turn has been read; `pipe.start_conversation()` gives the
    `HCAMConversationStream` behind it (`add_turn(audio=..., text=..., speaker=...)`). Each turn's encoders run once
    and the results equal those of the whole conversation at once.

    Long conversations: turns go through the utterance encoders `config.encoder_chunk_size` at a time, each chunk
    padded only to its own longest turn, so memory grows with the chunk, not with the conversation; the context and
    fusion stages then run on the whole conversations' utterance embeddings.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    SAME_CHUNK_RATIO = 0.6

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model.eval()
        if self.processor is None:
            raise ValueError(
                "The HCAM pipeline needs the checkpoint's HCAMProcessor: save it next to the model "
                "(processor.save_pretrained(folder)) or pass processor=..."
            )

    # ----- parameters ----------------------------------------------------------------------------------------------
    FUNCTIONS = ("softmax", "sigmoid", "none")
    _NOT_GIVEN = object()

    def _sanitize_parameters(self, transcriber=None, progress=None, output_attentions=None, top_k=_NOT_GIVEN,
                             function_to_apply=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {sorted(kwargs)}")
        forward_params, postprocess_params = {}, {}
        if top_k is not self._NOT_GIVEN:
            if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
                raise ValueError(f"top_k must be a positive integer or None (every label), got {top_k!r}")
            postprocess_params["top_k"] = top_k
        if function_to_apply is not None:
            name = str(getattr(function_to_apply, "value", function_to_apply)).lower()
            if name not in self.FUNCTIONS:
                raise ValueError(f"function_to_apply must be one of {list(self.FUNCTIONS)}, got {function_to_apply!r}")
            postprocess_params["function_to_apply"] = name
        if transcriber is not None:
            forward_params["transcriber"] = self._as_transcriber(transcriber)
        if progress is not None:
            forward_params["progress"] = progress
        if output_attentions:
            if self.model.config.num_stages < 2:
                raise ValueError("output_attentions needs a stage-2 or stage-3 model: a stage-1 model has no "
                                 "attention over turns")
            forward_params["output_attentions"] = True
        return {}, forward_params, postprocess_params

    def _as_transcriber(self, transcriber):
        """`transcriber` as a callable list of arrays -> list of transcripts: a transformers ASR pipeline is called
        with `{"raw": array, "sampling_rate": rate}` inputs."""
        if isinstance(transcriber, Pipeline):
            if getattr(transcriber, "task", None) != "automatic-speech-recognition":
                raise ValueError(f"transcriber: a transformers pipeline must be an automatic-speech-recognition one, "
                                 f"got task {getattr(transcriber, 'task', None)!r}")
            rate = self._sampling_rate()
            asr = transcriber

            def transcriber(waveforms):
                return [out["text"] for out in asr([{"raw": w, "sampling_rate": rate} for w in waveforms])]
        if not callable(transcriber):
            raise TypeError(f"transcriber must be a callable (list of arrays -> list of transcripts) or a transformers "
                            f"ASR pipeline, got {type(transcriber).__name__}")
        return transcriber

    def get_iterator(self, inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params):
        """Several conversations: preprocess each, run `batch_size` of them per forward, postprocess each (lazily)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if num_workers and num_workers > 1:
            raise ValueError("num_workers > 1 is not supported: conversations are preprocessed in the calling process")
        return self._iterate(inputs, batch_size, preprocess_params, forward_params, postprocess_params)

    def _iterate(self, inputs, batch_size, preprocess_params, forward_params, postprocess_params):
        batch = []
        for index, conversation in enumerate(inputs):
            batch.append(self.preprocess(conversation, index=index, **preprocess_params))
            if len(batch) == batch_size:
                yield from self._run_batch(batch, forward_params, postprocess_params)
                batch = []
        if batch:
            yield from self._run_batch(batch, forward_params, postprocess_params)

    def _run_batch(self, batch, forward_params, postprocess_params):
        outputs = self.forward({"conversations": batch}, **forward_params)
        for output in outputs["conversations"]:
            yield self.postprocess(output, **postprocess_params)

    # ----- preprocess ----------------------------------------------------------------------------------------------
    @property
    def modalities(self):
        return list(self.model.config.modalities)

    def _sampling_rate(self):
        return int(self.processor.feature_extractor.sampling_rate)

    @staticmethod
    def _where(name, turn_index):
        return f"{name}, turn {turn_index}" if name else f"turn {turn_index}"

    def _waveform(self, audio, where, turn):
        """A turn's audio as float32 mono at the feature extractor's rate (`HCAMFeatureExtractor.waveform`)."""
        return self.processor.feature_extractor.waveform(audio, where, turn.get("sampling_rate"))

    def _audio(self, conv, index):
        """Turn `index`'s waveform: kept in memory, or (a span of a file) read now."""
        audio = conv["waveforms"][index]
        return self._waveform(audio, self._where(conv["name"], index), {}) if is_audio_span(audio) else audio

    def preprocess(self, conversation, index=None):
        if isinstance(conversation, (list, tuple)):  # a conversation given as its list of turns
            conversation = {"turns": list(conversation)}
        if not isinstance(conversation, dict) or "turns" not in conversation:
            raise ValueError(
                'A conversation is a dict {"turns": [{"audio": ..., "text": ..., "speaker": ...}, ...]} or its list of '
                f"turns; a list of conversations is a batch. Got {type(conversation).__name__}"
                + (f" with keys {sorted(conversation)} (one turn? pass a list of turns)."
                   if isinstance(conversation, dict) else ".")
            )
        if conversation.get("dialogue_id") is not None:
            name = f"dialogue {conversation['dialogue_id']!r}"
        else:
            name = f"conversation {index}" if index is not None else ""
        turns = conversation["turns"]
        if not isinstance(turns, (list, tuple)) or len(turns) == 0:
            raise ValueError(f'{name + ": " if name else ""}conversation["turns"] must be a non-empty list of turns')
        uses_audio, uses_text = "audio" in self.modalities, "text" in self.modalities
        waveforms, lengths, texts, speakers, missing_text = [], [], [], [], []
        for turn_index, turn in enumerate(turns):
            where = self._where(name, turn_index)
            if not isinstance(turn, dict):
                raise ValueError(f"{where}: expected a dict with 'audio', 'text' and/or 'speaker', got "
                                 f"{type(turn).__name__}")
            speakers.append(turn.get("speaker"))
            text = turn.get("text") if uses_text else None
            if text is not None and not isinstance(text, str):
                raise ValueError(f"{where}: text must be a string, got {type(text).__name__}")
            text = (text or "").strip()
            if uses_text and not text:
                missing_text.append(turn_index)
            texts.append(text)
            audio = turn.get("audio")
            if uses_audio or (uses_text and not text):
                if audio is None or (isinstance(audio, str) and not audio):
                    if uses_audio:
                        raise ValueError(f"{where} has no audio, but this model reads speech "
                                         f"(modalities {self.modalities}): give each turn an 'audio' path or array")
                    raise ValueError(
                        f"{where} has empty text, but this model reads transcripts (modalities {self.modalities}): "
                        "give its transcript, or its audio and a transcriber=... (ASR) to transcribe it"
                    )
                waveform = self._waveform(audio, where, turn)  # read now: a bad turn fails before any encoding
                lengths.append(len(waveform))
                # a span of a file is read again when needed rather than kept (bounded memory on long recordings)
                waveforms.append(audio if is_audio_span(audio) else waveform)
            else:
                waveforms.append(None)
                lengths.append(0)
        return {"name": name, "waveforms": waveforms if uses_audio or missing_text else None, "lengths": lengths,
                "texts": texts if uses_text else None, "speakers": speakers, "missing_text": missing_text,
                "text_sources": ["given"] * len(turns) if uses_text else None, "uses_audio": uses_audio}

    # ----- forward -------------------------------------------------------------------------------------------------
    def _transcribe(self, batch, transcriber):
        """Fill every missing transcript of the batch with one call of the transcriber."""
        wanted = [(conv, i) for conv in batch for i in conv["missing_text"]]
        if not wanted:
            return
        if transcriber is None:
            conv, i = wanted[0]
            raise ValueError(
                f"{self._where(conv['name'], i)} has empty text, but this model reads transcripts (modalities "
                f"{self.modalities}): give its transcript, or pass transcriber=... (ASR) to transcribe it"
            )
        transcripts = list(transcriber(_Waveforms(self, wanted)))
        if len(transcripts) != len(wanted):
            raise ValueError(f"the transcriber returned {len(transcripts)} transcripts for {len(wanted)} turns")
        transcripts = [t["text"] if isinstance(t, dict) else t for t in transcripts]  # ASR pipelines: {"text": ...}
        for (conv, i), transcript in zip(wanted, transcripts):
            # silence or noise still needs some text for the text encoder: read it as "[inaudible]" and say so
            conv["texts"][i], conv["text_sources"][i] = transcript_and_source(transcript)

    def _encode(self, batch, progress=None):
        """Stage-I embeddings of every turn of the batch, `(D, T, E)` per modality, turns padded with zeros."""
        items = [(d, t) for d, conv in enumerate(batch) for t in range(len(conv["speakers"]))]
        uses_audio = batch[0]["uses_audio"]

        def size(item):  # longest first: each encoder chunk is padded to its own longest turn
            d, t = item
            return batch[d]["lengths"][t] if uses_audio else len(batch[d]["texts"][t])

        items.sort(key=size, reverse=True)
        chunk = max(1, int(self.model.config.encoder_chunk_size))
        num_turns = max(len(conv["speakers"]) for conv in batch)
        # at most `chunk` turns per encoder call, and a new call once a turn is shorter than SAME_CHUNK_RATIO of the
        # call's longest, so that padding never takes more than that share of a call
        parts = []
        for item in items:
            if not parts or len(parts[-1]) == chunk or size(item) < self.SAME_CHUNK_RATIO * size(parts[-1][0]):
                parts.append([])
            parts[-1].append(item)
        embeddings = {}
        for part in parts:
            try:
                features = self.processor(
                    text=[batch[d]["texts"][t] for d, t in part] if batch[0]["texts"] is not None else None,
                    audio=[self._audio(batch[d], t) for d, t in part] if uses_audio else None,
                    sampling_rate=self._sampling_rate(),
                    return_tensors="pt",
                )
            except ValueError as error:
                # the processor numbers turns inside the chunk: report the conversation's own turn
                def rename(match):
                    d, t = part[int(match.group(1))]
                    return self._where(batch[d]["name"], t)

                raise type(error)(re.sub(r"dialogue 0, turn (\d+)", rename, str(error))) from error
            features = {key: value.to(self.device) for key, value in features.items()}
            encoded = self.model.get_utterance_embeddings(**features)
            rows = torch.tensor([d for d, _ in part], device=self.device)
            cols = torch.tensor([t for _, t in part], device=self.device)
            for modality, values in encoded.items():
                if modality not in embeddings:
                    embeddings[modality] = values.new_zeros(len(batch), num_turns, values.shape[-1])
                embeddings[modality][rows, cols] = values[0]
            if progress is not None:
                progress(len(part))
        return embeddings

    def _forward(self, model_inputs, transcriber=None, progress=None, output_attentions=False):
        batched = "conversations" in model_inputs
        batch = model_inputs["conversations"] if batched else [model_inputs]
        self._transcribe(batch, transcriber)
        embeddings = self._encode(batch, progress)
        counts = torch.tensor([len(conv["speakers"]) for conv in batch], device=self.device)
        utterance_mask = (torch.arange(int(counts.max()), device=self.device)[None, :] < counts[:, None]).long()
        speaker_ids = torch.full(utterance_mask.shape, -1, dtype=torch.long, device=self.device)
        for d, conv in enumerate(batch):
            speaker_ids[d, : len(conv["speakers"])] = torch.tensor(speaker_ids_of(conv["speakers"]))
        # a conversation without speakers uses no speaker masks: run it apart from those that have them
        with_speakers = [any(s is not None for s in conv["speakers"]) for conv in batch]
        heads = self.model.config.stage_heads()
        results = [None] * len(batch)
        for flag in (True, False):
            rows = [d for d in range(len(batch)) if with_speakers[d] == flag]
            if not rows:
                continue
            index = torch.tensor(rows, device=self.device)
            length = int(counts[index].max())
            kwargs = {"output_attentions": True} if output_attentions else {}
            output = self.model(
                audio_embeddings=embeddings["audio"][index, :length] if "audio" in embeddings else None,
                text_embeddings=embeddings["text"][index, :length] if "text" in embeddings else None,
                utterance_mask=utterance_mask[index, :length],
                speaker_ids=speaker_ids[index, :length] if flag else None,
                **kwargs,
            )
            logits = output.logits.float().cpu()
            probabilities = logits.softmax(-1)
            predictions = {h: getattr(output, f"{h}_logits").argmax(-1).cpu() for h in heads}
            for row, d in enumerate(rows):
                n = len(batch[d]["speakers"])
                results[d] = {
                    "probabilities": probabilities[row, :n],
                    "logits": logits[row, :n],
                    "stage_predictions": {h: p[row, :n] for h, p in predictions.items()},
                    "speakers": batch[d]["speakers"],
                    "texts": batch[d]["texts"],
                    "text_sources": batch[d]["text_sources"],
                }
                if output_attentions:
                    results[d]["attentions"] = {
                        m: getattr(output, f"{m}_context_attentions")[row, :, :n, :n].float().cpu()
                        for m in self.modalities}
        return {"conversations": results} if batched else results[0]

    # ----- postprocess ---------------------------------------------------------------------------------------------
    def postprocess(self, model_outputs, top_k=_NOT_GIVEN, function_to_apply="softmax"):
        texts = model_outputs["texts"]
        logits = model_outputs["logits"]
        scores = {"softmax": logits.softmax(-1), "sigmoid": logits.sigmoid(), "none": logits}[function_to_apply]
        labels = [self.model.config.id2label[i] for i in range(len(self.model.config.id2label))]
        attentions = {m: a.tolist() for m, a in model_outputs.get("attentions", {}).items()}
        results = []
        for index, row in enumerate(model_outputs["probabilities"].tolist()):
            result = turn_prediction(index, row, {h: p[index] for h, p in model_outputs["stage_predictions"].items()},
                                     self.model.config.id2label, model_outputs["speakers"][index],
                                     texts[index] if texts is not None else None,
                                     model_outputs["text_sources"][index] if texts is not None else None)
            row_scores = scores[index].tolist()
            result["score"] = row_scores[labels.index(result["label"])]
            if top_k is not self._NOT_GIVEN:
                best = sorted(range(len(labels)), key=lambda i: -row_scores[i])[: top_k or len(labels)]
                result["scores"] = [{"label": labels[i], "score": row_scores[i]} for i in best]
            if attentions:
                result["attentions"] = {m: [head[index] for head in a] for m, a in attentions.items()}
            results.append(result)
        return results

    # ----- live conversations --------------------------------------------------------------------------------------
    def start_conversation(self, transcriber=None) -> HCAMConversationStream:
        """A live conversation (causal models): `add_turn(audio=..., text=..., speaker=...)` returns each turn's result
        (the same dict as the pipeline gives per turn) as the turn arrives. See `HCAMConversationStream`."""
        return HCAMConversationStream(self.model, self.processor,
                                      transcriber=None if transcriber is None else self._as_transcriber(transcriber))

    def __call__(self, inputs=None, *args, stream=False, **kwargs):
        """`stream=True` (causal models): `inputs` is an iterable of turns (or one conversation dict), read lazily,
        and the call returns a generator that yields each turn's result as soon as that turn has been read: a live
        source (a queue, a socket) can feed it turn by turn. Otherwise the usual pipeline call."""
        if not stream:
            if isinstance(inputs, (list, tuple)):
                if len(inputs) == 0:
                    return []
                if all(isinstance(item, dict) and "turns" not in item for item in inputs):
                    return super().__call__({"turns": list(inputs)}, *args, **kwargs)  # one conversation's turns
            return super().__call__(inputs, *args, **kwargs)
        unknown = sorted(set(kwargs) - {"transcriber"})
        if args or unknown:
            raise TypeError(f"stream=True takes the turns and transcriber=... only; got {unknown or list(args)}")
        conversation = self.start_conversation(transcriber=kwargs.get("transcriber"))  # refuses a non-causal model now
        return self._stream(conversation, inputs)

    @staticmethod
    def _stream(conversation, turns):
        if isinstance(turns, dict):
            turns = turns.get("turns", [])
        for index, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise ValueError(f"turn {index}: expected a dict with 'audio', 'text' and/or 'speaker', got "
                                 f"{type(turn).__name__}")
            yield conversation.add_turn(audio=turn.get("audio"), text=turn.get("text"), speaker=turn.get("speaker"),
                                        sampling_rate=turn.get("sampling_rate"))


class _Waveforms(Sequence):
    """The waveforms of (conversation, turn) pairs as a sequence that reads each one when it is taken (a span of a
    file is not kept in memory): what the pipeline hands a transcriber."""

    def __init__(self, pipe, items):
        self.pipe, self.items = pipe, items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.pipe._audio(conv, i) for conv, i in self.items[index]]
        conv, i = self.items[index]
        return self.pipe._audio(conv, i)


def add_pipeline_to_folder(folder):
    """Make a saved HCAM checkpoint usable with `pipeline(TASK, model=folder, trust_remote_code=True)`.

    Call after `model.save_pretrained(folder)` and `processor.save_pretrained(folder)`: it copies this file (and the
    feature extractor file it imports) next to the model and records the pipeline in config.json under
    `custom_pipelines`. Running it twice is harmless.
    """
    folder = os.fspath(folder)
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{config_path} not found: call model.save_pretrained({folder!r}) first")
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("pipeline_hcam.py", "feature_extraction_hcam.py"):  # the pipeline imports the extractor's helpers
        source, target = os.path.join(here, name), os.path.join(folder, name)
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
