"""ScanNet-benchmark instance evaluation of a prediction folder (the book's appendix, Conventions:
"The ScanNet benchmark protocol")::

    python -m twist_lib.evaluate --gt DATA/gt --pred PRED_DIR [--dataset scannet|s3dis|synthetic]
                                 [--meta DATA/meta.json] [--output results.csv]

Prints the per-class AP / AP_50% / AP_25% table of the official script, then mAP, AP50 and AP25.
The classes come from ``--meta`` (a meta.json or the dataset folder holding it), else from
``--dataset``, else from ``GT_DIR/../meta.json`` (the layout of a prepared dataset).
File formats: :mod:`twist_lib.evaluation.files`. Malformed input exits with status 1 and a
one-line message naming the file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data.io import DataFormatError
from .evaluation import MIN_REGION_SIZE, ClassSpec, evaluate_dirs, format_ap_table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m twist_lib.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", required=True, help="folder of ground-truth <scene>.txt files")
    p.add_argument("--pred", required=True, help="folder of prediction <scene>.txt files")
    p.add_argument("--dataset", choices=("scannet", "s3dis", "synthetic"),
                   help="built-in class list")
    p.add_argument("--meta", help="meta.json (or the dataset folder holding it) with the classes")
    p.add_argument("--min-region-size", type=int, default=MIN_REGION_SIZE,
                   help=f"smallest GT / predicted instance counted, points (default {MIN_REGION_SIZE})")
    p.add_argument("--output", help="also write the per-class results as CSV here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def load_meta_spec(path) -> ClassSpec:
    """:class:`ClassSpec` of a meta.json file, or of the meta.json inside a folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "meta.json"
    if not path.is_file():
        raise DataFormatError(f"{path}: meta.json not found")
    try:
        return ClassSpec.from_meta(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise DataFormatError(f"{path}: {e}") from None


def class_spec_from_args(args) -> ClassSpec:
    if args.meta:
        return load_meta_spec(args.meta)
    if args.dataset:
        return ClassSpec.builtin(args.dataset)
    beside = Path(args.gt).resolve().parent / "meta.json"
    if beside.is_file():
        return load_meta_spec(beside)
    raise DataFormatError(f"{args.gt}: no meta.json next to it; give --dataset or --meta")


def write_result_csv(result: dict, path) -> None:
    """The official script's result file: ``class,class id,ap,ap50,ap25`` per class."""
    lines = ["class,class id,ap,ap50,ap25"]
    for (name, r), class_id in zip(result["classes"].items(), result["class_ids"]):
        lines.append(f"{name},{class_id},{r['AP']},{r['AP50']},{r['AP25']}")
    Path(path).write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = class_spec_from_args(args)
        result = evaluate_dirs(args.gt, args.pred, spec, args.min_region_size,
                               progress=not args.no_progress)
        if args.output:
            write_result_csv(result, args.output)
    except (ValueError, OSError, ImportError) as e:  # DataFormatError is a ValueError
        print("error: " + str(e).replace("\n", " "), file=sys.stderr)
        return 1
    print(format_ap_table(result))
    print(f"scenes: {result['num_scenes']}  mAP: {result['AP']:.4f}  AP50: {result['AP50']:.4f}  "
          f"AP25: {result['AP25']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
