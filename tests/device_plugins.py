"""Test-only plugins that report the device they were built with (tests/core/test_device_option.py
registers them by "module:attr" name, so worker processes can rebuild them)."""
from __future__ import annotations

import numpy as np

from resyn_bench.metrics.base import MetricGroup, MetricSpec, Score
from resyn_bench.systems.baselines import CopySystem


class DeviceGroup(MetricGroup):
    """Scores the output's peak; its extra carries the device it was given."""

    name = "devicegroup"
    sample_rate = 16000
    specs = (MetricSpec("devicegroup.peak", "peak", True),)

    def __init__(self, device: str | None = None, gain: float = 1.0):
        self.device = device
        self.gain = gain

    def settings(self):
        return {"gain": self.gain}

    def analyse_reference(self, audio):
        return {}

    def score(self, reference, output, utterance):
        peak = float(np.max(np.abs(output.samples))) * self.gain
        return Score({"devicegroup.peak": peak}, {}, {"device": self.device})


class NoDeviceGroup(DeviceGroup):
    name = "nodevice"
    specs = (MetricSpec("nodevice.peak", "peak", True),)

    def __init__(self, gain: float = 1.0):
        super().__init__(None, gain)

    def score(self, reference, output, utterance):
        s = super().score(reference, output, utterance)
        return Score({"nodevice.peak": s.values["devicegroup.peak"]}, {}, {"device": "none given"})


class DeviceSystem(CopySystem):
    """The copy system, remembering its device in describe()."""

    def __init__(self, device: str = "cpu"):
        super().__init__()
        self.device = device

    def describe(self):
        return {**super().describe(), "device": self.device}
