"""Cost of the AHSAR controller: training-step time of the reference SNN with and without it.

    python benchmarks/bench_ahsar.py [--repeats 60] [--threads N] [--norm bn]

Two copies of the reference SNN (depth 6, width 32, T 8) with the same weights train on the
same digits batches of 64 (forward, backward, Adam step); one has an ``AHSAR`` controller
attached. Steps of the two alternate (and swap order every repeat), so both see the same
machine load. Prints the median step time of each, the overhead ratio (the median over repeats
of the paired ratio with / without, which cancels slow drifts of the machine load) and the bar
(with AHSAR <= 1.05 x without).

On a shared machine the step-to-step noise can exceed the controller's cost, so the script also
times the controller's own work alone: its hooks replayed on the spikes of one real pass
(begin: write thresholds; per layer: sense the rate; end: update the state), without the
network. ``(step + own work) / step`` is a noise-free estimate of the same ratio.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

from snn_norm_lite.ahsar import AHSAR
from snn_norm_lite.data import load_digits
from snn_norm_lite.models import build_snn

BAR = 1.05


def make_step(model):
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimiser.step()
        return time.perf_counter() - start

    return step


def controller_work(model, layers, x):
    """Median time of the controller's hooks for one training pass, replayed on recorded spikes."""
    outputs = []
    handles = [layer.register_forward_hook(lambda m, a, out: outputs.append(out.detach())) for layer in layers]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    # the hooks AHSAR registered (nn.Module keeps them in these dictionaries)
    begin, end = list(model._forward_pre_hooks.values()), list(model._forward_hooks.values())
    sense = [list(layer._forward_hooks.values()) for layer in layers]

    def replay():
        start = time.perf_counter()
        for hook in begin:
            hook(model, (x,))
        for layer, hooks, out in zip(layers, sense, outputs):
            for hook in hooks:
                hook(layer, (None,), out)
        for hook in end:
            hook(model, (x,), None)
        return time.perf_counter() - start

    return statistics.median(replay() for _ in range(200))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's)")
    parser.add_argument("--norm", default="bn", help="registry name of the reference SNN's normaliser")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    split = load_digits()
    batches = [(split.x_train[i : i + 64], split.y_train[i : i + 64]) for i in range(0, 64 * 8, 64)]
    plain = build_snn(args.norm, depth=6, width=32, num_steps=8)
    regulated = copy.deepcopy(plain)
    controller = AHSAR().attach(regulated)
    steps = {"without AHSAR": make_step(plain), "with AHSAR": make_step(regulated)}
    times = {name: [] for name in steps}
    names = list(steps)
    for i in range(args.warmup + args.repeats):
        x, y = batches[i % len(batches)]
        for name in names if i % 2 == 0 else names[::-1]:
            seconds = steps[name](x, y)
            if i >= args.warmup:
                times[name].append(seconds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = statistics.median(a / b for a, b in zip(times["with AHSAR"], times["without AHSAR"]))
    passes, scales = controller.passes, [round(s, 3) for s in controller.scales.tolist()]
    own = controller_work(regulated, regulated.neurons(), batches[0][0])
    print(
        f"reference SNN norm={args.norm}: depth 6, width 32, T 8, batch 64 digits; forward + backward + Adam step; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} repeats"
    )
    for name, seconds in medians.items():
        print(f"{name:<15}{seconds * 1e3:>9.1f} ms  (median)")
    print(f"controller: {passes} training passes regulated, threshold scales now {scales}")
    print(
        f"controller's own work per training pass (hooks replayed): {own * 1e3:.3f} ms, "
        f"estimated overhead {(medians['without AHSAR'] + own) / medians['without AHSAR']:.4f}x"
    )
    verdict = "PASS" if ratio <= BAR else "FAIL"
    print(f"overhead (median paired ratio): {ratio:.3f}x (bar <= {BAR}x): {verdict}")
    return ratio


if __name__ == "__main__":
    main()
