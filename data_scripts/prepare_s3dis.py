#!/usr/bin/env python
"""Prepare S3DIS from the official raw files (see twist_lib.prepare.s3dis).

    python data_scripts/prepare_s3dis.py --root Stanford3dDataset_v1.2_Aligned_Version --out DIR \
        [--val-area 5] [--areas 1 2 3 4 5 6] [--workers N] [--skip-bad]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import logging  # noqa: E402

from twist_lib.prepare import prepare_s3dis, summarize  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder holding Area_1 ... Area_6")
    parser.add_argument("--out", required=True, help="prepared dataset folder to write")
    parser.add_argument("--val-area", type=int, default=5, help="area of the val split (default 5)")
    parser.add_argument("--areas", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6],
                        help="areas to prepare (default all six)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--skip-bad", action="store_true", help="log and skip rooms that fail")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(format="prepare_s3dis: %(levelname)s: %(message)s")
    try:
        meta = prepare_s3dis(args.root, args.out, areas=args.areas, val_area=args.val_area,
                             progress=not args.quiet, workers=args.workers, skip_bad=args.skip_bad)
    except (ValueError, OSError) as e:
        print(f"prepare_s3dis: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return 1
    print(f"prepared {args.out}: {summarize(meta)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
