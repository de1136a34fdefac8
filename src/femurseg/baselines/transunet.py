"""TransUNet baseline: a 2D hybrid CNN-Transformer over axial slices (Chen et al., 2021).

Chen J. et al., "TransUNet: Transformers Make Strong Encoders for Medical Image Segmentation",
arXiv:2102.04306 (2021). Written here from the paper's description; no code or weights taken
from elsewhere. The architecture, as in the paper's R50-ViT hybrid:

* **CNN stem** (:class:`CNNStem`): a root convolution (7x7, stride 2) and three residual stages
  of stride 2, giving feature maps at 1/2, 1/4, 1/8 and 1/16 of the slice size. The first three
  are the decoder's skip connections.
* **ViT encoder** (:class:`ViTEncoder`): 1x1 patches of the 1/16 map are embedded linearly
  (a 1x1 convolution), a learned position embedding is added, and ``num_layers`` pre-norm
  transformer layers (multi-head self-attention and an MLP, each with a residual connection)
  follow, with a final LayerNorm. The token sequence is reshaped back to a 1/16 feature map.
* **Cascaded upsampler, CUP** (:class:`TransUNet`): a 3x3 convolution, then four blocks of
  (2x bilinear upsampling, concatenation with the CNN skip at that scale, two 3x3 conv-norm-ReLU);
  the last block, at full size, has no skip.
* **Segmentation head**: a 3x3 convolution to three classes, the label values
  (0 background, 1 femur_left, 2 femur_right).

Deviations from the paper, on purpose:

* The paper's encoder is R50-ViT-B/16 pre-trained on ImageNet-21k (ResNet-50 stem; ViT-Base:
  hidden 768, 12 layers, 12 heads, MLP 3072; about 105 M parameters) at 224x224. No pretrained
  weights may be downloaded here and training must be possible on a CPU, so the stem is a small
  residual CNN trained from scratch (basic blocks, widths 16-32-64-128) and the default
  transformer is hidden 192, 4 layers, 6 heads, MLP 768; the CUP is narrower too (128 then
  64-32-16-16 channels against the paper's 512 then 256-128-64-16). That is about 3.0 M
  parameters in total (1.8 M in the transformer), and a training step of 4 slices of 224 x 224
  takes a few seconds on two CPU cores. All of these are config values;
  ``TransUNetConfig(hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072, ...)`` gives
  the paper's ViT-B transformer. The default slice is 224 x 224 pixels (the paper's size) at
  2.0 mm, a 448 mm field of view that holds both thighs of an adult.
* GroupNorm instead of BatchNorm throughout (the paper's R50 uses GroupNorm with weight
  standardisation, its decoder BatchNorm): small CPU batches make batch statistics noisy.
* Slices of any size are accepted: the input is padded at its ends to a multiple of 16 and the
  output cropped back; the position embedding, learned for ``image_size / 16`` squared tokens,
  is bilinearly interpolated when the token grid differs (as ViT does for other resolutions).
  Volume inference always feeds ``image_size`` squared slices, as in training.
* Optimiser: AdamW with warm-up and cosine decay and a Dice + cross-entropy loss (the paper:
  SGD, momentum 0.9, lr 0.01, weight decay 1e-4; Dice + CE) - see
  :mod:`femurseg.baselines.transunet_train`.

Left and right are classes of a 2D network, so it must tell the sides apart from one axial
slice. That is well-posed because every volume is canonical RAS+ before slicing (the slice's
first axis always runs from patient left to patient right) and the slice covers the whole
cross-section (a fixed field of view of ``image_size * spacing_mm`` centred on the scan), so
both legs, the body outline and the femur's position in it are visible.

Slice-wise volume inference and the slice geometry live in
:mod:`femurseg.baselines.transunet_infer`; training in :mod:`femurseg.baselines.transunet_train`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from femurseg.config import check_range
from femurseg.errors import ConfigError
from femurseg.types import Label

#: checkpoint ``stage`` tag of TransUNet runs.
STAGE = "transunet"
#: output channels: background, femur_left, femur_right (the label values).
NUM_CLASSES = len(Label)
#: the 1/16 feature map: four halvings (root conv and three residual stages).
DIVISOR = 16


@dataclass(frozen=True)
class TransUNetConfig:
    """TransUNet network and its preprocessing; saved in every TransUNet checkpoint.

    Attributes:
        image_size: slice size S in pixels (S x S), a multiple of 16; the slice covers
            ``image_size * spacing_mm`` mm in each in-plane direction.
        spacing_mm: in-plane pixel size of the slices the network sees (slice positions along
            the scan's axial axis are kept at inference).
        hu_min: HU mapped to 0.
        hu_max: HU mapped to 1.
        cnn_widths: channels of the root conv (1/2) and the three residual stages
            (1/4, 1/8, 1/16).
        cnn_blocks: residual basic blocks in each of the three stages.
        hidden_size: transformer width D (token embedding size).
        num_layers: transformer layers.
        num_heads: attention heads (``hidden_size`` must be divisible by it).
        mlp_dim: hidden width of each transformer MLP.
        dropout: dropout after the position embedding, in the MLPs and after attention.
        attention_dropout: dropout on the attention weights.
        decoder_head: channels of the 3x3 convolution on the reshaped transformer output.
        decoder_channels: output channels of the four CUP blocks (1/8, 1/4, 1/2, 1/1).
    """

    image_size: int = 224
    spacing_mm: float = 2.0
    hu_min: float = -200.0
    hu_max: float = 1600.0
    cnn_widths: tuple[int, int, int, int] = (16, 32, 64, 128)
    cnn_blocks: tuple[int, int, int] = (2, 2, 2)
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 6
    mlp_dim: int = 768
    dropout: float = 0.1
    attention_dropout: float = 0.0
    decoder_head: int = 128
    decoder_channels: tuple[int, int, int, int] = (64, 32, 16, 16)

    def __post_init__(self) -> None:
        if self.image_size < DIVISOR or self.image_size % DIVISOR or self.image_size > 2048:
            raise ConfigError(
                f"transunet.image_size={self.image_size}; expected a multiple of {DIVISOR} "
                "from 16 to 2048"
            )
        check_range("transunet.spacing_mm", self.spacing_mm, 0.2, 10.0)
        check_range("transunet.hu_min", self.hu_min, -2000.0, 3000.0)
        check_range("transunet.hu_max", self.hu_max, -2000.0, 4000.0)
        if self.hu_max <= self.hu_min:
            raise ConfigError(
                f"transunet.hu_max={self.hu_max} must exceed hu_min={self.hu_min}; widen the window"
            )
        for name, values, n in (
            ("cnn_widths", self.cnn_widths, 4),
            ("cnn_blocks", self.cnn_blocks, 3),
            ("decoder_channels", self.decoder_channels, 4),
        ):
            if len(values) != n or any(int(v) < 1 for v in values):
                raise ConfigError(f"transunet.{name}={values}; expected {n} positive integers")
        for name, value in (
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("mlp_dim", self.mlp_dim),
            ("decoder_head", self.decoder_head),
        ):
            check_range(f"transunet.{name}", value, 1, 16384)
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"transunet.hidden_size={self.hidden_size} is not divisible by "
                f"num_heads={self.num_heads}; choose a head count that divides it"
            )
        check_range("transunet.dropout", self.dropout, 0.0, 0.9)
        check_range("transunet.attention_dropout", self.attention_dropout, 0.0, 0.9)

    @property
    def grid_size(self) -> int:
        """Tokens along each side of the 1/16 feature map for an ``image_size`` slice."""
        return self.image_size // DIVISOR


def _norm(channels: int) -> nn.GroupNorm:
    # at most 8 groups, and always a divisor of the channel count
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> GroupNorm -> ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            _norm(c_out),
            nn.ReLU(inplace=True),
        )


class ResidualBlock(nn.Module):
    """A ResNet basic block: two 3x3 convolutions and a (projected when needed) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(c_in, c_out, 3, stride)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _norm(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _norm(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c_in, H, W) -> (B, c_out, H / stride, W / stride)."""
        return F.relu(self.norm2(self.conv2(self.conv1(x))) + self.shortcut(x))


class CNNStem(nn.Module):
    """The hybrid encoder's CNN: feature maps at 1/2, 1/4, 1/8 (skips) and 1/16 (to the ViT)."""

    def __init__(self, widths: tuple[int, ...], blocks: tuple[int, ...], in_channels: int = 1):
        super().__init__()
        self.root = ConvNormAct(in_channels, widths[0], kernel=7, stride=2)
        stages = []
        for c_in, c_out, n in zip(widths[:-1], widths[1:], blocks, strict=True):
            layers = [ResidualBlock(c_in, c_out, stride=2)]
            layers += [ResidualBlock(c_out, c_out) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, C, H, W), H and W multiples of 16 -> (1/16 map, [1/2, 1/4, 1/8 maps])."""
        skips = [self.root(x)]
        for stage in self.stages:
            skips.append(stage(skips[-1]))
        return skips[-1], skips[:-1]


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over a token sequence."""

    def __init__(self, dim: int, heads: int, attn_dropout: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], dropout_p=self.attn_dropout if self.training else 0.0
        )
        return self.drop(self.proj(out.transpose(1, 2).reshape(b, n, d)))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: ``x + MSA(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, cfg: TransUNetConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = SelfAttention(d, cfg.num_heads, cfg.attention_dropout, cfg.dropout)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_dim),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.mlp_dim, d),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """Transformer over 1x1 patches of the CNN's 1/16 feature map."""

    def __init__(self, cfg: TransUNetConfig, in_channels: int) -> None:
        super().__init__()
        self.grid = cfg.grid_size
        self.patch_embed = nn.Conv2d(in_channels, cfg.hidden_size, kernel_size=1)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, cfg.hidden_size))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=1e-6)

    def position(self, h: int, w: int) -> torch.Tensor:
        """Position embedding (1, h * w, D), bilinearly resized from the trained grid."""
        if (h, w) == (self.grid, self.grid):
            return self.pos_embed
        d = self.pos_embed.shape[-1]
        grid = self.pos_embed.transpose(1, 2).reshape(1, d, self.grid, self.grid)
        grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        return grid.flatten(2).transpose(1, 2)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) 1/16 features -> (B, D, h, w) encoded tokens, reshaped back."""
        x = self.patch_embed(feat)
        b, d, h, w = x.shape
        x = self.drop(x.flatten(2).transpose(1, 2) + self.position(h, w))
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).transpose(1, 2).reshape(b, d, h, w)


class DecoderBlock(nn.Module):
    """CUP block: 2x bilinear upsampling, concatenation with a skip, two conv-norm-ReLU."""

    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(c_in + c_skip, c_out)
        self.conv2 = ConvNormAct(c_out, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        """(B, c_in, h, w) [+ skip (B, c_skip, 2h, 2w)] -> (B, c_out, 2h, 2w)."""
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class TransUNet(nn.Module):
    """TransUNet for 2D slices: (B, 1, H, W) normalised CT -> (B, 3, H, W) class logits.

    Axis order of a slice is (i, j) of the canonical volume: H runs from patient left to right
    (i), W from posterior to anterior (j). Any H and W are accepted (see the module docstring).

    Args:
        cfg: the network config.
        in_channels: input channels (1: windowed CT).
    """

    def __init__(self, cfg: TransUNetConfig, in_channels: int = 1) -> None:
        super().__init__()
        self.config = cfg
        w = cfg.cnn_widths
        dec = cfg.decoder_channels
        self.stem = CNNStem(w, cfg.cnn_blocks, in_channels)
        self.encoder = ViTEncoder(cfg, w[3])
        self.conv_more = ConvNormAct(cfg.hidden_size, cfg.decoder_head)
        skips = (w[2], w[1], w[0], 0)  # 1/8, 1/4, 1/2, none at full size
        ins = (cfg.decoder_head, *dec[:-1])
        self.decoder = nn.ModuleList(
            DecoderBlock(c_in, c_skip, c_out)
            for c_in, c_skip, c_out in zip(ins, skips, dec, strict=True)
        )
        self.head = nn.Conv2d(dec[-1], NUM_CLASSES, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, 3, H, W) of a batch of slices (B, 1, H, W)."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % DIVISOR, (-w) % DIVISOR
        if ph or pw:
            # 0 is the bottom of the HU window (air), the same as outside the scan
            x = F.pad(x, (0, pw, 0, ph), value=0.0)
        deep, skips = self.stem(x)
        y = self.conv_more(self.encoder(deep))
        for block, skip in zip(self.decoder, [*reversed(skips), None], strict=True):
            y = block(y, skip)
        return self.head(y)[..., :h, :w]


def build_transunet(cfg: TransUNetConfig) -> TransUNet:
    """A freshly initialised TransUNet for ``cfg``."""
    return TransUNet(cfg)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def transformer_layer_parameters(hidden: int, mlp_dim: int) -> int:
    """Parameters of one transformer layer (QKV + projection, MLP, two LayerNorms), analytic."""
    attention = 3 * hidden * hidden + 3 * hidden + hidden * hidden + hidden
    mlp = hidden * mlp_dim + mlp_dim + mlp_dim * hidden + hidden
    return attention + mlp + 4 * hidden
