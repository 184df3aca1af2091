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
already be at the model's sampling rate (16 kHz) and mono: this file does not resample. Several conversations in one
call are padded together (every turn costs as much as the longest one): give one at a time when lengths differ a lot.
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
        self.session = onnxruntime.InferenceSession(os.path.join(folder, "model.onnx"), options,
                                                    providers=["CPUExecutionProvider"])
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

    def __call__(self, conversations):
        """Predictions for one conversation (a list of turns) or a list of conversations: per turn `label`, `score`,
        `probabilities` ({label: p}, the ensemble the model outputs) and `stages` ({head: label})."""
        single = bool(conversations) and isinstance(conversations[0], dict)
        batch = [conversations] if single else conversations
        outputs = dict(zip(self.settings["outputs"], self.session.run(None, self.inputs(batch))))
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
