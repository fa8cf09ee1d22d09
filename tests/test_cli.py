"""The command line: both training commands, JSON and file output, plugins, and errors."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from snn_norm_lite import comparison, experiments
from snn_norm_lite.__main__ import build_parser, main, parse_args
from snn_norm_lite.norms import available_norms, unregister

FAST = ["--depth", "2", "--width", "4", "--steps", "2", "--epochs", "1"]


def test_headline_json_small_run(capsys):
    code = main(["headline", "--json", "--seeds", "2", *FAST, "--norms", "none,bn"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["ann"]) == set(result["snn"]) == {"none", "bn"}
    for entry in list(result["ann"].values()) + list(result["snn"].values()):
        assert {"mean", "std", "seeds"} <= set(entry) and len(entry["seeds"]) == 2
        assert 0 <= entry["mean"] <= 100
    assert result["config"]["depth"] == 2 and result["config"]["num_steps"] == 2
    assert set(result["gap"]) == {"ann", "snn"} and set(result["gap_ratio"]) == {"bn"}


def test_headline_gives_spiking_only_methods_an_snn_row(capsys):
    code = main(["headline", "--json", "--seeds", "1", *FAST, "--norms", "none,tebn,ei"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["snn"]) == ["none", "tebn", "ei"]
    assert list(result["ann"]) == ["none"]  # tebn is spiking-only, ei a circuit
    assert set(result["gap"]["snn"]) == {"tebn", "ei"} and result["gap"]["ann"] == {}
    assert result["gap_ratio"] == {}  # a ratio needs both gaps
    assert main(["headline", "--seeds", "1", *FAST, "--norms", "none,bn,tebn"]) == 0
    lines = capsys.readouterr().out.splitlines()
    tebn = next(line for line in lines if line.startswith("tebn"))
    bn = next(line for line in lines if line.startswith("bn"))
    assert tebn.split()[1] == "n/a" and tebn.split()[-1] == "n/a"  # ANN column and ratio
    assert bn.split()[1] != "n/a"
    assert any("no conventional-network form" in line for line in lines)


def test_headline_table_output(capsys):
    assert main(["headline", "--seeds", "1", *FAST, "--norms", "none,homeostatic"]) == 0
    out = capsys.readouterr().out
    assert "homeostatic" in out and "SNN gap" in out and "depth 2" in out


def test_headline_default_is_chapter_1s_budget_at_its_collapse_depth():
    args = parse_args(["headline"])
    assert args.depth == experiments.HEADLINE_DEPTH == experiments.headline_config().depth == 8
    assert args.epochs == experiments.HEADLINE_EPOCHS == 6
    assert args.norms == list(experiments.HEADLINE_NORMS) and args.seeds == 3
    defaults = experiments.TrainConfig()
    assert (args.width, args.steps) == (defaults.width, defaults.num_steps)


def test_compare_defaults_are_the_chapter_budget():
    args = parse_args(["compare"])
    budget = comparison.comparison_config()
    assert (args.depth, args.width, args.steps, args.epochs) == (budget.depth, budget.width, budget.num_steps, budget.epochs)
    assert args.norms is None and args.ahsar == list(comparison.DEFAULT_AHSAR) and args.out is None


def test_compare_json_schema(capsys):
    code = main(["compare", "--json", "--seeds", "2", *FAST, "--norms", "none,tebn", "--ahsar", "none"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["depth"] == 2 and result["config"]["width"] == 4 and result["config"]["epochs"] == 1
    assert list(result["results"]) == ["none", "tebn", "none+ahsar"]
    for entry in result["results"].values():
        assert {"mean", "std", "seeds", "rate", "seconds_per_epoch", "val"} <= set(entry)
        assert len(entry["seeds"]) == 2 and entry["mean"] == pytest.approx(sum(entry["seeds"]) / 2)
        assert 0 <= entry["rate"] <= 1 and entry["seconds_per_epoch"] > 0
    assert "threshold_history" in result["results"]["none+ahsar"]


def test_compare_prints_the_chapter_table(capsys):
    """The command prints compare_methods' own table for the same settings (what chapter 12 calls)."""
    assert main(["compare", "--seeds", "1", *FAST, "--norms", "none,bn", "--ahsar", "bn"]) == 0
    out = capsys.readouterr().out
    config = comparison.comparison_config(depth=2, width=4, num_steps=2, epochs=1)
    direct = comparison.compare_methods(["none", "bn"], seeds=[0], config=config, ahsar_on=["bn"])
    strip = lambda line: line.rsplit(maxsplit=1)[0]  # noqa: E731  (the last column is a timing)
    printed = [line for line in out.splitlines() if line.split()[:1] in (["none"], ["bn"], ["bn+ahsar"])]
    assert [strip(line) for line in printed] == [strip(line) for line in direct.table().splitlines()[2:]]


