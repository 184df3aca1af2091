"""``hcam-data-check``: read a dataset and print what a trainer would see, before any training.

Prints counts per split and label, durations, speakers and dialogues per split, and every problem
found (bad rows, missing/corrupt clips, unknown labels, empty text, duplicate ids; with
``--check_audio`` also silent audio and unexpected sampling rates). Bad items are skipped and
listed, never fatal, unless ``--no_skip_bad``.

Exit status: 0 = no problems, 1 = problems found (listed), 2 = the dataset could not be read.

Examples::

    hcam-data-check --dataset_name meld --data_dir /data/MELD.Raw
    hcam-data-check --dataset_name iemocap --data_dir /data/IEMOCAP_full_release --setting 4class --fold 3
    python -m hcam.processing.data_check --dataset_name manifest --train_file train.csv --json_report report.json
"""
from __future__ import annotations

import argparse
import sys

from .datasets import DATASET_NAMES, load_hcam_dataset
from .report import DataReport, HCAMDataError, Problem

SILENCE_PEAK = 1e-4  # peak amplitude below which a clip counts as silent (16-bit dither is ~3e-5)


def check_audio_content(dataset_dict, report: DataReport, sampling_rate: int = 16000, progress: bool = True) -> None:
    """Decode every audio file: report silent or undecodable ones, and count the sampling rates."""
    import numpy as np
    import soundfile as sf
    from tqdm.auto import tqdm

    from hcam.modeling_hcam.feature_extraction_hcam import load_audio

    rates: dict[int, int] = {}
    for split, ds in dataset_dict.items():
        ids = ds["utterance_id"] if "utterance_id" in ds.column_names else [
            f"{d}#{t}" for d, t in zip(ds["dialogue_id"], ds["turn"])]
        for path, utterance in tqdm(zip(ds["audio"], ids), total=len(ds), desc=f"checking audio ({split})",
                                    disable=not progress):
            if not path:
                continue
            item = f"{split}/{utterance}"
            try:
                rate = sf.info(path).samplerate
                rates[rate] = rates.get(rate, 0) + 1
            except Exception:
                pass  # not a libsndfile format (mp4 ...): load_audio decodes it with ffmpeg below
            try:
                waveform = load_audio(path, sampling_rate=sampling_rate)
            except Exception as err:
                report.add_problem(item, "corrupt_audio", f"{path}: {err}", split)
                continue
            if float(np.abs(waveform).max()) < SILENCE_PEAK:
                report.add_problem(item, "silent_audio", f"{path} is silent (peak < {SILENCE_PEAK}); "
                                   "check the recording or drop the utterance", split)
    if rates:
        summary = ", ".join(f"{rate} Hz: {n}" for rate, n in sorted(rates.items()))
        report.note(f"sampling rates ({summary})" + ("" if set(rates) == {sampling_rate} else
                                                       f"; resampled to {sampling_rate} Hz when loaded"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hcam-data-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_name", required=True, choices=DATASET_NAMES)
    parser.add_argument("--data_dir", default=None, help="release folder (meld/iemocap/mosi) or manifest folder")
    parser.add_argument("--train_file", default=None)
    parser.add_argument("--validation_file", default=None)
    parser.add_argument("--test_file", default=None)
    parser.add_argument("--setting", default=None, help="label setting: 6class/4class, emotion/sentiment, "
                                                        "binary/binary_nonzero/7class")
    parser.add_argument("--fold", type=int, default=None, help="IEMOCAP session left out for test (1..5)")
    parser.add_argument("--cache_dir", default=None, help="MELD extracted-audio cache (default ~/.cache/hcam/meld)")
    parser.add_argument("--text_only", action="store_true", help="ignore audio")
    parser.add_argument("--num_workers", type=int, default=2, help="MELD audio extraction processes")
    parser.add_argument("--check_audio", action="store_true", help="decode every audio file (slow): silence, rates")
    parser.add_argument("--no_skip_bad", action="store_true", help="stop at the first bad items instead of listing")
    parser.add_argument("--json_report", default=None, help="also write the full report as JSON here")
    parser.add_argument("--max_problems", type=int, default=None, help="print at most this many problems")
    for column in ("dialogue_id", "turn", "speaker", "text", "audio", "label"):
        parser.add_argument(f"--{column}_column", default=None, help=f"manifest: name of the {column} column")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    kwargs = {f"{c}_column": getattr(args, f"{c}_column")
              for c in ("dialogue_id", "turn", "speaker", "text", "audio", "label")
              if getattr(args, f"{c}_column") is not None}
    if kwargs and args.dataset_name not in ("manifest", "demo"):
        print(f"hcam-data-check: --*_column options apply to manifests, not {args.dataset_name}", file=sys.stderr)
        return 2
    try:
        dataset_dict, report = load_hcam_dataset(
            args.dataset_name, data_dir=args.data_dir, train_file=args.train_file,
            validation_file=args.validation_file, test_file=args.test_file, setting=args.setting,
            fold=args.fold, skip_bad=not args.no_skip_bad, audio=False if args.text_only else None,
            cache_dir=args.cache_dir, num_workers=args.num_workers, **kwargs)
    except (HCAMDataError, ValueError, FileNotFoundError) as err:
        print(f"hcam-data-check: cannot read the dataset: {err}", file=sys.stderr)
        return 2
    if args.check_audio:
        check_audio_content(dataset_dict, report)
    print(report.format(max_problems=args.max_problems))
    if args.json_report:
        report.to_json(args.json_report)
        print(f"JSON report written to {args.json_report}")
    return 1 if report.problems else 0


__all__ = ["main", "check_audio_content", "Problem"]

if __name__ == "__main__":
    sys.exit(main())
