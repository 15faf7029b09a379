"""The missing-vocoder message of a named system asks only for the parts not yet on disk."""
from __future__ import annotations

import pytest

from resyn_bench.named_systems import get_named_system


def _touch_checkpoint(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "g_00000001").write_bytes(b"x")


def test_hint_lists_every_step_when_nothing_exists(home):
    hint = get_named_system("logmel100").train_hint()
    assert "train kmeans" in hint and "train f0-quantizer" in hint and "train vocoder" in hint
    assert "already there" not in hint


def test_hint_skips_the_parts_already_trained(home):
    ns = get_named_system("logmel100")
    km = ns.unit_spec()
    from pathlib import Path

    Path(km).parent.mkdir(parents=True, exist_ok=True)
    Path(km).write_bytes(b"npz")
    hint = ns.train_hint()
    assert "train kmeans" not in hint and f"already there: k-means {km}" in hint
    assert "train f0-quantizer" in hint and f"--units {km}" in hint
    f0_dir = ns.checkpoint_dir().parent / f"{ns.name}-f0"
    _touch_checkpoint(f0_dir)
    hint = ns.train_hint()
    assert hint.startswith("resyn-bench train vocoder --config tiny ")
    assert "train f0-quantizer" not in hint and f"--f0-quantizer {f0_dir}" in hint
    assert f"already there: k-means {km}, F0 quantizer {f0_dir}" in hint
    assert ns.status() == "needs: train vocoder --config tiny"


def test_missing_vocoder_error_reflects_what_exists(home):
    pytest.importorskip("torch")
    from resyn_bench.registry import make_system
    from resyn_bench.systems.named import NamedSystemError

    ns = get_named_system("logmel100")
    from pathlib import Path

    Path(ns.unit_spec()).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.unit_spec()).write_bytes(b"npz")
    with pytest.raises(NamedSystemError) as exc:
        make_system("logmel100")
    message = str(exc.value)
    assert "needs a trained vocoder" in message and "train kmeans" not in message
    assert f"already there: k-means {ns.unit_spec()}" in message
