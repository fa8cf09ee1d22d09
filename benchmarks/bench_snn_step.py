"""Training-step cost of the reference SNN against its convolution-bound floor.

    python benchmarks/bench_snn_step.py [--repeats 40] [--threads N] [--norms bn,none]

Three networks of the same architecture (depth 6, width 32, T 8, batch 64, 8x8 digits-sized
input), one forward plus backward pass each, timed in one run:

* reference SNN: ``SpikingConvNet`` as the package builds it (convolutions on the time-merged
  batch, the fused multi-step LIF neuron);
* floor: the same network with ReLU in place of LIF, run on the time-merged batch of T*B
  samples: the cost of the convolutions and normalisations alone;
* per-step loop: the same weights run step by step, snntorch style (``snntorch.Leaky`` called
  once per step per layer), the way most SNN tutorials write it.

The three are timed round-robin (one step of each per round, in a shuffled order), so a drift
of the machine's load affects them alike. Prints median times and the ratios to the floor,
with the bar (reference <= 1.3x floor).
With ``norm=none`` the three compute the same function, which is checked before timing; with
``norm=bn`` the per-step loop normalises each step with that step's statistics.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time

import snntorch
import torch
from snntorch import surrogate
from torch import nn

from snn_norm_lite.models import build_snn

BAR = 1.3


class ReLUFloor(nn.Module):
    """The reference SNN with every LIF layer replaced by ReLU on the whole sequence."""

    def __init__(self, snn):
        super().__init__()
        self.net = copy.deepcopy(snn)
        for block in self.net.blocks:
            block.neuron = nn.ReLU()

    def forward(self, x):
        return self.net(x)


class PerStepLoop(nn.Module):
    """The reference SNN's weights, run one time step at a time with snntorch.Leaky."""

    def __init__(self, snn):
        super().__init__()
        self.net = copy.deepcopy(snn)
        self.leaky = nn.ModuleList(
            snntorch.Leaky(beta=snn.beta, threshold=snn.threshold, spike_grad=surrogate.atan()) for _ in snn.blocks
        )
        self.per_step_bn = nn.ModuleList(
            nn.BatchNorm2d(snn.width) if not isinstance(b.norm, nn.Identity) else nn.Identity() for b in snn.blocks
        )

    def forward(self, x):
        membranes = [torch.zeros(1)] * len(self.leaky)
        outputs = []
        for _ in range(self.net.num_steps):
            h = x
            for i, (block, leaky, norm) in enumerate(zip(self.net.blocks, self.leaky, self.per_step_bn)):
                h, membranes[i] = leaky(norm(block.conv(h)), membranes[i])
                if i == 0:
                    h = self.net.pool(h)
            outputs.append(self.net.readout(h.flatten(1)))
        return torch.stack(outputs).mean(0)


def step_times(models: dict, x, y, repeats: int, warmup: int = 3) -> dict:
    """Median forward + backward time of each model, timed round-robin in a shuffled order.

    One round times one step of every model, so a machine whose load drifts slows them alike.
    """
    loss_fn = nn.CrossEntropyLoss()
    times = {name: [] for name in models}
    order = list(models)
    shuffler = random.Random(0)
    for i in range(warmup + repeats):
        shuffler.shuffle(order)
        for name in order:
            model = models[name]
            start = time.perf_counter()
            model.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's)")
    parser.add_argument("--norms", default="bn,none")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(64, 1, 8, 8)
    y = torch.randint(0, 10, (64,))
    print(f"depth 6, width 32, T 8, batch 64, input 8x8; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'norm':<6}{'network':<16}{'median ms':>11}{'/ floor':>9}")
    verdicts = []
    for norm in args.norms.split(","):
        snn = build_snn(norm, depth=6, width=32, num_steps=8)
        floor, loop = ReLUFloor(snn), PerStepLoop(snn)
        if norm == "none":
            torch.testing.assert_close(loop(x), snn(x), rtol=1e-4, atol=1e-5)
        times = step_times({"floor (ReLU)": floor, "reference SNN": snn, "per-step loop": loop}, x, y, args.repeats)
        for name, seconds in times.items():
            print(f"{norm:<6}{name:<16}{seconds * 1e3:>11.1f}{seconds / times['floor (ReLU)']:>8.2f}x")
        ratio = times["reference SNN"] / times["floor (ReLU)"]
        verdicts.append(f"norm={norm}: reference SNN {ratio:.2f}x floor (bar <= {BAR}x): {'PASS' if ratio <= BAR else 'FAIL'}")
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
