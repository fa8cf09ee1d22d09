"""AHSAR: a parameter-free controller that keeps every spiking layer's firing rate in a band.

Adaptive homeostatic spiking activity regulation (Chen et al., 2025, arXiv:2512.05015) adapts
the firing thresholds of a spiking network while it trains. It adds no parameter, and changes
neither the architecture, nor the loss, nor the gradients: it only reads the layers' spikes and
writes their thresholds between forward passes, the way homeostatic plasticity in cortex tunes
excitability from a neuron's recent activity.

What is published (the abstract): a per-layer homeostatic state built from layer-average firing
rates during the forward pass; smoothing and centring of those rates; a bounded nonlinearity
from centred deviations to threshold scales; diffusion of the corrections across neighbouring
layers (Laplacian smoothing over the layer index) so that no layer is corrected in isolation;
and a slow, across-epoch global gain that combines validation progress with activity energy.
The paper's equations and constants are not public. **Everything below is our design built
from that description**, not the paper's code: every constant is a named, documented and
checked field of :class:`AHSARConfig`.

Fast timescale: after every training forward pass, for the spiking layers l = 1..L in depth
order::

    r_l      = mean spike count per neuron and step of layer l in this pass
    rbar_l  <- ema * rbar_l + (1 - ema) * r_l             (rbar_l = r_l on the first pass)
    e_l      = rbar_l - high   if rbar_l > high
               rbar_l - low    if rbar_l < low             (centring: 0 inside [low, high])
               0               otherwise
    d_l      = e_l + D * (e_{l-1} - 2 e_l + e_{l+1})       (reflecting ends: e_0 = e_1, e_{L+1} = e_L)
    scale_l  = 1 + k * tanh(d_l / width)                   (bounded: 1 - k < scale_l < 1 + k)

A layer firing above the band gets a higher threshold (it fires less), one below it a lower
threshold. ``D <= 1/2`` keeps the diffusion step a weighted average of neighbours.

Slow timescale: at the end of every epoch (``on_epoch``, e.g. ``training.fit(on_epoch=...)``)::

    energy  = mean over the epoch's training passes of  mean_l r_l^2      (activity energy)
    z       = (energy - energy_target) / energy_target + accuracy_weight * (acc - acc_previous)
    gain   <- clip(gain * exp(gain_rate * tanh(z)), gain_min, gain_max)

(``acc`` is the validation accuracy in percent, the last entry of ``history.val_accuracy``;
the accuracy term is 0 on the first epoch or without a validation loader. The test set never
reaches the controller: ``training.fit`` measures it once, after the last epoch.) Activity above its
energy budget raises all thresholds; a rise in validation accuracy lets the controller trim
activity a little further, a fall gives activity back. Each step changes the gain by at most
a factor ``exp(gain_rate)``.

Thresholds: at the start of every training forward pass, under ``torch.no_grad``::

    V_th,l = base_l * scale_l * gain

with ``base_l`` the layer's threshold when the controller was attached. Writing at the start
of a pass (never between a forward pass and its backward pass) means a pass is computed, and
differentiated, with one fixed set of thresholds: exactly the network you would get by setting
those thresholds by hand. Thresholds change at most once per training forward pass. In
evaluation mode nothing is written and, unless ``sense_in_eval=True``, nothing is measured.

The controller attaches to any module with a tensor ``threshold`` (this package's
``MultiStepLeaky``, ``snntorch.Leaky``), found by :func:`snn_norm_lite.probes.spiking_layers`,
through forward hooks: the model's code is not changed. A model whose forward pass calls a
layer once per time step (snntorch style) is handled: the rate of a pass averages all calls.
A folded MPBN neuron (``fold_mpbn``) fires by its per-channel ``fire_threshold``: the
controller scales that, and the neuron's separate reset value by the same factor, which is
the same as dividing the layer's input current by the factor (:mod:`.attachment`).

One controller per model: a second one (or one attached to a part of the model holding a
regulated layer) is refused with a ``RuntimeError`` until the first is detached. A model with
a controller attached can be deep-copied, pickled and saved with ``torch.save(model)``; the
copy keeps its thresholds but is not regulated. ``AHSAR.state_dict`` saves the controller.

NaN spikes (a NaN batch) are not counted in a rate; a layer whose spikes are all NaN gives no
measurement, so its smoothed rate, its scale and its threshold stay as they were, and a pass
without any measurement adds the energy budget (a neutral pass) to the epoch's energy.

The package, one concern per module:

* :mod:`.config`: :class:`AHSARConfig`, the constants (frozen, validated);
* :mod:`.control`: the control law, pure functions (``band_deviation``, ``diffuse``,
  ``threshold_scale``, ``smooth_rates``, ``fast_scales``, ``pass_energy``, ``epoch_energy``,
  ``gain_step``);
* :mod:`.sensing`: :class:`LayerRateSensor`, the forward hooks that measure the rates;
* :mod:`.attachment`: :class:`Attachment`, one regulated model: its layers, the thresholds
  they had (restored on detach), the sensor, and the writing of new thresholds;
* :mod:`.state` and :mod:`.trace`: what the controller carries (saved by ``state_dict``) and
  what it records for plots;
* :mod:`.controller`: :class:`AHSAR`, which composes them around one model;
* :mod:`.runs`: training runs regulated by a controller (``train_with_controller``,
  ``controller_fast_loop``).

>>> AHSAR(target_low=0.1).config.target_low
0.1
"""

from .attachment import Attachment
from .config import AHSARConfig
from .control import (
    accuracy_change,
    band_deviation,
    diffuse,
    epoch_energy,
    fast_scales,
    gain_step,
    pass_energy,
    smooth_rates,
    threshold_scale,
)
from .controller import AHSAR
from .runs import ControlledRun, controller_fast_loop, train_with_controller
from .sensing import LayerRateSensor
from .state import ControllerState
from .trace import Trace

__all__ = [
    "AHSAR",
    "AHSARConfig",
    "Attachment",
    "ControlledRun",
    "ControllerState",
    "LayerRateSensor",
    "Trace",
    "accuracy_change",
    "band_deviation",
    "controller_fast_loop",
    "diffuse",
    "epoch_energy",
    "fast_scales",
    "gain_step",
    "pass_energy",
    "smooth_rates",
    "threshold_scale",
    "train_with_controller",
]
