"""DNSMOS P.835 with the overlap of its windows computed once (same numbers, ~3x less work).

speechmos scores a clip with 9.01 s windows every second, so consecutive windows share 8 s of
audio, and the P.835 model (``sig_bak_ovr.onnx``) spends about 99 % of its time in the first
four 3x3 convolutions over the full-resolution log-power spectrogram (900 frames x 161 bins,
128 and 64 channels). Those layers are local in time: a frame's output depends on its own
spectrogram frame and the 4 on either side (one per layer), and the spectrogram frames are
160 samples apart, so window k's frames are frames ``100 k ...`` of the whole clip's.

So the model is cut in three parts (its own nodes and weights, nothing re-implemented):

* ``front``: waveform window -> log-power spectrogram (cheap; run per window);
* ``trunk``: spectrogram -> output of the last full-resolution convolution + ReLU;
* ``head``: pooling, the smaller convolutions and the dense layers (run per window).

The trunk runs once over the spectrogram of the whole span the windows cover (in chunks with
a 4-frame halo, so memory stays bounded on long clips). A window then takes its slice of that;
only its first and last 4 frames differ from the model's own computation (the model sees zero
padding there, not the neighbouring audio), and those are recomputed from the window's own
spectrogram edges. The result equals the per-window model: the tests compare them bit for bit
(``onnxruntime`` computes each output element the same way whatever the length of the input),
and :class:`DNSMOSMetrics` documents the tolerance it guarantees.

The cut needs the ``onnx`` package to read the graph. :func:`split_p835` checks the structure
it relies on (the convolutions between spectrogram and first pooling are 3x3, stride 1, padding
1, each followed by a ReLU; the spectrogram hop divides the window hop) and raises
:class:`TrunkSplitError` otherwise; the caller then runs the whole model per window.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: frames of trunk input per trunk call on long clips (bounds the 128-channel activations to
#: about 128 x 2048 x 161 x 4 bytes = 170 MB)
CHUNK_FRAMES = 2048


class TrunkSplitError(RuntimeError):
    """The model's graph is not the shape the shared-trunk computation relies on."""


@dataclass
class _Parts:
    front: bytes
    trunk: bytes
    head: bytes
    spec_name: str       # trunk input: (N, 1, frames, bins)
    trunk_name: str      # trunk output / head input: (N, C, frames, bins)
    halo: int            # frames of context each side that reach a trunk output frame
    window: int          # samples per window (the model's fixed input length)


def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _subgraph(model, inputs: dict[str, list], output: str) -> bytes:
    """The nodes of ``model`` that compute ``output`` from ``inputs`` (plus weights), as a
    serialised model whose inputs have the given (possibly symbolic) shapes."""
    from onnx import TensorProto, helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    weights = {init.name for init in graph.initializer}
    needed: set[int] = set()
    stack = [output]
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in inputs or name in weights or name in seen or name == "":
            continue
        seen.add(name)
        node = producer.get(name)
        if node is None:
            raise TrunkSplitError(f"tensor {name!r} has no producer below the cut")
        needed.add(id(node))
        stack.extend(node.input)
    nodes = [n for n in graph.node if id(n) in needed]
    used = {i for n in nodes for i in n.input}
    part = helper.make_graph(
        nodes, "dnsmos_part",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
         for name, shape in inputs.items()],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [init for init in graph.initializer if init.name in used])
    return helper.make_model(part, opset_imports=model.opset_import,
                             ir_version=model.ir_version).SerializeToString()


def split_p835(model_path: str) -> _Parts:
    """Cut the P.835 model into front, trunk and head (see the module docstring)."""
    try:
        import onnx
    except ImportError as exc:
        raise TrunkSplitError(f"the onnx package is needed to split the model ({exc})") from None
    model = onnx.load(model_path)
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise TrunkSplitError("expected one input and one output")
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    convs_2d = [n for n in graph.node if n.op_type == "Conv" and len(_attr(n, "kernel_shape", [])) == 2]
    if not convs_2d:
        raise TrunkSplitError("no 2-D convolution")
    spec_name = convs_2d[0].input[0]
    # walk Conv -> Relu pairs from the spectrogram up to the first pooling
    tensor, layers = spec_name, 0
    while True:
        users = consumers.get(tensor, [])
        if len(users) != 1:
            raise TrunkSplitError(f"tensor {tensor!r} feeds {len(users)} nodes")
        node = users[0]
        if node.op_type == "MaxPool" and layers:
            break
        if node.op_type != "Conv" or node.input[0] != tensor:
            raise TrunkSplitError(f"unexpected {node.op_type} in the full-resolution trunk")
        if (list(_attr(node, "kernel_shape", [])) != [3, 3]
                or list(_attr(node, "strides", [1, 1])) != [1, 1]
                or list(_attr(node, "dilations", [1, 1])) != [1, 1]
                or list(_attr(node, "pads", [0, 0, 0, 0])) != [1, 1, 1, 1]
                or _attr(node, "group", 1) != 1):
            raise TrunkSplitError(f"convolution {node.name!r} is not 3x3/stride 1/pad 1")
        relu = consumers.get(node.output[0], [])
        if len(relu) != 1 or relu[0].op_type != "Relu":
            raise TrunkSplitError(f"convolution {node.name!r} is not followed by one ReLU")
        tensor, layers = relu[0].output[0], layers + 1
    trunk_name = tensor
    input_name = graph.input[0].name
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param
            for d in graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 2 or not isinstance(dims[1], int) or dims[1] <= 0:
        raise TrunkSplitError(f"the model's input is not (batch, fixed samples): {dims}")
    return _Parts(
        front=_subgraph(model, {input_name: dims}, spec_name),
        trunk=_subgraph(model, {spec_name: ["N", 1, "frames", "bins"]}, trunk_name),
        head=_subgraph(model, {trunk_name: ["N", "channels", "frames", "bins"]},
                       graph.output[0].name),
        spec_name=spec_name, trunk_name=trunk_name, halo=layers, window=dims[1])


