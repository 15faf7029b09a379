import subprocess
import sys

import pytest

from resyn_bench import registry


def test_unknown_system_suggests():
    with pytest.raises(registry.RegistryError) as err:
        registry.make_system("wrld")
    assert "Did you mean 'world'" in str(err.value) and "copy" in str(err.value)


def test_argument_rules():
    with pytest.raises(registry.RegistryError, match="needs an argument"):
        registry.make_system("outputs")
    with pytest.raises(registry.RegistryError, match="takes no"):
        registry.make_system("copy:foo")
    with pytest.raises(registry.RegistryError, match="its options are"):
        registry.make_system("world", bogus=1)


def test_system_names_and_metric_suites():
    assert registry.make_system("copy").name == "copy"
    assert registry.resolve_metric_names("pitch,f0") == ["f0"]
    assert registry.resolve_metric_names("f0,paper") == ["f0", "asr", "spk", "dnsmos"]
    with pytest.raises(registry.RegistryError, match="Did you mean"):
        registry.resolve_metric_names("f00")


def test_register_system_in_process(monkeypatch):
    from resyn_bench.systems.baselines import CopySystem

    monkeypatch.setattr(registry, "SYSTEMS", dict(registry.SYSTEMS))
    registry.register_system("mine", CopySystem, "a test system")
    assert isinstance(registry.make_system("mine"), CopySystem)
    with pytest.raises(registry.RegistryError, match="already registered"):
        registry.register_system("mine", CopySystem)


def test_listing_imports_no_heavy_modules():
    code = ("import sys; from resyn_bench.cli import main; main(['ls', 'systems']); "
            "main(['ls', 'metrics']); main(['ls', 'datasets']); "
            "heavy = [m for m in ('torch', 'pyworld', 'amfm_decompy', 'soxr') if m in sys.modules]; "
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout


def test_metric_options_are_checked():
    with pytest.raises(registry.RegistryError) as err:
        registry.make_metric("f0", presett="dio")
    assert "its options are: preset" in str(err.value)
    assert str(err.value).count("metric group") == 1
    with pytest.raises(registry.RegistryError, match="did you mean 'yaapt'"):
        registry.make_metric("f0", preset="yapt")
