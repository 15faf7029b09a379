"""--device reaches every model-backed metric group and system that takes one (in worker
processes too), and is not part of a record's key."""
from __future__ import annotations

import pytest

from resyn_bench import registry
from resyn_bench.cli import build_parser
from resyn_bench.runner import RunConfig, group_options, metric_entry, run, system_options
from resyn_bench.store import RecordStore, metric_key, read_manifest


@pytest.fixture
def plugins(monkeypatch):
    monkeypatch.setitem(registry.METRIC_GROUPS, "devicegroup",
                        registry.Entry("devicegroup", "device_plugins:DeviceGroup", "test"))
    monkeypatch.setitem(registry.METRIC_GROUPS, "nodevice",
                        registry.Entry("nodevice", "device_plugins:NoDeviceGroup", "test"))
    monkeypatch.setitem(registry.SYSTEMS, "devsys",
                        registry.Entry("devsys", "device_plugins:DeviceSystem", "test"))


def _config(corpus, out, **kw):
    return RunConfig(system=kw.pop("system", "devsys"), dataset="manifest", data_root=str(corpus),
                     out=str(out), **kw)


def test_takes_option_reads_signatures_and_backend_option_lists():
    from resyn_bench.metrics.intelligibility import IntelligibilityMetrics
    from resyn_bench.metrics.quality import DNSMOSMetrics
    from resyn_bench.metrics.speaker import SpeakerMetrics

    assert registry.takes_option(IntelligibilityMetrics, "device", {})          # whisper backend
    assert not registry.takes_option(IntelligibilityMetrics, "device", {"backend": "pocketsphinx"})
    assert registry.takes_option(SpeakerMetrics, "device", {})                  # resemblyzer
    assert not registry.takes_option(DNSMOSMetrics, "device", {})
    assert not registry.takes_option(len, "device", {})


def test_group_and_system_options(plugins, tmp_path):
    cfg = _config(tmp_path, tmp_path / "out", device="cuda:3", metric_options={"nodevice": {"gain": 2.0}})
    assert group_options(cfg, "devicegroup") == {"device": "cuda:3"}
    assert group_options(cfg, "nodevice") == {"gain": 2.0}
    assert "device" not in group_options(cfg, "f0")
    assert group_options(cfg, "asr")["device"] == "cuda:3"
    assert group_options(cfg, "spk")["device"] == "cuda:3"
    # an explicit -m GROUP.device= wins
    own = _config(tmp_path, tmp_path / "o", device="cuda:3",
                  metric_options={"devicegroup": {"device": "cpu"}})
    assert group_options(own, "devicegroup") == {"device": "cpu"}
    assert system_options(cfg) == {"device": "cuda:3"}
    assert system_options(_config(tmp_path, tmp_path / "c", system="copy", device="cuda:3")) == {}
    # default: resolve_device (cpu without a GPU)
    from resyn_bench.distributed import resolve_device

    assert system_options(_config(tmp_path, tmp_path / "d")) == {"device": resolve_device(None)}


def test_device_is_not_part_of_the_record_key(plugins, tmp_path):
    group = registry.make_metric("devicegroup")
    a = metric_entry(_config(tmp_path, tmp_path / "a", device="cpu"), group)
    b = metric_entry(_config(tmp_path, tmp_path / "b", device="cuda"), group)
    assert metric_key("devicegroup", a) == metric_key("devicegroup", b)


@pytest.mark.parametrize("isolate", [True, False])
def test_device_reaches_workers(plugins, tiny_corpus, tmp_path, home, isolate):
    out = tmp_path / f"run{isolate}"
    run(_config(tiny_corpus, out, metrics="devicegroup,nodevice", device="cuda:7",
                isolate=isolate, jobs=2), progress=False)
    parts = [e for e in RecordStore(out).events() if e.get("part") == "metric"]
    assert len(parts) == 12 and all(e["status"] == "ok" for e in parts)
    assert {e["extra"]["device"] for e in parts if e["group"] == "devicegroup"} == {"cuda:7"}
    assert {e["extra"]["device"] for e in parts if e["group"] == "nodevice"} == {"none given"}
    manifest = read_manifest(out)
    assert manifest["system"]["device"] == "cuda:7"
    assert manifest["config"]["device"] == "cuda:7"
    assert "device" not in manifest["config"]["identity"]


def test_cli_device_flag():
    args = build_parser().parse_args(["run", "--system", "copy", "--dataset", "demo", "--device", "cpu"])
    assert args.device == "cpu"
    assert build_parser().parse_args(["run", "--system", "copy", "--dataset", "demo"]).device is None
    assert build_parser().parse_args(["score", "x", "--metrics", "f0", "--device", "cuda"]).device == "cuda"


@pytest.mark.gpu
def test_models_on_cuda_agree_with_cpu():
    """On a GPU machine (not run without one): resemblyzer embeddings on cuda equal the CPU ones,
    and the bf16 vocoder body on cuda stays within 30 dB SNR of fp32."""
    import copy

    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import numpy as np

    from resyn_bench.metrics.speaker import ResemblyzerEncoder
    from resyn_bench.systems.vocoder.generator import CodeGenerator, prepare_for_inference

    t = np.arange(3 * 16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * (140 + 20 * np.sin(3 * t)) * t)).astype(np.float32)
    embs = []
    for device in ("cpu", "cuda"):
        enc = ResemblyzerEncoder(device=device)
        enc.load()
        embs.append(enc.embed(x))
    assert float(np.dot(embs[0], embs[1])) > 0.999
    cfg = dict(num_embeddings=12, embedding_dim=8, model_in_dim=8, upsample_rates=[5, 2, 2],
               upsample_kernel_sizes=[11, 4, 4], upsample_initial_channel=32, resblock="1",
               resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
               code_hop_size=20)
    torch.manual_seed(0)
    model = CodeGenerator(cfg).cuda()
    code = torch.randint(0, 12, (1, 64), device="cuda")
    y32 = prepare_for_inference(copy.deepcopy(model))(code).double()
    y16 = prepare_for_inference(copy.deepcopy(model), precision="bf16")(code).double()
    snr = 10 * torch.log10((y32 ** 2).sum() / ((y32 - y16) ** 2).sum())
    assert float(snr) >= 30.0


def test_default_device_without_gpu_nodes_is_cpu_and_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys\n"
            "from resyn_bench import distributed as d\n"
            "d._gpu_driver_present = lambda: False\n"
            "print(d.resolve_device(None), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["cpu", "False"]


def test_default_device_with_gpu_nodes_asks_torch(monkeypatch):
    torch = pytest.importorskip("torch")
    from resyn_bench import distributed

    monkeypatch.setattr(distributed, "_gpu_driver_present", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert distributed.resolve_device(None) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.resolve_device(None) == "cpu"
    assert distributed.resolve_device("cuda:1") == "cuda:1"
