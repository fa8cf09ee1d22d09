"""Cost of each temporal normaliser against nn.BatchNorm2d, forward plus backward, in one run.

    python benchmarks/bench_norms.py [--repeats 15] [--warmup 3] [--threads N] [--shape 8,64,64,16,16]

Every layer runs in training mode on a float32 sequence ``[T, B, C, H, W]`` (default
``[8, 64, 64, 16, 16]``); one timing is a forward pass and a backward pass with a fixed output
gradient. The reference is ``nn.BatchNorm2d`` on the time-merged tensor ``[T*B, C, H, W]``.
All cases are timed round-robin (one call of each per round in a shuffled order, after
warm-up rounds), so a
machine shared with other jobs slows them alike; the table shows medians and the ratio to
BatchNorm2d, with the bars the package aims at:

    tdBN <= 1.1x,  BNTT <= 1.5x,  TEBN <= 1.5x,  TAB <= 2.5x

For information (no bar): SequenceBatchNorm2d; BNTT written as a Python loop of T BatchNorm2d
(snntorch's ``BatchNormTT2d``) and TAB written as one BatchNorm over the growing window per
step (the paper's O(T^2) code), to show what the vectorised forms save; the temporal
homeostatic layer; and MPBN's neuron against the plain multi-step LIF neuron. Last, inference of MPBN's neuron in evaluation
mode against its folded form (forward only, no autograd): the folded one should not be slower
(ratio <= 1.0).

Ratios are measured, not asserted: the unit tests contain no timing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from torch import nn

from snn_norm_lite.neurons import MultiStepLeaky
from snn_norm_lite.norms import (
    BatchNormThroughTime2d,
    MPBNLeaky,
    SequenceBatchNorm2d,
    TemporalAccumulatedBatchNorm2d,
    TemporalEffectiveBatchNorm2d,
    TemporalHomeostaticNorm2d,
    ThresholdDependentBatchNorm2d,
)

BARS = {"tdBN": 1.1, "BNTT": 1.5, "TEBN": 1.5, "TAB": 2.5}
FOLD_BAR = 1.0


class MergedBatchNorm(nn.Module):
    """The reference: nn.BatchNorm2d on [T*B, C, H, W]."""

    def __init__(self, channels):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return self.bn(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class BNTTLoop(nn.Module):
    """BNTT the way snntorch's BatchNormTT2d writes it: a list of T BatchNorm2d, one call per step."""

    def __init__(self, channels, steps):
        super().__init__()
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(steps))

    def forward(self, x):
        return torch.stack([norm(x[t]) for t, norm in enumerate(self.norms)])


class TABWindowLoop(nn.Module):
    """TAB the way the paper's code computes it: at step t, one BatchNorm over the window x[0..t]: O(T^2)."""

    def __init__(self, channels, steps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(steps, channels))
        self.bias = nn.Parameter(torch.zeros(steps, channels))

    def forward(self, x):
        batch = x.shape[1]
        outputs = []
        for t in range(x.shape[0]):
            window = nn.functional.batch_norm(x[: t + 1].flatten(0, 1), None, None, training=True)
            outputs.append(window[-batch:] * self.weight[t].view(1, -1, 1, 1) + self.bias[t].view(1, -1, 1, 1))
        return torch.stack(outputs)


def training_case(module, x, grad):
    """A callable running one forward and backward pass of ``module`` in training mode."""
    module.train()
    x = x.clone().requires_grad_()

    def run():
        x.grad = None
        module.zero_grad(set_to_none=True)
        module(x).backward(grad)

    return run


def inference_case(module, x):
    module.eval()

    def run():
        with torch.no_grad():
            module(x)

    return run


