"""Command line of twist_lib::

    python -m twist_lib train --config configs/baseline_synthetic.yaml [--profile cpu] [--resume] [key=value ...]
    (--resume continues the run folder's last checkpoint; --resume-if-exists does so only if there is one)
    python -m twist_lib data --config configs/baseline_synthetic.yaml [--profile cpu] [key=value ...]
    (generates / completes the synthetic benchmark of that config and its label splits)
    python -m twist_lib twist --config configs/twist_synthetic.yaml [--profile cpu] [--resume] [key=value ...]
    (TWIST: round 0 plus `rounds` self-training rounds; --resume continues a killed run anywhere)
    python -m twist_lib config [--profile cpu]          # every config key, its default and meaning
    python -m twist_lib evaluate --gt GT --pred PRED     # the ScanNet benchmark (twist_lib.evaluate)
    python -m twist_lib predict --run RUN --scans PATH [PATH ...] --out DIR [--round T] [--recorrect]
    (instances on your own .ply / .npz scans: benchmark files, labels and HTML views; twist_lib.predict)
    python -m twist_lib runs rounds RUN                  # the rounds table of a TWIST run folder
    python -m twist_lib runs scenes RUN [--top N]        # per-scene pseudo-label quality, most improved first
    python -m twist_lib runs predict RUN [--round T] [--split val] [--out DIR]
    (the benchmark files of a round's model on a split, then the `evaluate` line for them)
    python -m twist_lib experiments run|status|collect FILE.yaml [--jobs N] [--only TABLE ...]
    (the paper's tables as a resumable batch of runs: experiments/paper_tables.yaml)
"""
from __future__ import annotations

import argparse
import sys


def _train(args) -> int:
    from .config import Config
    from .trainer import train
    cfg = Config.from_sources(profile=args.profile, yaml_path=args.config, overrides=args.overrides)
    print(f"run folder: {cfg.resolved_run_dir()}")
    metrics = train(cfg, resume="auto" if args.resume_if_exists else args.resume)
    keys = [k for k in ("AP", "AP50", "AP25", "miou", "macc") if k in metrics]
    print("final validation: " + "  ".join(f"{k}={metrics[k]:.4f}" for k in keys))
    return 0


def _twist(args) -> int:
    from .config import Config
    from .self_training import run_twist
    cfg = Config.from_sources(profile=args.profile, yaml_path=args.config, overrides=args.overrides)
    run = cfg.resolved_run_dir("twist")
    print(f"run folder: {run}")
    resume = args.resume or (args.resume_if_exists and (run / "config.yaml").exists())
    rows = run_twist(cfg, resume=resume)
    last = rows[-1]
    print(f"after round {last['round']}: " + "  ".join(
        f"{k}={last[k]:.4f}" for k in ("AP", "AP50", "AP25", "miou", "macc") if last.get(k) is not None))
    return 0


def _data(args) -> int:
    from .config import Config
    from .data.ensure import ensure_dataset
    cfg = Config.from_sources(profile=args.profile, yaml_path=args.config, overrides=args.overrides)
    meta = ensure_dataset(cfg)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in meta["splits"].items())
    print(f"{cfg.data_root}: {meta['name']}, {len(meta['class_names'])} classes; splits: {sizes}")
    return 0


def _config(args) -> int:
    from .config import Config
    cfg = Config.for_profile(args.profile)
    print(f"config keys (profile {args.profile}: values shown are that profile's):")
    for key, value in cfg.to_dict().items():
        print(f"  {key} = {value!r}")
    print("\nmeaning:\n" + Config.help())
    return 0


def _predict(args) -> int:
    from .predict import run
    return run(args)


def _predict_parser(sub):
    p = sub.add_parser("predict", help="instances on your own scans (.ply / .npz) with a trained run")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--run", help="TWIST or Sup-only run folder")
    model.add_argument("--checkpoint", help="a checkpoint file (with --config)")
    p.add_argument("--round", type=int, default=None, help="TWIST round (default: last finished)")
    p.add_argument("--config", help="the run's config.yaml (with --checkpoint)")
    p.add_argument("--meta", help="dataset folder (or its meta.json) with the classes "
                                  "(default: the run's data_root)")
    p.add_argument("--scans", nargs="+", required=True, help=".npz / .ply files or folders of them")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    p.add_argument("--recorrect", action="store_true", help="re-correct instances with Psi")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_predict)


