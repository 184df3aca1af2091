"""A stage's output folder, as a type: `StageFolder`, the one place that knows the folder's file names.

A finished stage folder holds a complete model (config, weights, processor, the `.py` bundle), its results and reports,
the card, and the stage marker `hcam_stage.json`, written last: a folder without the marker is an unfinished stage.
The marker records the stage, its labels, the folders it was initialised from, its arguments, the data it saw and its
results. Every reader of a stage folder (`run_stage`, cross-fitting, the card and the push, cross-validation, the
experiments in bench/) opens it through `StageFolder`, which reads each file once: the config and processor are read
on first use and kept, and the folders it was initialised from are opened once and passed on.

    >>> folder = StageFolder.open("outputs/demo/stage2-text")
    >>> folder.stage.tag, folder.labels, [f.stage.tag for f in folder.earlier]
    ('stage2-text', ['neutral', 'happy', 'sad', 'angry'], ['stage1-text'])
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property

from hcam.trainer.stages import SEQUENCE, Stage

MARKER = "hcam_stage.json"  # written last: its presence means the stage is finished
CONFIG = "config.json"
RESULTS = "all_results.json"  # eval_* and test_* metrics per head (Trainer.save_metrics)
RESULT_FILES = (RESULTS, "train_results.json", "eval_results.json", "test_results.json")  # all of save_metrics'
DATA_REPORT = "data_report.json"  # what the reader found: protocol, counts, every problem and skipped item
CARD = "README.md"
CONFUSION_PNG = "confusion_matrix.png"
PUSH_RECORD = "hub_push.json"  # written after a successful push (never uploaded: not in push_stage's allow-list)
EVALUATION_DIR = "evaluation"  # --do_eval/--do_predict without --do_train: results of a finished stage go here
FINAL_DIR = ".final"  # the best model is saved here, then moved into the folder
STAGING_DIR = ".staging"  # a checkpoint is written here, then renamed checkpoint-N


def report_file(prefix):
    """Per-class scores and confusion matrices of one split: `eval_report.json` or `test_report.json`."""
    return f"{prefix}_report.json"


def write_atomic(path, content):
    """Write `content` (text, or a JSON-able object) to `path` through a temporary file and a rename: a reader never
    sees it half written."""
    text = content if isinstance(content, str) else json.dumps(content, indent=2)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, path)


def read_json(folder, name):
    """The JSON file `name` in `folder`, or None when there is none."""
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class NotAStageFolder(SystemExit):
    """A folder that holds no finished stage (its marker is missing); the message says what to do."""


@dataclass
class StageFolder:
    """A finished stage's folder and its marker.

    Args:
        path: the folder.
        marker: the content of its `hcam_stage.json`.
    """

    path: str
    marker: dict = field(repr=False)

    # ----- opening ------------------------------------------------------------------------------------------------
    @classmethod
    def find(cls, path) -> StageFolder | None:
        """The finished stage in `path`, or None when there is none (yet)."""
        marker = read_json(path, MARKER)
        return cls(str(path), marker) if marker is not None else None

    @classmethod
    def open(cls, path, missing: str | None = None) -> StageFolder:
        """The finished stage in `path`; `NotAStageFolder` with `missing` (or a general message) when there is none."""
        found = cls.find(path)
        if found is None:
            raise NotAStageFolder(missing or f"{path}: not a finished HCAM stage ({MARKER} missing). Finish the stage "
                                  "there first (rerun its command to resume it).")
        return found

    @staticmethod
    def is_finished(path) -> bool:
        return os.path.isfile(os.path.join(path, MARKER))

    def write_marker(self):
        """Write the marker, last and atomically: from now on the folder is a finished stage."""
        write_atomic(os.path.join(self.path, MARKER), self.marker)

    # ----- what the marker says -----------------------------------------------------------------------------------
    @property
    def stage(self) -> Stage:
        return Stage(self.marker["stage"], self.marker["modality"])

    @property
    def labels(self) -> list[str]:
        return list(self.marker["labels"])

    @property
    def init_from(self) -> list[str]:
        return list(self.marker.get("init_from") or [])

    @property
    def training_arguments(self) -> dict:
        return self.marker.get("training_arguments", {})

    @property
    def data(self) -> dict:
        """Corpus, setting, protocol, split sizes and problems of the data the stage was trained on."""
        return self.marker.get("data") or {}

    @property
    def data_arguments(self) -> dict:
        return self.marker.get("data_arguments", {})

    @cached_property
    def earlier(self) -> list[StageFolder]:
        """The finished folders this stage was initialised from (`--init_from`, in order), each opened once."""
        return [StageFolder.open(path, missing=f"{self.path} was initialised from {path}, which holds no finished "
                                 f"stage any more ({MARKER} missing).") for path in self.init_from]

    def stage1_folder(self, modality) -> StageFolder:
        """The stage-I folder of `modality` under this stage (itself for a stage-I folder)."""
        if self.stage.number == 1:
            return self
        for earlier in self.earlier:
            if modality in earlier.stage.modalities:
                return earlier.stage1_folder(modality)
        raise NotAStageFolder(f"{self.path}: no {modality} stage I among the folders it was initialised from.")

    # ----- what the folder holds (each read once) ----------------------------------------------------------------
    @cached_property
    def config(self):
        """Its `HCAMConfig` (read on first use; copy it before changing it)."""
        from hcam.modeling_hcam import HCAMConfig

        return HCAMConfig.from_pretrained(self.path)

    @cached_property
    def processor(self):
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(self.path, trust_remote_code=True)

    def load_model(self, config=None):
        """Its model, with `config` (default: its own, as read once)."""
        from hcam.modeling_hcam import HCAMForEmotionRecognition

        return HCAMForEmotionRecognition.from_pretrained(self.path, config=config or self.config)

    def read(self, name):
        """A JSON file of the folder (`RESULTS`, `report_file("test")`, `CONFIG`, ...), or None."""
        return read_json(self.path, name)

    @property
    def results(self) -> dict:
        return self.read(RESULTS) or {}


# ----- the sequence of stage folders ---------------------------------------------------------------------------
def run_sequence(output_root, flags=(), *, run, stages=SEQUENCE, done=None, skip_finished=True) -> dict:
    """Run `stages` in order, each as `run_stage.py` into `<output_root>/<tag>`, from the folders of the stages it
    starts from: the one stage sequence the demo, cross-validation and the experiments in bench/ run.

    Args:
        output_root: where the stage folders go.
        flags: run_stage.py flags for every stage (a list), or per stage (`{tag or "*": list}`, "*" first).
        stages: which stages, in order (default: all of SEQUENCE).
        done: `{tag: folder}` of earlier stages trained elsewhere (a shared stage I, a reused stage II), used as
            they are.
        run: `run(stage, argv)` runs one stage: `run_stage.main(argv)` in this process, or run_stage.py in another.
        skip_finished: do not start a stage whose folder is already finished (False: start it anyway; run_stage.py
            then leaves it as it is and only pushes it when asked to).

    Returns:
        `{tag: folder}` of `done` and of every stage of `stages`.
    """
    per_stage = flags if isinstance(flags, dict) else {"*": list(flags)}
    folders = dict(done or {})
    for stage in stages:
        argv = [*stage.argv(output_root, folders), *per_stage.get("*", ()), *per_stage.get(stage.tag, ())]
        folder = os.path.join(output_root, stage.tag)
        if not (skip_finished and StageFolder.is_finished(folder)):
            run(stage, argv)
        folders[stage.tag] = folder
    return folders