def time_round_robin(cases, repeats, warmup):
    """Median seconds per case, timing one call of each case per round, in a shuffled order."""
    times = {name: [] for name in cases}
    order = random.Random(0)
    for round_index in range(warmup + repeats):
        names = list(cases)
        order.shuffle(names)  # no case always runs right after the same neighbour
        for name in names:
            run = cases[name]
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (default 15)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's)")
    parser.add_argument("--shape", default="8,64,64,16,16", help="T,B,C,H,W (default 8,64,64,16,16)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps, batch, channels, height, width = (int(v) for v in args.shape.split(","))
    torch.manual_seed(0)
    x = torch.randn(steps, batch, channels, height, width) * 1.5 + 0.3
    grad = torch.randn_like(x)
    print(
        f"[T, B, C, H, W] = {list(x.shape)} float32, forward + backward, training mode; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {args.repeats} round-robin rounds after {args.warmup} warm-up"
    )

    layers = {
        "BatchNorm2d [T*B]": MergedBatchNorm(channels),
        "SequenceBatchNorm2d": SequenceBatchNorm2d(channels),
        "tdBN": ThresholdDependentBatchNorm2d(channels),
        "BNTT": BatchNormThroughTime2d(channels, steps),
        "TEBN": TemporalEffectiveBatchNorm2d(channels, steps),
        "TAB": TemporalAccumulatedBatchNorm2d(channels, steps),
        "BNTT as a loop of T BNs": BNTTLoop(channels, steps),
        "TAB as O(T^2) window loop": TABWindowLoop(channels, steps),
        "homeostatic (temporal)": TemporalHomeostaticNorm2d(channels, steps),
        "LIF (MultiStepLeaky)": MultiStepLeaky(beta=0.9, threshold=1.0),
        "MPBN neuron (MPBNLeaky)": MPBNLeaky(channels, beta=0.9, threshold=1.0),
    }
    cases = {name: training_case(module, x, grad) for name, module in layers.items()}
    mpbn = MPBNLeaky(channels, beta=0.9, threshold=1.0)
    with torch.no_grad():  # a trained-looking BN: both signs of gamma, spread statistics
        mpbn.membrane_norm.weight.copy_(torch.randn(channels))
        mpbn.membrane_norm.bias.copy_(torch.randn(channels) * 0.5)
        mpbn.membrane_norm.running_mean.copy_(torch.randn(channels))
        mpbn.membrane_norm.running_var.copy_(torch.rand(channels) + 0.5)
    folded = mpbn.eval().fold()
    if not torch.equal(mpbn(x), folded(x)):
        raise AssertionError("folded MPBN neuron disagrees with the unfolded one")
    cases["MPBN eval, unfolded"] = inference_case(mpbn, x)
    cases["MPBN eval, folded"] = inference_case(folded, x)

    medians = time_round_robin(cases, args.repeats, args.warmup)
    reference = medians["BatchNorm2d [T*B]"]
    lif = medians["LIF (MultiStepLeaky)"]
    print(f"\n{'layer':<26}{'median ms':>10}{'ratio':>9}   {'bar':<9}verdict")
    verdicts = []
    for name in layers:
        seconds = medians[name]
        base, base_name = (lif, "LIF") if "neuron" in name or "LIF" in name else (reference, "BN")
        ratio = seconds / base
        bar = BARS.get(name)
        verdict = ("PASS" if ratio <= bar else "FAIL") if bar else "(info)"
        bar_text = f"<= {bar}x" if bar else ""
        print(f"{name:<26}{seconds * 1e3:>10.1f}{ratio:>8.2f}x   {bar_text:<9}{verdict}  (vs {base_name})")
        if bar:
            verdicts.append(verdict)
    unfolded, folded_time = medians["MPBN eval, unfolded"], medians["MPBN eval, folded"]
    fold_ratio = folded_time / unfolded
    fold_verdict = "PASS" if fold_ratio <= FOLD_BAR else "FAIL"
    print(f"\n{'MPBN inference, unfolded':<26}{unfolded * 1e3:>10.1f}")
    print(
        f"{'MPBN inference, folded':<26}{folded_time * 1e3:>10.1f}{fold_ratio:>8.2f}x   <= {FOLD_BAR}x   "
        f"{fold_verdict}  (vs unfolded; spikes identical)"
    )
    verdicts.append(fold_verdict)
    print(f"\nbars: {verdicts.count('PASS')} of {len(verdicts)} PASS")


if __name__ == "__main__":
    main()
