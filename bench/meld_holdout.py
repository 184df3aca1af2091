#!/usr/bin/env python
"""A MELD folder with a test split held out of train: the unseen split of issue 13's MELD check.

MELD's test CSV is not distributed with ../shared/data/meld, and dev is the validation split every stage chooses
its checkpoint on, so dev scores are validation scores. This writes a copy of the release's CSVs in which
`fraction` of the training dialogues (chosen by a hash of their ids, the rule `--validation_fraction` carves
validation with: the same on every machine) become `test_sent_emo.csv`; train keeps the rest, dev is unchanged.
No stage sees the held-out dialogues, so their scores are test scores. Text only: no clips are copied.

    python bench/meld_holdout.py --data_dir ../shared/data/meld --output_dir runs/meld-holdout
    python bench/ablation.py --dataset_name meld --data_dir runs/meld-holdout --modalities text \
        --recipe trainer/recipes/meld_text_cpu.json --output_dir runs/ablation-meld
"""

import argparse
import csv
import os
import shutil

from hcam.processing.datasets import validation_dialogues

TRAIN, DEV, TEST = "train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv"


def hold_out(data_dir, output_dir, fraction=0.1):
    """Write output_dir/{train,dev,test}_sent_emo.csv; returns (train dialogues kept, dialogues held out)."""
    with open(os.path.join(data_dir, TRAIN), newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    if not rows or "Dialogue_ID" not in fields:
        raise SystemExit(f"{os.path.join(data_dir, TRAIN)}: no rows or no Dialogue_ID column; is it MELD's train CSV?")
    held = validation_dialogues([row["Dialogue_ID"] for row in rows], fraction)
    os.makedirs(output_dir, exist_ok=True)
    for name, keep in ((TRAIN, lambda r: r["Dialogue_ID"] not in held), (TEST, lambda r: r["Dialogue_ID"] in held)):
        with open(os.path.join(output_dir, name), "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(row for row in rows if keep(row))
    shutil.copyfile(os.path.join(data_dir, DEV), os.path.join(output_dir, DEV))
    kept = len({row["Dialogue_ID"] for row in rows}) - len(held)
    with open(os.path.join(output_dir, "HOLDOUT.txt"), "w", encoding="utf-8") as f:
        f.write(f"test_sent_emo.csv = {len(held)} training dialogues of {data_dir} held out (fraction {fraction}, "
                f"bench/meld_holdout.py); train keeps {kept}; dev unchanged. Not MELD's official test split.\n")
    return kept, len(held)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="../shared/data/meld", help="MELD's CSVs (train and dev)")
    parser.add_argument("--output_dir", default="runs/meld-holdout")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of training dialogues held out as test")
    args = parser.parse_args(argv)
    kept, held = hold_out(args.data_dir, args.output_dir, args.fraction)
    print(f"{args.output_dir}: train {kept} dialogues, test {held} held out of train, dev copied")


if __name__ == "__main__":
    main()