def _runs(args) -> int:
    from .runs import read_rounds, rounds_markdown, scene_quality, table_cell
    if args.runs_command == "rounds":
        print(rounds_markdown(read_rounds(args.run)))
    elif args.runs_command == "scenes":
        rows = scene_quality(args.run, by=args.by)
        print(f"| scene | change of {args.by} | " + " | ".join(
            f"round {t}" for t in sorted({t for r in rows for t in r["rounds"]})) + " |")
        for row in rows[:args.top]:
            print(f"| {row['name']} | {table_cell(row['improvement'])} | "
                  + " | ".join(table_cell(row[args.by][t]) for t in row["rounds"]) + " |")
    elif args.runs_command == "predict":
        from .pipeline import export_predictions
        from .runs import dataset_folder, run_config
        out = export_predictions(args.run, args.round, args.split, args.out, args.device)
        data = dataset_folder(run_config(args.run), args.run)
        print(f"benchmark files: {out}\n  python -m twist_lib.evaluate --gt {out / 'gt'} "
              f"--pred {out / 'pred'} --meta {data}")
    return 0


def _runs_parser(sub):
    p = sub.add_parser("runs", help="read a TWIST run folder: rounds, per-scene quality, "
                                    "benchmark files of a round")
    runs = p.add_subparsers(dest="runs_command", required=True)
    r = runs.add_parser("rounds", help="the rounds table of a run folder")
    r.add_argument("run")
    s = runs.add_parser("scenes", help="per-scene pseudo-label quality, most improved first")
    s.add_argument("run")
    s.add_argument("--top", type=int, default=20, help="scenes shown (default 20)")
    s.add_argument("--by", default="sem_acc", choices=["sem_acc", "coverage", "offset_error"])
    e = runs.add_parser("predict", help="benchmark files of a round's model on a split")
    e.add_argument("run")
    e.add_argument("--round", type=int, default=None, help="round (default: the last finished)")
    e.add_argument("--split", default="val")
    e.add_argument("--out", default=None, help="default RUN/benchmark_round<t>_<split>")
    e.add_argument("--device", default=None, help="default: the run's device")
    p.set_defaults(func=_runs)


def _job_parser(sub, name: str, help: str):
    """A subcommand that builds one Config: ``--config``, ``--profile`` and ``key=value``."""
    p = sub.add_parser(name, help=help)
    p.add_argument("--config", help="YAML config (keys: python -m twist_lib config)")
    p.add_argument("--profile", default=None, help="smoke | cpu | hard | gpu (default: the YAML's, else cpu)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["evaluate"]:
        from .evaluate import main as evaluate_main
        return evaluate_main(argv[1:])
    if argv[:1] == ["experiments"]:
        from .experiments import main as experiments_main
        return experiments_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m twist_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = _job_parser(sub, "train", "train the Sup-only baseline Phi")
    p.add_argument("--resume", action="store_true", help="continue the run folder's last checkpoint")
    p.add_argument("--resume-if-exists", action="store_true",
                   help="resume when the run folder has a checkpoint, else start fresh")
    p.set_defaults(func=_train)
    p = _job_parser(sub, "twist", "train TWIST: round 0 and the self-training rounds")
    p.add_argument("--resume", action="store_true",
                   help="continue the run folder wherever it stopped")
    p.add_argument("--resume-if-exists", action="store_true",
                   help="resume when the run folder exists, else start fresh")
    p.set_defaults(func=_twist)
    p = _job_parser(sub, "data", "generate the synthetic benchmark of a config (or check a "
                                 "prepared dataset) and its label splits")
    p.set_defaults(func=_data)
    p = sub.add_parser("config", help="list config keys with defaults and meaning")
    p.add_argument("--profile", default="cpu")
    p.set_defaults(func=_config)
    sub.add_parser("evaluate", help="ScanNet-benchmark evaluation of prediction files")
    sub.add_parser("experiments", help="the paper's tables as a resumable batch of runs: "
                                       "run | status | collect FILE.yaml (twist_lib.experiments)")
    _predict_parser(sub)
    _runs_parser(sub)
    args, rest = parser.parse_known_args(argv)
    # key=value overrides may come after an option (`... --resume steps=10`): argparse leaves
    # those over; anything else left over is an error as usual
    bad = [r for r in rest if r.startswith("-") or "=" not in r or not hasattr(args, "overrides")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    if rest:
        args.overrides = list(args.overrides) + rest
    try:
        return args.func(args)
    except (KeyError, TypeError, ValueError, FileNotFoundError, FileExistsError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
