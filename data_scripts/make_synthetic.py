"""Generate the procedural synthetic indoor benchmark (the package's default dataset).

    python data_scripts/make_synthetic.py --out DIR --scenes N --size cpu|scannet --seed S \
        [--workers N] [--val-fraction F] [--overwrite] [--no-progress]

Writes DIR/scenes/*.npz, DIR/gt/*.txt and DIR/meta.json; scenes already there are kept (re-runs
resume). See twist_lib.synthetic.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twist_lib.synthetic import SIZES, generate_dataset  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    parser.add_argument("--scenes", required=True, type=int, help="number of scenes")
    parser.add_argument("--size", default="cpu", choices=sorted(SIZES),
                        help="cpu: 10-30k points per scene; scannet: 100-200k (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (scene i uses (seed, i))")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="fraction of val scenes (default 0.2)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate scenes already on disk")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        meta = generate_dataset(args.out, args.scenes, size=args.size, seed=args.seed,
                                val_fraction=args.val_fraction, workers=args.workers,
                                progress=not args.no_progress, overwrite=args.overwrite)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {args.scenes} synthetic {args.size} scenes (seed {args.seed}), "
          f"{len(meta['splits']['train'])} train / {len(meta['splits']['val'])} val")
    return 0


if __name__ == "__main__":
    sys.exit(main())
