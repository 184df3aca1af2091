"""Run an HCAM model that hcam-export wrote, with onnxruntime: numpy, onnxruntime and `tokenizers` only (no PyTorch,
no hcam). hcam-export copies this file into its output folder as hcam_onnx.py.

    from hcam_onnx import HCAMOnnx                       # this file, beside model.onnx
    model = HCAMOnnx("exported")                         # the folder hcam-export wrote
    model([{"audio": waveform, "text": "Where were you?", "speaker": "A"},   # 1-D float array at 16 kHz
           {"audio": "turn2.wav", "text": "Out.", "speaker": "B"}])          # a path needs `soundfile`
    # -> one dict per turn: label, score, probabilities {label: p}, stages {head: label}

    python hcam_onnx.py exported conversation.json       # a JSON list of turns like the above (audio as paths)

The inputs are built as HCAMProcessor builds them (each turn's audio cut to max_duration_seconds and normalised to
zero mean and unit variance, the transcript tokenised with tokenizer.json and cut to max_text_tokens, speakers
numbered in order of first appearance; a conversation without speakers runs without speaker masks). Audio must
already be at the model's sampling rate (16 kHz) and mono: this file does not resample. As HCAM's pipeline does, the
encoders take turns of similar length together (model.onnx, each turn a one-turn dialogue), and the conversations
then run from the turns' embeddings (conversation.onnx).
"""
import json
import os
import sys

import numpy as np


