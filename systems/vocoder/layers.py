"""Weight-normalised convolutions whose parameters carry the reference checkpoints' key names.

The reference models use the legacy ``torch.nn.utils.weight_norm``, so their state dicts hold
``<name>.weight_g`` (magnitude, one per output channel; per *input* channel for transposed
convolutions, i.e. along dim 0 of the weight) and ``<name>.weight_v`` (direction). That function
is deprecated in recent torch, so these layers implement the same reparametrisation themselves:
checkpoints load and save with identical keys, and :meth:`remove_weight_norm` folds ``g`` and
``v`` into a plain ``weight`` for inference.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _norm_except_dim0(v: torch.Tensor) -> torch.Tensor:
    # L2 norm over every dim but 0, kept broadcastable: [out, 1, 1(, 1)]
    return v.pow(2).sum(dim=tuple(range(1, v.dim())), keepdim=True).sqrt()


class _WeightNormMixin:
    """Shared reparametrisation: weight = g * v / ||v|| (norm over all dims but 0)."""

    def _init_weight_norm(self) -> None:
        weight = self.weight.detach()
        del self.weight  # replaced by the property below until folded again
        self.weight_g = nn.Parameter(_norm_except_dim0(weight).clone())
        self.weight_v = nn.Parameter(weight.clone())
        self._folded = False

    @property
    def weight_normed(self) -> bool:
        return not self._folded

    def _current_weight(self) -> torch.Tensor:
        if self._folded:
            return self.weight
        return self.weight_v * (self.weight_g / _norm_except_dim0(self.weight_v))

    def remove_weight_norm(self) -> None:
        """Fold g and v into a plain ``weight`` parameter (inference; keys become ``weight``)."""
        if self._folded:
            return
        with torch.no_grad():
            weight = self._current_weight().detach().clone()
        del self.weight_g
        del self.weight_v
        self.weight = nn.Parameter(weight)
        self._folded = True


class WNConv1d(_WeightNormMixin, nn.Conv1d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_weight_norm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self._current_weight(), self.bias)


class WNConvTranspose1d(_WeightNormMixin, nn.ConvTranspose1d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_weight_norm()

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        return F.conv_transpose1d(x, self._current_weight(), self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


class WNConv2d(_WeightNormMixin, nn.Conv2d):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_weight_norm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self._current_weight(), self.bias)
