"""Command line for the book's experiments: ``python -m snn_norm_lite <experiment> [options]``.

    python -m snn_norm_lite headline                     # the ANN-vs-SNN table at the collapse depth
    python -m snn_norm_lite headline --json --seeds 5    # as JSON, mean and spread over 5 seeds
    python -m snn_norm_lite compare                      # every method side by side (chapter 12)
    python -m snn_norm_lite compare --out results/       # also results.json, results.csv, comparison.png
    python -m snn_norm_lite compare --plugin my.module --norms bn,mine   # a method defined elsewhere
    python -m snn_norm_lite compare --encoding rate      # the same with Poisson (rate-coded) input
    python -m snn_norm_lite norms                        # the registered normalisers

    python -m snn_norm_lite compare --dataset cifar10 --download --device cuda --amp   # CIFAR-10 on a GPU
    torchrun --nproc_per_node 4 -m snn_norm_lite compare --dataset cifar10 --device cuda   # 4 GPUs

``--dataset cifar10`` reads CIFAR-10 from ``--data-dir`` (default ``data/cifar10``) and downloads
it there only with ``--download``. Under ``torchrun`` the run is data-parallel: one process per
GPU (NCCL) or per CPU share (gloo), the global batch ``--batch-size`` split evenly, every
normaliser's statistics taken over the whole global batch, and only process 0 prints or writes.

``--plugin MODULE`` (repeatable) imports a module before the method names are checked; a module
that calls :func:`snn_norm_lite.norms.register` makes its methods usable by ``--norms``.
Usage errors (an unknown name, a plugin that cannot be imported, a bad value) exit with status 2
and a message on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time

import torch

from .comparison import DEFAULT_AHSAR, compare_methods, comparison_config, save_comparison
from . import data
from .data import DATASETS, load_cifar10, load_dataset
from .distributed import init_from_environment, is_data_parallel, rank, world_size
from .encoding import ENCODINGS
from .experiments import HEADLINE_NORMS, headline, headline_config
from .norms import available_norms, get_spec

DEFAULT_CIFAR10_DIR = "data/cifar10"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _at_least_two(text: str) -> int:
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected at least 2 (one image to train, one to validate), got {value}")
    return value


def _name_list(text: str) -> list[str]:
    """Split a comma-separated list of registry names (checked against the registry later,
    once the plugins are imported)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of normaliser names, got {text!r}")
    return names


def _device(text: str) -> str:
    """A device this machine can train on: ``cpu``, ``cuda[:N]`` or ``mps``, when present."""
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise argparse.ArgumentTypeError(str(error).splitlines()[0]) from None
    if device.type == "cpu":
        return text
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"CUDA ({text}) was requested but torch.cuda.is_available() is False")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{text} was requested but this machine has {count} CUDA device(s)")
        return text
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise argparse.ArgumentTypeError("MPS was requested but torch.backends.mps.is_available() is False")
        return text
    if device.type == "meta":
        raise argparse.ArgumentTypeError("the meta device holds shapes but no data, so nothing can train on it; use cpu")
    raise argparse.ArgumentTypeError(f"device type {device.type!r} is not supported for training; use cpu, cuda or mps")