class HCAMOnnx:
    """An exported HCAM: `folder` holds model.onnx, hcam_onnx.json and (for a model that reads text) tokenizer.json.
    `threads`: onnxruntime's intra-op threads (1 suits a shared CPU; 0 = onnxruntime's default)."""

    def __init__(self, folder, threads=1):
        import onnxruntime

        with open(os.path.join(folder, "hcam_onnx.json"), encoding="utf-8") as f:
            self.settings = json.load(f)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self.session, self.conversation = (
            onnxruntime.InferenceSession(os.path.join(folder, name), options, providers=["CPUExecutionProvider"])
            for name in ("model.onnx", "conversation.onnx"))
        self.labels = self.settings["labels"]
        self.tokenizer = None
        if "text" in self.settings["modalities"]:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
            self.tokenizer.no_padding()
            self.tokenizer.enable_truncation(self.settings["max_text_tokens"])

    def _waveform(self, audio, where):
        if isinstance(audio, (str, os.PathLike)):
            import soundfile

            audio, rate = soundfile.read(audio, dtype="float32", always_2d=True)
            if rate != self.settings["sampling_rate"]:
                raise ValueError(f"{where}: audio at {rate} Hz; resample it to {self.settings['sampling_rate']} Hz")
            audio = audio.mean(axis=1)
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0 or not np.isfinite(audio).all() or not np.abs(audio).max() > 0:
            raise ValueError(f"{where}: audio must be a non-empty, finite, not silent 1-D array")
        if self.settings["max_duration_seconds"] is not None:
            audio = audio[: int(round(self.settings["max_duration_seconds"] * self.settings["sampling_rate"]))]
        if self.settings["do_normalize"]:
            audio = audio - audio.mean(dtype=np.float64).astype(np.float32)
            audio = audio / np.float32(np.sqrt(np.mean(audio * audio, dtype=np.float64) + 1e-7))
        return audio

    def inputs(self, conversations):
        """The graph's inputs (numpy arrays, as HCAMProcessor gives them) for a list of conversations."""
        counts = [len(conversation) for conversation in conversations]
        if not counts or min(counts) == 0:
            raise ValueError("give at least one conversation, each with at least one turn")
        shape = (len(conversations), max(counts))
        feed = {"utterance_mask": (np.arange(shape[1]) < np.array(counts)[:, None]).astype(np.int64),
                "speaker_ids": np.full(shape, -1, dtype=np.int64)}
        audio, tokens = {}, {}
        for d, conversation in enumerate(conversations):
            speakers = [turn.get("speaker") for turn in conversation]
            if any(s is not None for s in speakers):
                first_seen = {}
                feed["speaker_ids"][d, : len(speakers)] = [first_seen.setdefault(s, len(first_seen)) for s in speakers]
            for t, turn in enumerate(conversation):
                where = f"conversation {d}, turn {t}"
                if "audio" in self.settings["modalities"]:
                    audio[d, t] = self._waveform(turn.get("audio"), where)
                if self.tokenizer is not None:
                    text = (turn.get("text") or "").strip()
                    if not text:
                        raise ValueError(f"{where} has no text, and this model reads transcripts")
                    tokens[d, t] = self.tokenizer.encode(text).ids
        for values, length, grid in ((audio, "attention_mask", "input_values"),
                                     (tokens, "text_attention_mask", "input_ids")):
            if not values:
                continue
            width = max(len(v) for v in values.values())
            fill = self.settings["padding_value"] if grid == "input_values" else self.settings["pad_token_id"]
            feed[grid] = np.full((*shape, width), fill, dtype=np.float32 if grid == "input_values" else np.int64)
            feed[length] = np.zeros((*shape, width), dtype=np.int64)
            for (d, t), v in values.items():
                feed[grid][d, t, : len(v)] = v
                feed[length][d, t, : len(v)] = 1
        return {name: feed[name] for name in self.settings["inputs"]}

    def _groups(self, feed):
        """The real turns `(dialogue, turn)` in groups for the encoders, as HCAM's pipeline makes them: longest first,
        at most encoder_chunk_size turns, a new group once a turn is shorter than same_chunk_ratio of the group's
        longest (audio samples, else tokens), so that padding takes little of any encoder call."""
        mask = feed["attention_mask" if "attention_mask" in feed else "text_attention_mask"]
        sizes = mask.sum(-1)
        turns = sorted(zip(*np.nonzero(feed["utterance_mask"])), key=lambda dt: -sizes[dt])
        groups = []
        for turn in turns:
            if (not groups or len(groups[-1]) == self.settings["encoder_chunk_size"]
                    or sizes[turn] < self.settings["same_chunk_ratio"] * sizes[groups[-1][0]]):
                groups.append([])
            groups[-1].append(turn)
        return groups

    def run(self, feed):
        """The graph's outputs (`logits`, then each stage head's) for the inputs `inputs()` gives. Turns of similar
        length are encoded together (model.onnx, each turn a one-turn dialogue) and the conversations then run from
        their embeddings (conversation.onnx); when every turn falls in one group, model.onnx runs them all at once."""
        names = self.settings["conversation_outputs"]
        groups = self._groups(feed)
        if len(groups) == 1:
            return dict(zip(names, self.session.run(names, feed)))
        embedding_names = [n for n in self.settings["conversation_inputs"] if n.endswith("_embeddings")]
        embeddings = {}
        for group in groups:
            rows, cols = (np.array(index) for index in zip(*group))
            part = {}
            for name in self.settings["inputs"]:
                values = feed[name][rows, cols][:, None]  # (turns, 1, ...): one-turn dialogues
                part[name] = values
            for values, mask in (("input_values", "attention_mask"), ("input_ids", "text_attention_mask")):
                if mask in part:  # cut to this group's longest turn
                    width = int(part[mask].sum(-1).max())
                    part[values], part[mask] = part[values][..., :width], part[mask][..., :width]
            if "speaker_ids" in part:
                part["speaker_ids"] = np.full_like(part["speaker_ids"], -1)
            for name, values in zip(embedding_names, self.session.run(embedding_names, part)):
                if name not in embeddings:
                    embeddings[name] = np.zeros((*feed["utterance_mask"].shape, values.shape[-1]), np.float32)
                embeddings[name][rows, cols] = values[:, 0]
        conversation_feed = {name: embeddings[name] if name in embeddings else feed[name]
                             for name in self.settings["conversation_inputs"]}
        return dict(zip(names, self.conversation.run(names, conversation_feed)))

    def __call__(self, conversations):
        """Predictions for one conversation (a list of turns) or a list of conversations: per turn `label`, `score`,
        `probabilities` ({label: p}, the ensemble the model outputs) and `stages` ({head: label})."""
        single = bool(conversations) and isinstance(conversations[0], dict)
        batch = [conversations] if single else conversations
        outputs = self.run(self.inputs(batch))
        results = []
        for d, conversation in enumerate(batch):
            turns = []
            for t in range(len(conversation)):
                probabilities = np.exp(outputs["logits"][d, t].astype(np.float64))
                probabilities /= probabilities.sum()
                best = int(probabilities.argmax())
                turns.append({"turn": t, "speaker": conversation[t].get("speaker"), "label": self.labels[best],
                              "score": float(probabilities[best]),
                              "probabilities": dict(zip(self.labels, probabilities.tolist())),
                              "stages": {name[: -len("_logits")]: self.labels[int(values[d, t].argmax())]
                                         for name, values in outputs.items() if name != "logits"}})
            results.append(turns)
        return results[0] if single else results


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python hcam_onnx.py EXPORT_FOLDER CONVERSATION.json")
    with open(sys.argv[2], encoding="utf-8") as f:
        print(json.dumps(HCAMOnnx(sys.argv[1])(json.load(f)), indent=1))
