#!/usr/bin/env python
"""Prepare ScanNet v2 from the official raw files (see twist_lib.prepare.scannet).

    python data_scripts/prepare_scannet.py --scans DIR --labels-tsv FILE --out DIR \
        [--workers N] [--train-list scannetv2_train.txt] [--val-list scannetv2_val.txt] [--skip-bad]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import logging  # noqa: E402

from twist_lib.prepare import prepare_scannet, summarize  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", required=True, help="folder of raw scene folders (scans/)")
    parser.add_argument("--labels-tsv", required=True, help="scannetv2-labels.combined.tsv")
    parser.add_argument("--out", required=True, help="prepared dataset folder to write")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--train-list", help="official scannetv2_train.txt")
    parser.add_argument("--val-list", help="official scannetv2_val.txt")
    parser.add_argument("--skip-bad", action="store_true", help="log and skip scenes that fail")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(format="prepare_scannet: %(levelname)s: %(message)s")
    split_files = {k: v for k, v in (("train", args.train_list), ("val", args.val_list)) if v}
    try:
        meta = prepare_scannet(args.scans, args.labels_tsv, args.out, workers=args.workers,
                               split_files=split_files or None, progress=not args.quiet,
                               skip_bad=args.skip_bad)
    except (ValueError, OSError) as e:
        print(f"prepare_scannet: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return 1
    print(f"prepared {args.out}: {summarize(meta)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
