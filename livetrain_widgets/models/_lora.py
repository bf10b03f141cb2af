"""peft LoRA on any torch module, plus what a per-correction adapter needs on top of peft.

peft injects the low-rank layers (``inject_adapter_in_model`` works on plain ``nn.Module`` trees, not
only transformers models) and owns their parameter layout, so a saved adapter is a standard peft state
dict. What is ours: resetting the adapter in place when a stream ends, reading and loading its state
as plain tensors, and :func:`lora_branch`, the low-rank residual alone. A frozen layer whose input does
not change during an update (the frame's cached features) has a constant base output; computing it once
per frame and adding only the residual per epoch is what keeps a 40-epoch update well under a second on
a CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

ADAPTER = "default"


def _peft() -> Any:
    try:
        import peft
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "the correction mode trains LoRA adapters with peft: pip install 'livetrain-widgets[stream]'"
        ) from exc
    return peft


def inject_lora(module: nn.Module, targets: str | list[str], *, rank: int, alpha: float, dropout: float) -> nn.Module:
    """Freeze ``module`` and add LoRA layers (peft) to the submodules ``targets`` names (a regex or names)."""
    peft = _peft()
    for p in module.parameters():
        p.requires_grad_(False)
    cfg = peft.LoraConfig(r=int(rank), lora_alpha=float(alpha), lora_dropout=float(dropout), target_modules=targets)
    try:
        module = peft.inject_adapter_in_model(cfg, module)
    except ValueError as exc:  # peft's "Target modules ... not found"
        raise ValueError(f"no LoRA layer was added: no submodule matches {targets!r} ({exc})") from exc
    if not any(True for _ in lora_layers(module)):
        raise ValueError(f"no LoRA layer was added: no submodule matches {targets!r}")
    if dropout > 0:
        for layer in lora_layers(module):
            if isinstance(layer.base_layer, nn.Conv2d):
                # channel dropout on feature maps: the same regularisation, but one random draw per
                # channel instead of per pixel (per-pixel masks were a third of an update's time)
                layer.lora_dropout[ADAPTER] = nn.Dropout2d(float(dropout))
    return module


def lora_layers(module: nn.Module) -> Iterator[nn.Module]:
    from peft.tuners.lora import LoraLayer

    return (m for m in module.modules() if isinstance(m, LoraLayer))


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in module.named_parameters() if "lora_" in n]


def reset_lora(module: nn.Module) -> None:
    """Back to the identity adapter (B = 0, A re-drawn), as peft initialises it."""
    for layer in lora_layers(module):
        layer.reset_lora_parameters(ADAPTER, init_lora_weights=True)


def lora_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors only (peft's key layout), detached on the CPU."""
    return {n: p.detach().cpu().clone() for n, p in module.named_parameters() if "lora_" in n}


def load_lora_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load :func:`lora_state` output; refuses a state for another layout rather than half-loading it."""
    params = dict((n, p) for n, p in module.named_parameters() if "lora_" in n)
    if set(state) != set(params):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ValueError(f"adapter does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for n, p in params.items():
            if state[n].shape != p.shape:
                raise ValueError(f"adapter tensor {n} has shape {tuple(state[n].shape)}, expected {tuple(p.shape)}")
            p.copy_(state[n].to(p.device, p.dtype))


def lora_branch(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The low-rank residual ``scaling * B(A(dropout(x)))`` of a peft LoRA layer, without the base layer.

    ``layer(x) == layer.base_layer(x) + lora_branch(layer, x)`` (checked in the tests), so a caller with
    a fixed ``x`` computes the base output once.
    """
    a, b = layer.lora_A[ADAPTER], layer.lora_B[ADAPTER]
    drop, scale = layer.lora_dropout[ADAPTER], layer.scaling[ADAPTER]
    return b(a(drop(x))) * scale
