"""Write the nested labelled splits (labelled_1 ⊂ labelled_5 ⊂ ...) into a prepared dataset's meta.json.

    python data_scripts/make_splits.py --data DIR --ratios 1 5 10 20 --seed 0 [--list FILE]

With --list, the labelled sets are the first k % of that file's scene order (the ScanNet
data-efficient benchmark); otherwise of a permutation of the train split seeded by --seed.
See twist_lib.data.splits.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twist_lib.data.splits import DEFAULT_RATIOS, write_label_splits  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="prepared dataset folder (has meta.json)")
    parser.add_argument("--ratios", nargs="+", type=float, default=list(DEFAULT_RATIOS),
                        help="label ratios in percent (default: 1 5 10 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train-list permutation")
    parser.add_argument("--list", type=Path, default=None,
                        help="official list file, one scene name per line; its order is used")
    args = parser.parse_args(argv)
    try:
        splits = write_label_splits(args.data, args.ratios, args.seed, args.list)
    except (ValueError, FileNotFoundError) as e:  # DataFormatError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    source = f"order of {args.list}" if args.list else f"seed {args.seed}"
    print(f"{args.data / 'meta.json'}: labelled splits from the {source}")
    for name, scenes in splits.items():
        print(f"  {name}: {len(scenes)} scenes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
