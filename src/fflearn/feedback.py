"""Random feedback (feedback alignment, Lillicrap et al. 2016) for DF-R.

In DF-O, the loss of layer i+1 reaches layer i through the transpose of layer i+1's forward
weights. DF-R sends that signal through a fixed random matrix B of the same shape instead, so a
layer never needs another layer's weights to learn. These autograd functions compute the usual
forward pass; in the backward pass the weight gradient is exact and the input gradient uses B.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.grad import conv2d_input, conv2d_weight


class _FALinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, fb: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, fb)
        ctx.has_bias = b is not None
        return F.linear(x, w, b)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        x, fb = ctx.saved_tensors
        grad_x = grad @ fb.to(grad.dtype)  # fb, not w: the forward weights are never read here
        grad_w = grad.flatten(0, -2).t() @ x.flatten(0, -2).to(grad.dtype)
        grad_b = grad.flatten(0, -2).sum(0) if ctx.has_bias else None
        return grad_x, grad_w, grad_b, None


class _FAConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, fb: torch.Tensor, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, fb)
        ctx.w_shape = w.shape
        ctx.padding = padding
        return F.conv2d(x, w, None, padding=padding)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        x, fb = ctx.saved_tensors
        grad_x = conv2d_input(x.shape, fb.to(grad.dtype), grad, padding=ctx.padding)
        grad_w = conv2d_weight(x.to(grad.dtype), ctx.w_shape, grad, padding=ctx.padding)
        return grad_x, grad_w, None, None


def fa_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, fb: torch.Tensor) -> torch.Tensor:
    """Linear layer whose input gradient goes through the fixed random matrix ``fb``."""
    return _FALinear.apply(x, w, b, fb)


def fa_conv2d(x: torch.Tensor, w: torch.Tensor, fb: torch.Tensor, padding: int) -> torch.Tensor:
    """Bias-free conv layer whose input gradient goes through the fixed random kernel ``fb``."""
    return _FAConv2d.apply(x, w, fb, padding)
