"""``hcam-data-check``: read a dataset and print what a trainer would see, before any training.

Prints the split protocol, the labels in id order, counts per split and label, durations, speakers and
dialogues per split, and every problem found (bad rows, missing/corrupt clips, unknown labels, empty text,
duplicate ids; with ``--check_audio`` also silent clips and the sampling rates). Bad items are skipped and
listed, never fatal, unless ``--skip_bad false``. The corpus flags are run_stage.py's (the corpus registry's
``CorpusArguments``), so a command that checks cleanly trains on the same data.

Exit status: 0 = no problems, 1 = problems found (listed), 2 = the dataset could not be read.

Examples::

    hcam-data-check --dataset_name meld --data_dir /data/MELD.Raw
    hcam-data-check --dataset_name iemocap --data_dir /data/IEMOCAP_full_release --dataset_config_name 4class --fold 3
    python -m hcam.processing.data_check --dataset_name manifest --train_file train.csv --json_report report.json
    hcam-data-check --dataset_name someone/conversations --text_column_name transcript --label_column_name emotion
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from .corpora import CorpusArguments, corpus_kwargs
from .datasets import load_hcam_dataset
from .report import HCAMDataError


@dataclass
class DataCheckArguments:
    text_only: bool = field(default=False, metadata={"help": "Ignore audio."})
    check_audio: bool = field(default=False, metadata={"help": "Decode every clip (slow): silent or corrupt clips, "
                                                               "sampling rates."})
    json_report: str | None = field(default=None, metadata={"help": "Also write the full report as JSON here."})
    max_problems: int | None = field(default=None, metadata={"help": "Print at most this many problems."})


def build_parser():
    from .cli import HCAMArgumentParser

    parser = HCAMArgumentParser((CorpusArguments, DataCheckArguments), prog="hcam-data-check",
                              description=__doc__.split("\n\n")[0])
    return parser


def main(argv: list[str] | None = None) -> int:
    corpus_args, args = build_parser().parse_args_into_dataclasses(args=argv)
    try:
        dataset_dict, report = load_hcam_dataset(**corpus_kwargs(corpus_args), audio=False if args.text_only else None,
                                                 check_audio=args.check_audio)
    except (HCAMDataError, ValueError, FileNotFoundError) as err:
        print(f"hcam-data-check: cannot read the dataset: {err}", file=sys.stderr)
        return 2
    print(report.format(max_problems=args.max_problems))
    if args.json_report:
        report.to_json(args.json_report)
        print(f"JSON report written to {args.json_report}")
    return 1 if report.problems else 0


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