class SharedTrunkP835:
    """The P.835 model over consecutive windows, computing their common frames once.

    ``run(windows)`` returns what ``session.run(None, {input: windows})[0]`` returns for
    the whole model, for windows that start ``hop`` samples apart (speechmos: one second)."""

    def __init__(self, model_path: str, options: Any, providers: list[str], hop: int = 16000):
        import onnxruntime as ort

        parts = split_p835(model_path)
        self.parts = parts
        self.front = ort.InferenceSession(parts.front, options, providers=providers)
        self.trunk = ort.InferenceSession(parts.trunk, options, providers=providers)
        self.head = ort.InferenceSession(parts.head, options, providers=providers)
        self.input_name = self.front.get_inputs()[0].name
        self.hop = int(hop)
        self.shift = self._measure_shift()

    def _measure_shift(self) -> int:
        """Spectrogram frames between two windows ``hop`` samples apart, found on a test signal
        (the frames of the later window must be the earlier one's, moved, exactly)."""
        window = self.parts.window
        x = np.random.default_rng(0).standard_normal(window + self.hop).astype(np.float32) * 0.1
        spec = self.front.run(None, {self.input_name: np.stack([x[:window], x[self.hop:]])})[0][:, 0]
        frames = spec.shape[1]
        for shift in range(1, frames):
            if np.array_equal(spec[0, shift:], spec[1, :frames - shift]):
                return shift
            if shift >= frames // 2:
                break
        raise TrunkSplitError(f"windows {self.hop} samples apart share no spectrogram frames")

    def _trunk(self, spec: np.ndarray) -> np.ndarray:
        """Trunk output (C, frames, bins) of a (frames, bins) spectrogram, as the model would
        compute it on exactly this spectrogram (zero padding at both ends)."""
        return self.trunk.run(None, {self.parts.spec_name: spec[None, None]})[0][0]

    def _trunk_long(self, spec: np.ndarray, chunk: int) -> np.ndarray:
        """Trunk output of a long spectrogram, in chunks whose inner frames see their real
        neighbours (a ``halo`` of frames each side), so each equals the one-call result."""
        n, halo = spec.shape[0], self.parts.halo
        if n <= chunk:
            return self._trunk(spec)
        pieces = []
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            lo, hi = max(start - halo, 0), min(stop + halo, n)
            pieces.append(self._trunk(spec[lo:hi])[:, start - lo: start - lo + stop - start])
        return np.concatenate(pieces, axis=1)

    def run(self, windows: np.ndarray, chunk: int = CHUNK_FRAMES) -> np.ndarray:
        """The model's output for ``windows`` (K, samples) that start ``hop`` samples apart."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        k = len(windows)
        spec = self.front.run(None, {self.input_name: windows})[0][:, 0]      # (K, T, bins)
        frames, shift, halo = spec.shape[1], self.shift, self.parts.halo
        whole = np.concatenate([spec[0]] + [spec[i, frames - shift:] for i in range(1, k)])
        trunk = self._trunk_long(whole, chunk)
        edge = 2 * halo   # an edge's `halo` frames see 2 x halo frames, the far padding none
        out = np.empty((k, trunk.shape[0], frames, trunk.shape[2]), np.float32)
        for i in range(k):
            out[i] = trunk[:, i * shift: i * shift + frames]
            if i > 0:      # the model sees zero padding before this window, not the audio
                out[i, :, :halo] = self._trunk(spec[i, :edge])[:, :halo]
            if i < k - 1:  # ... and after it
                out[i, :, frames - halo:] = self._trunk(spec[i, frames - edge:])[:, edge - halo:]
        return self.head.run(None, {self.parts.trunk_name: out})[0]