def test_compare_out_writes_json_csv_and_png(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["compare", "--seeds", "2", *FAST, "--norms", "none,tebn", "--ahsar", "none", "--out", str(out)])
    assert code == 0
    assert "results.csv" in capsys.readouterr().out
    data = json.loads((out / "results.json").read_text())
    assert list(data["results"]) == ["none", "tebn", "none+ahsar"]
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["label"] for row in rows] == ["none", "tebn", "none+ahsar"]
    for row in rows:
        entry = data["results"][row["label"]]
        assert float(row["test_mean"]) == pytest.approx(entry["mean"], abs=1e-3)
        assert float(row["seconds_per_epoch"]) == pytest.approx(entry["seconds_per_epoch"], abs=1e-3)
        assert [float(v) for v in row["test_seeds"].split()] == pytest.approx(entry["seeds"], abs=1e-3)
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_out_refuses_a_file(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("")
    with pytest.raises(SystemExit) as exit_info:  # before any training
        main(["compare", "--seeds", "1", *FAST, "--norms", "none", "--ahsar", "none", "--out", str(target)])
    assert exit_info.value.code == 2
    assert "expected a directory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="expected a directory"):
        comparison.save_comparison(None, target)


PLUGIN = '''
from torch import nn
from snn_norm_lite.norms import NormSpec, register
from snn_norm_lite.sequences import over_time


class GroupNormOverTime(nn.GroupNorm):
    """GroupNorm of each step (spiking form [T, B, C, H, W]) or of the batch (conventional form)."""

    def __init__(self, num_features, num_steps):
        super().__init__(2, num_features)
        self.num_steps = num_steps

    def forward(self, x):
        return super().forward(x) if self.num_steps is None else over_time(super().forward, x)


SPEC = register(NormSpec("{name}", "GroupNorm with 2 groups (a test plugin)",
                         lambda num_features, num_steps, **neuron: GroupNormOverTime(num_features, num_steps)))
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A module written into tmp_path that registers the method "testgroupnorm"; unregistered after."""
    module, name = "cli_test_plugin_groupnorm", "testgroupnorm"
    (tmp_path / f"{module}.py").write_text(PLUGIN.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    yield module, name
    if name in available_norms():
        unregister(name)
    sys.modules.pop(module, None)


@pytest.mark.parametrize("command", ["headline", "compare"])
def test_plugin_methods_work_in_both_commands(plugin, command, capsys):
    module, name = plugin
    assert name not in available_norms()
    extra = ["--ahsar", "none"] if command == "compare" else []
    code = main([command, "--json", "--seeds", "1", *FAST, "--norms", f"none,{name}", *extra, "--plugin", module])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["results"] if command == "compare" else result["snn"]
    assert name in rows
    if command == "headline":
        assert name in result["ann"]  # the plugin has a conventional-network form


def test_plugin_names_are_unknown_without_the_plugin(plugin, capsys):
    _, name = plugin
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", *FAST, "--norms", f"none,{name}"])
    assert exit_info.value.code == 2
    assert f"unknown normaliser(s) {name}" in capsys.readouterr().err


def test_plugin_listed_by_norms(plugin, capsys):
    module, name = plugin
    assert main(["norms", "--plugin", module]) == 0
    assert name in capsys.readouterr().out


@pytest.mark.parametrize(
    "source, message",
    [
        (None, "ModuleNotFoundError"),
        ("raise RuntimeError('broken plugin')", "RuntimeError: broken plugin"),
        ("from snn_norm_lite.norms import NormSpec, register\n"
         "register(NormSpec('bn', 'a second bn', lambda *a, **k: None))", "already registered"),
    ],
)
def test_plugin_import_errors_exit_2_with_a_message(source, message, tmp_path, monkeypatch, capsys):
    module = "cli_test_plugin_broken"
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["headline", *FAST, "--plugin", module])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--plugin {module!r} could not be imported" in err and message in err
    sys.modules.pop(module, None)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["headline", "--norms", "none,nope"], "unknown normaliser(s) nope"),
        (["compare", "--ahsar", "nope"], "--ahsar: unknown normaliser(s) nope"),
        (["compare", "--norms", "bn,bn"], "appears twice"),
        (["headline", "--norms", ","], "comma-separated list"),
        (["headline", "--depth", "0"], "positive integer"),
        (["compare", "--seeds", "two"], "positive integer"),
        (["headline", "--device", "cuda:0"], "CUDA"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_bad_options_exit_2_with_a_message(argv, message, capsys):
    if "cuda:0" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "device, available, message",
    [
        ("cuda", torch.cuda.is_available, "CUDA (cuda) was requested"),
        ("mps", lambda: torch.backends.mps.is_available(), "MPS was requested"),
        ("meta", lambda: False, "the meta device holds shapes but no data"),
        ("gpu", lambda: False, "gpu"),
        ("cuda:99", lambda: torch.cuda.device_count() > 99, "cuda:99"),
    ],
)
@pytest.mark.parametrize("command", ["headline", "compare"])
def test_unusable_devices_exit_2_with_one_line(command, device, available, message, capsys):
    if available():
        pytest.skip(f"this machine has {device}")
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--device", device])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage:")  # argparse's usage, then the error on one line
    errors = [line for line in err if "error:" in line]
    assert errors == [err[-1]] and message in err[-1] and "argument --device" in err[-1]


def test_cpu_is_always_a_device():
    assert parse_args(["headline", "--device", "cpu"]).device == "cpu"


def test_shared_options_are_defined_once():
    """Both training commands take the same options (from one function), compare adds its own."""
    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command").choices
    options = {name: {o for a in sub._actions for o in a.option_strings} for name, sub in commands.items()}
    assert options["compare"] - options["headline"] == {"--ahsar", "--out"}
    assert options["headline"] <= options["compare"]
    assert {"--plugin", "--norms", "--seeds", "--device", "--progress", "--json"} <= options["headline"]


def test_module_entry_point_lists_norms():
    out = subprocess.run([sys.executable, "-m", "snn_norm_lite", "norms"], capture_output=True, text=True, check=True).stdout
    assert "homeostatic" in out and "bn" in out and "tebn" in out


def test_encoding_option_reaches_the_config(capsys):
    code = main(["compare", "--json", "--seeds", "1", *FAST, "--norms", "none", "--ahsar", "none", "--encoding", "rate"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["config"]["encoding"] == "rate"
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--encoding", "poisson"])
    assert exit_info.value.code == 2
