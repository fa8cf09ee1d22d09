"""Command line for the book's experiments: ``python -m snn_norm_lite <experiment> [options]``.

    python -m snn_norm_lite headline                     # the ANN-vs-SNN table
    python -m snn_norm_lite headline --json --seeds 5    # as JSON, mean and spread over 5 seeds
    python -m snn_norm_lite compare                      # every method side by side (chapter 12)
    python -m snn_norm_lite norms                        # the registered normalisers
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .experiments import TrainConfig, headline
from .norms import available_norms, get_spec


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _norm_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of normaliser names")
    known = available_norms()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown normaliser(s) {', '.join(unknown)}; registered: {', '.join(known)}")
    return names


def _device(text: str) -> str:
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("CUDA was requested but torch.cuda.is_available() is False")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m snn_norm_lite", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    head = commands.add_parser("headline", help="train ANN and SNN with and without normalisation; print the table")
    defaults = TrainConfig()
    head.add_argument("--norms", type=_norm_list, default=["none", "bn", "homeostatic"], help="comma-separated registry names")
    head.add_argument("--depth", type=_positive_int, default=defaults.depth)
    head.add_argument("--width", type=_positive_int, default=defaults.width)
    head.add_argument("--epochs", type=_positive_int, default=defaults.epochs)
    head.add_argument("--seeds", type=_positive_int, default=3, help="number of seeds (0..N-1); accuracies are mean ± std")
    head.add_argument("--steps", type=_positive_int, default=defaults.num_steps, help="SNN time steps T")
    head.add_argument("--device", type=_device, default="cpu")
    head.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    head.add_argument("--progress", action="store_true", help="show tqdm progress bars")

    from .comparison import comparison_config

    budget = comparison_config()
    compare = commands.add_parser("compare", help="train every method on the same SNN (chapter 12's table)")
    compare.add_argument("--norms", type=_norm_list, default=None, help="comma-separated registry names (default: all)")
    compare.add_argument("--ahsar", type=_norm_list, default=["bn", "none"], help="names also trained with AHSAR")
    compare.add_argument("--depth", type=_positive_int, default=budget.depth)
    compare.add_argument("--width", type=_positive_int, default=budget.width)
    compare.add_argument("--epochs", type=_positive_int, default=budget.epochs)
    compare.add_argument("--seeds", type=_positive_int, default=3, help="number of seeds (0..N-1)")
    compare.add_argument("--steps", type=_positive_int, default=budget.num_steps, help="SNN time steps T")
    compare.add_argument("--device", type=_device, default="cpu")
    compare.add_argument("--json", action="store_true", help="print one JSON object instead of the table")

    commands.add_parser("norms", help="list the registered normalisers")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "norms":
        for name in available_norms():
            print(f"{name:<12} {get_spec(name).summary}")
        return 0
    config = TrainConfig(
        depth=args.depth, width=args.width, num_steps=args.steps, epochs=args.epochs, device=args.device
    )
    start = time.perf_counter()
    if args.command == "compare":
        from .comparison import compare_methods

        try:
            result = compare_methods(args.norms, seeds=range(args.seeds), config=config, ahsar_on=args.ahsar)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if args.json:
            print(result.to_json())
        else:
            print(f"digits, SNN depth {config.depth}, width {config.width}, T {config.num_steps}, {config.epochs} epochs, "
                  f"batch {config.batch_size}, Adam lr {config.lr:g}, seeds 0..{args.seeds - 1}")
            print(result.table())
            print(f"finished in {time.perf_counter() - start:.0f} s")
        return 0
    try:
        result = headline(args.norms, seeds=range(args.seeds), config=config, progress=args.progress)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(result.to_json())
    else:
        print(f"digits, depth {config.depth}, width {config.width}, T {config.num_steps}, {config.epochs} epochs, "
              f"seeds 0..{args.seeds - 1}")
        print(result.table())
        print(f"finished in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
