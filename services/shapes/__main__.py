"""Command line for the Shapes model: `train` it, or `evaluate` a trained one with the pixel judge."""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from services.shapes.train import TrainConfig, train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.shapes", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    trainer = commands.add_parser("train", help="train the model from scratch (seeded) and save it to --out")
    trainer.add_argument("--out", type=Path, required=True, help="the folder to write the model to")
    trainer.add_argument("--vae-from", type=Path, default=None, help="start from this trained autoencoder folder")
    trainer.add_argument("--start-from", type=Path, default=None, help="train on from this saved Shapes model")
    defaults = TrainConfig()
    for name, value in vars(defaults).items():
        trainer.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, help=f"default {value}")
    evaluator = commands.add_parser("evaluate", help="judge a model's pictures against their prompts")
    evaluator.add_argument("--model", type=Path, default=None, help="a Shapes model folder (default: the shipped one)")
    evaluator.add_argument("--prompts", type=int, default=200, help="how many seen-pair prompts")
    evaluator.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    keeper = commands.add_parser("checkpoints", help="keep a few prompts of a run's progress sheets (lesson 9)")
    keeper.add_argument("--progress", type=Path, required=True, help="the run's progress folder")
    keeper.add_argument("--out", type=Path, default=None, help="default: services/shapes/checkpoints")
    keeper.add_argument("--made-by", default="", help="the training command that made the run, for the record")
    keeper.add_argument("--finished", type=Path, default=None, help="also paint the sheet with this finished model")
    keeper.add_argument("--finished-steps", type=int, default=0, help="the finished model's training steps in all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.command == "checkpoints":
        from services.shapes import checkpoints

        out = args.out or checkpoints.CHECKPOINTS_DIR
        if args.finished and args.finished_steps <= max(checkpoints.DEFAULT_STEPS):
            parser.error("--finished needs --finished-steps: the finished model's steps in all, past the run's")
        finished = checkpoints.paint_finished(args.finished, Path(tempfile.mkdtemp())) if args.finished else None
        kept = checkpoints.keep(args.progress, out, checkpoints.DEFAULT_PROMPTS, checkpoints.DEFAULT_STEPS,
                                args.made_by, finished, args.finished_steps)  # fmt: skip
        print(f"kept {kept}")
    elif args.command == "train":
        config = TrainConfig(**{name: getattr(args, name) for name in vars(defaults)})
        print(f"saved to {train(args.out, config, vae_from=args.vae_from, start_from=args.start_from)}")
    else:
        from services.shapes.evaluate import evaluate_model, format_report

        report = evaluate_model(args.model, prompts=args.prompts)
        print(format_report(report))
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
