"""Training-step cost of the reference SNN against its convolution-bound floor.

    python benchmarks/bench_snn_step.py [--repeats 40] [--threads N] [--norms bn,none]
    python benchmarks/bench_snn_step.py --device cuda [--data cifar10]     # on a GPU

Three networks of the same architecture (depth 6, width 32, T 8, batch 64, 8x8 digits-sized
input, or 3x32x32 CIFAR-10-sized with ``--data cifar10``), one forward plus backward pass each,
timed in one run on ``--device`` (on CUDA each step is timed to its end with
``torch.cuda.synchronize``):

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
INPUTS = {"digits": (1, 8), "cifar10": (3, 32)}  # --data: (channels, image size)


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
        membranes = [torch.zeros(1, device=x.device)] * len(self.leaky)
        outputs = []
        for _ in range(self.net.num_steps):
            h = x
            for i, (block, leaky, norm) in enumerate(zip(self.net.blocks, self.leaky, self.per_step_bn)):
                h, membranes[i] = leaky(norm(block.conv(h)), membranes[i])
                if i == 0:
                    h = self.net.pool(h)
            if self.net.readout_pool is not None:
                h = self.net.readout_pool(h)
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
    synchronise = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    for i in range(warmup + repeats):
        shuffler.shuffle(order)
        for name in order:
            model = models[name]
            synchronise()
            start = time.perf_counter()
            model.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            synchronise()  # a GPU step is finished only when its kernels are
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's)")
    parser.add_argument("--norms", default="bn,none")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--data", choices=sorted(INPUTS), default="digits", help="input size (default digits, 1x8x8)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch.cuda.is_available() is False on this machine")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda[:N], got {args.device}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    channels, size = INPUTS[args.data]
    x = torch.rand(64, channels, size, size, device=device)
    y = torch.randint(0, 10, (64,), device=device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"depth 6, width 32, T 8, batch 64, input {channels}x{size}x{size}; torch {torch.__version__}, {where}")
    print(f"{'norm':<6}{'network':<16}{'median ms':>11}{'/ floor':>9}")
    verdicts = []
    for norm in args.norms.split(","):
        snn = build_snn(norm, depth=6, width=32, num_steps=8, in_channels=channels, image_size=size).to(device)
        floor, loop = ReLUFloor(snn), PerStepLoop(snn).to(device)
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
