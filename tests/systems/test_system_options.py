"""System options declared once (resyn_bench.systems.options): the factory, the named systems
and ``resyn-bench ls systems`` all read the options dataclass of each system."""
from __future__ import annotations

import dataclasses

import pytest

from resyn_bench import registry
from resyn_bench.cli import main as cli_main
from resyn_bench.systems import named
from resyn_bench.systems.codecs import Codec2Options, OpusOptions
from resyn_bench.systems.options import (
    OptionError,
    describe_options,
    option_names,
    option_specs,
    parse_options,
)
from resyn_bench.systems.outputs import OutputsOptions
from resyn_bench.systems.vocoder.system import CheckpointOptions, CheckpointSystem
from resyn_bench.systems.world import WorldOptions

ALL_OPTIONS = [CheckpointOptions, named.NamedSystemOptions, WorldOptions, Codec2Options,
               OpusOptions, OutputsOptions]


def _sample(spec):
    """A value of the option's type that differs from its default."""
    if spec.choices:
        return next(c for c in spec.choices if c != spec.default)
    return {int: 7, float: 2.5, bool: True}.get(spec.type, f"value-of-{spec.name}")


@pytest.mark.parametrize("cls", ALL_OPTIONS, ids=lambda c: c.__name__)
def test_every_option_is_declared_with_help_and_type(cls):
    specs = option_specs(cls)
    assert specs and [s.name for s in specs] == [f.name for f in dataclasses.fields(cls)]
    for s in specs:
        assert s.help.strip() and s.type in (str, int, float, bool)
        assert s.default is None or s.choices is None or s.default in s.choices
    assert len(describe_options(cls)) == len(specs)


def test_registry_reads_each_systems_option_class():
    expected = {"world": WorldOptions, "codec2": Codec2Options, "opus": OpusOptions,
                "outputs": OutputsOptions, "ckpt": CheckpointOptions,
                "hubert100": named.NamedSystemOptions,
                "expresso-hubert500": named.NamedSystemOptions}
    for name, cls in expected.items():
        assert registry.SYSTEMS[name].option_class() is cls, name
    assert registry.SYSTEMS["copy"].option_class() is None


def test_named_options_extend_the_checkpoint_options():
    assert set(option_names(CheckpointOptions)) < set(option_names(named.NamedSystemOptions))
    assert set(option_names(named.NamedSystemOptions)) - set(option_names(CheckpointOptions)) \
        == {"checkpoint"}


def test_values_are_converted_to_the_declared_type_and_checked():
    # -o values arrive JSON-parsed: speaker=225 is an int, the option wants the name "225"
    opts = parse_options(CheckpointOptions, {"speaker": 225, "step": "7", "device": "cuda"}, "ckpt")
    assert (opts.speaker, opts.step, opts.device) == ("225", 7, "cuda")
    assert parse_options(CheckpointOptions, {}, "ckpt") == CheckpointOptions()
    assert parse_options(CheckpointOptions, {"step": 5.0}, "ckpt").step == 5
    with pytest.raises(OptionError, match=r"ckpt: -o step='latest' is not a whole number"):
        parse_options(CheckpointOptions, {"step": "latest"}, "ckpt")
    with pytest.raises(OptionError, match="Did you mean 'f0_extractor'") as err:
        parse_options(CheckpointOptions, {"f0_extracter": "yaapt"}, "ckpt")
    assert "its options are: units, speaker" in str(err.value)
    assert parse_options(Codec2Options, {"mode": 700}, "codec2").mode == "700C"
    assert parse_options(Codec2Options, {"mode": 1600}, "codec2").mode == "1600"
    with pytest.raises(OptionError, match="mode must be one of 3200, 2400"):
        parse_options(Codec2Options, {"mode": 4800}, "codec2")
    with pytest.raises(OptionError, match="vbr must be one of on, off, constrained, got 'of'. Did you mean 'off'"):
        parse_options(OpusOptions, {"vbr": "of"}, "opus")
    assert parse_options(OutputsOptions, {"bitrate": ""}, "outputs").bitrate is None
    assert parse_options(WorldOptions, {"mcep_dims": "24"}, "world").mcep_dims == 24


def test_factory_rejects_unknown_options_with_did_you_mean(tmp_path):
    with pytest.raises(registry.RegistryError, match="Did you mean 'step'") as err:
        registry.make_system(f"ckpt:{tmp_path}", stpe=3)
    assert "-o stpe=VALUE" in str(err.value) and "trust_sha256" in str(err.value)
    with pytest.raises(registry.RegistryError, match="Did you mean 'f0_extractor'") as err:
        registry.make_system("hubert100", f0_extracter="yaapt")
    assert "checkpoint" in str(err.value)
    with pytest.raises(registry.RegistryError, match="Did you mean 'f0_method'"):
        registry.make_system("world", f0_methd="dio")


def test_named_systems_forward_every_checkpoint_option(monkeypatch, tmp_path):
    """Each CheckpointOptions field given to a named system reaches CheckpointSystem unchanged
    (step and f0_extractor were once dropped on the way)."""
    seen = {}

    class Recorder:
        def __init__(self, folder, options):
            seen.update(folder=folder, options=options)

    import resyn_bench.systems.vocoder.system as system_module

    monkeypatch.setattr(system_module, "CheckpointSystem", Recorder)
    values = {s.name: _sample(s) for s in option_specs(CheckpointOptions)}
    system = registry.make_system("hubert100", checkpoint=str(tmp_path), **values)
    assert isinstance(system, Recorder) and system.named.name == "hubert100-vctk"
    assert seen["folder"] == str(tmp_path)
    assert dataclasses.asdict(seen["options"]) == values
    # options not given keep the checkpoint system's defaults (the named units, device cpu)
    seen.clear()
    registry.make_system("hubert100", checkpoint=str(tmp_path))
    assert seen["options"].units == "hubert-l6-km100" and seen["options"].device == "cpu"
    assert seen["options"].step is None and seen["options"].f0_extractor is None


def test_checkpoint_system_takes_options_or_keywords(tmp_path):
    with pytest.raises(OptionError, match="Did you mean 'speaker'"):
        CheckpointSystem(str(tmp_path), speakr="p225")
    with pytest.raises(TypeError, match="not both"):
        CheckpointSystem(str(tmp_path), CheckpointOptions(), speaker="p225")


def test_ls_systems_lists_every_declared_option(capsys):
    assert cli_main(["ls", "systems"]) == 0
    out = capsys.readouterr().out
    ckpt = out.split("\nckpt:DIR")[1].split("\ncodec2")[0]
    for name in option_names(CheckpointOptions):
        assert f"-o {name}=" in ckpt, name
    named_part = out.split("options of every named system:")[1]
    for name in option_names(named.NamedSystemOptions):
        assert f"-o {name}=" in named_part, name
    assert "-o mode=3200|2400|1600|1400|1300|1200|700C" in out
    assert "-o f0_method=harvest|dio" in out and "(default harvest)" in out