def add_training_options(parser: argparse.ArgumentParser, defaults, norms, norms_help: str) -> None:
    """The options both training commands share, with ``defaults`` (a ``TrainConfig``) for the budget."""
    parser.add_argument("--norms", type=_name_list, default=norms, help=norms_help)
    parser.add_argument("--depth", type=_positive_int, default=defaults.depth, help=f"blocks L (default {defaults.depth})")
    parser.add_argument("--width", type=_positive_int, default=defaults.width, help=f"channels (default {defaults.width})")
    parser.add_argument("--epochs", type=_positive_int, default=defaults.epochs, help=f"default {defaults.epochs}")
    parser.add_argument("--steps", type=_positive_int, default=defaults.num_steps,
                        help=f"SNN time steps T (default {defaults.num_steps})")
    parser.add_argument("--encoding", choices=ENCODINGS, default=defaults.encoding,
                        help=f"how the SNN turns an image into T inputs (default {defaults.encoding}; the ANN sees the image)")
    parser.add_argument("--seeds", type=_positive_int, default=3,
                        help="number of seeds, 0..N-1 (default 3); accuracies are mean ± std")
    parser.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size,
                        help=f"global training batch, split over the processes under torchrun (default {defaults.batch_size})")
    parser.add_argument("--dataset", choices=DATASETS, default=defaults.dataset,
                        help=f"data set (default {defaults.dataset}; cifar10 is read from --data-dir)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help=f"where CIFAR-10 is, or is downloaded to with --download (default {DEFAULT_CIFAR10_DIR})")
    parser.add_argument("--download", action="store_true", help="download CIFAR-10 into --data-dir if it is not there")
    parser.add_argument("--limit", type=_at_least_two, default=None, metavar="N",
                        help="use only the first N CIFAR-10 training and test images (a quick run)")
    parser.add_argument("--device", type=_device, default="cpu", help="cpu (default), cuda[:N] or mps, when present")
    parser.add_argument("--amp", action="store_true",
                        help="bfloat16 mixed precision (autocast) for CUDA; normalisers keep float32 statistics")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--progress", action="store_true", help="show tqdm progress bars")
    _add_plugin_option(parser)


def _add_plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first, e.g. one that registers a method (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (names are checked by :func:`parse_args`, after the plugins)."""
    parser = argparse.ArgumentParser(prog="python -m snn_norm_lite", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    head = commands.add_parser("headline", help="train ANN and SNN with and without normalisation; print the table")
    add_training_options(head, headline_config(), list(HEADLINE_NORMS),
                         "comma-separated registry names; methods without a conventional form get an SNN row only "
                         f"(default {','.join(HEADLINE_NORMS)})")

    compare = commands.add_parser("compare", help="train every method on the same SNN (chapter 12's table)")
    add_training_options(compare, comparison_config(), None, "comma-separated registry names (default: all)")
    compare.add_argument("--ahsar", type=_name_list, default=list(DEFAULT_AHSAR),
                         help=f"names also trained with AHSAR (default {','.join(DEFAULT_AHSAR)})")
    compare.add_argument("--out", metavar="DIR", default=None,
                         help="also write DIR/results.json, DIR/results.csv and DIR/comparison.png")

    _add_plugin_option(commands.add_parser("norms", help="list the registered normalisers"))
    return parser


def _import_plugins(parser: argparse.ArgumentParser, modules) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # any failure of the plugin's own code is a usage error here
            parser.error(f"--plugin {module!r} could not be imported: {type(error).__name__}: {error}")


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``argv``, import every ``--plugin``, then check the method names against the registry.

    Exits with status 2 and a message (argparse's ``error``) on any usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _import_plugins(parser, args.plugin)
    known = available_norms()
    for option in ("norms", "ahsar"):
        names = getattr(args, option, None) or []
        unknown = [name for name in names if name not in known]
        if unknown:
            parser.error(f"--{option}: unknown normaliser(s) {', '.join(unknown)}; registered: {', '.join(known)}")
        if len(set(names)) != len(names):
            parser.error(f"--{option}: a name appears twice: {','.join(names)}")
    out = getattr(args, "out", None)
    if out is not None and os.path.exists(out) and not os.path.isdir(out):
        parser.error(f"--out: expected a directory (existing or to be created), got the file {out}")
    if args.command != "norms" and args.dataset != "cifar10":
        for option, given in (("--data-dir", args.data_dir is not None), ("--download", args.download),
                              ("--limit", args.limit is not None)):
            if given:
                parser.error(f"{option} is for --dataset cifar10 (the {args.dataset} data set ships with the package)")
    if args.command != "norms" and args.amp and torch.device(args.device).type not in ("cuda", "cpu"):
        parser.error(f"--amp (bfloat16 autocast) runs on cuda (or, slowly, cpu), not on {args.device}")
    return args


def load_split(args: argparse.Namespace):
    """The data set the command trains on. CIFAR-10 is downloaded only with ``--download``; in a
    data-parallel run the first process of each machine (``LOCAL_RANK`` 0) downloads while the
    others wait, then every process reads it."""
    if args.dataset != "cifar10":
        return load_dataset(args.dataset)
    root = args.data_dir if args.data_dir is not None else DEFAULT_CIFAR10_DIR
    download = args.download
    if download and is_data_parallel():
        failure = None
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            try:
                load_cifar10(root, download=True, limit=2)  # fetch and unpack once per machine
            except (OSError, ValueError) as error:  # reach the barrier anyway: nobody waits forever
                failure = error
        torch.distributed.barrier()
        if failure is not None:
            raise failure
        download = False  # the others read what the first process fetched
    try:
        return load_cifar10(root, download=download, limit=args.limit)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no CIFAR-10 under {root} (the folder {data.CIFAR10_FOLDER} of the official python archive); add "
            "--download to fetch it there (about 170 MB, needs a network connection), or point --data-dir at it"
        ) from None


def _print_norms() -> None:
    for name in available_norms():
        spec = get_spec(name)
        kind = " (spiking only)" if spec.spiking_only or spec.circuit else ""
        print(f"{name:<12} {spec.summary}{kind}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "norms":
        _print_norms()
        return 0
    try:
        device = init_from_environment(args.device)  # joins torchrun's process group, if launched by it
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        if rank() != 0:  # under torchrun only process 0 prints the table (every process computes the same one);
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # errors still reach stderr
                return _run(args, device)
        return _run(args, device)
    finally:
        if is_data_parallel():
            torch.distributed.destroy_process_group()


def _run(args: argparse.Namespace, device: str) -> int:
    """Train and print one command's table (``main`` has set up the device and the processes)."""
    budget = dict(depth=args.depth, width=args.width, num_steps=args.steps, epochs=args.epochs, device=device,
                  encoding=args.encoding, batch_size=args.batch_size, dataset=args.dataset, amp=args.amp)
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    if getattr(args, "out", None) is not None:
        import matplotlib

        matplotlib.use("Agg")  # files only, no window
    progress = args.progress and rank() == 0
    try:
        split = load_split(args)
        if args.command == "compare":
            config = comparison_config(**budget)
            result = compare_methods(args.norms, seeds=seeds, config=config, ahsar_on=args.ahsar, progress=progress,
                                     split=split)
            paths = save_comparison(result, args.out) if args.out is not None and rank() == 0 else None
        else:
            config = headline_config(**budget)
            result = headline(args.norms, seeds=seeds, config=config, progress=progress, split=split)
            paths = None
    except (ValueError, OSError) as error:  # bad settings, missing or undownloadable data
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(result.to_json())
        return 0
    network = "SNN " if args.command == "compare" else ""
    sizes = split.sizes()
    print(f"{split.name} ({sizes['train']} train, {sizes['val']} validation, {sizes['test']} test images), {network}"
          f"depth {config.depth}, width {config.width}, T {config.num_steps}, {config.epochs} epochs, "
          f"batch {config.batch_size}, Adam lr {config.lr:g}, seeds 0..{args.seeds - 1}")
    if is_data_parallel() or args.amp:
        processes = f"data-parallel over {world_size()} processes (each a batch of {config.batch_size // world_size()})"
        print(", ".join(([processes] if is_data_parallel() else []) + (["bfloat16 autocast"] if args.amp else [])))
    print(result.table())
    if paths is not None:
        print("wrote", ", ".join(str(path) for path in paths.values()))
    print(f"finished in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
