"""DICNet: spike times -> (g_s, g_u, log time scale) with standard deviations, firing-pattern logits.

Design (informed by the original DICsNet, method spec section 5, and fixing its limits):
- Tokens are ISIs, not positions: per ISI, the standardised log ISI, its differences with the previous and next ISI,
  and its deviation from the window median. No positional encoding, so any length works (the original was capped at
  1000 positions and truncated inputs to 250 spikes).
- Three residual 1-D convolutions (kernel 5) give local order (burst structure); one pre-norm transformer layer gives
  global context; masked attention pooling plus masked mean pooling summarise the window.
- Heads: means and log standard deviations of (g_s / 10, g_u / 10, log k) (Gaussian negative log-likelihood, so the
  standard deviations are calibrated, not just ranked), spiking/bursting logits, and two auxiliary regressions
  (log main frequency at k = 1 and spikes per burst).

torch is imported when this module is imported; the package imports this module lazily.
"""

from __future__ import annotations

import torch
from torch import nn

N_TOKEN_FEATURES = 4
OUTPUT_NAMES = ("g_s", "g_u", "log_time_scale")
OUTPUT_SCALE = (10.0, 10.0, 1.0)


def token_features(log_isi: torch.Tensor, mask: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(batch, T) log ISIs (ms) and validity mask -> (batch, T, 4) token features."""
    z = torch.where(mask, (log_isi - mean) / std, torch.zeros_like(log_isi))
    previous = torch.zeros_like(z)
    previous[:, 1:] = z[:, 1:] - z[:, :-1]
    following = torch.zeros_like(z)
    following[:, :-1] = z[:, 1:] - z[:, :-1]
    valid_next = torch.zeros_like(mask)
    valid_next[:, :-1] = mask[:, 1:]
    previous[:, 0] = 0.0
    following = torch.where(valid_next, following, torch.zeros_like(following))
    big = torch.where(mask, z, torch.full_like(z, float("nan")))
    median = torch.nanmedian(big, dim=1, keepdim=True).values
    deviation = torch.where(mask, z - median, torch.zeros_like(z))
    features = torch.stack([z, previous, following, deviation], dim=-1)
    return features * mask.unsqueeze(-1)


class _ConvBlock(nn.Module):
    def __init__(self, width: int, kernel: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        y = self.conv((x * mask.unsqueeze(-1)).transpose(1, 2)).transpose(1, 2)
        return self.norm(x + self.drop(nn.functional.gelu(y)))


class DICNet(nn.Module):
    def __init__(
        self,
        width: int = 48,
        n_conv: int = 3,
        n_transformer: int = 1,
        n_heads: int = 4,
        kernel: int = 5,
        dropout: float = 0.05,
        log_isi_mean: float = 3.5,
        log_isi_std: float = 1.0,
    ):
        super().__init__()
        self.config = dict(
            width=width,
            n_conv=n_conv,
            n_transformer=n_transformer,
            n_heads=n_heads,
            kernel=kernel,
            dropout=dropout,
            log_isi_mean=log_isi_mean,
            log_isi_std=log_isi_std,
        )
        self.embed = nn.Linear(N_TOKEN_FEATURES, width)
        self.convs = nn.ModuleList([_ConvBlock(width, kernel, dropout) for _ in range(n_conv)])
        layer = nn.TransformerEncoderLayer(
            width,
            n_heads,
            dim_feedforward=2 * width,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, n_transformer, enable_nested_tensor=False)
        self.query = nn.Parameter(torch.randn(width) / width**0.5)
        self.key = nn.Linear(width, width)
        self.trunk = nn.Sequential(
            nn.Linear(2 * width + 2, 2 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * width, width), nn.GELU()
        )
        self.mean_head = nn.Linear(width, 3)
        self.log_std_head = nn.Linear(width, 3)
        self.class_head = nn.Linear(width, 2)
        self.aux_head = nn.Linear(width, 2)

    def forward(self, log_isi: torch.Tensor, mask: torch.Tensor) -> dict:
        cfg = self.config
        x = self.embed(token_features(log_isi, mask, cfg["log_isi_mean"], cfg["log_isi_std"]))
        for conv in self.convs:
            x = conv(x, mask)
        # A batch without padding (the predictor batches windows sorted by length) needs no mask, and attention
        # without one runs ~2x faster on CPU (same outputs to float32 round-off).
        x = self.transformer(x, src_key_padding_mask=None if bool(mask.all()) else ~mask)
        scores = (self.key(x) @ self.query) / x.shape[-1] ** 0.5
        scores = scores.float().masked_fill(~mask, float("-inf"))
        attention = torch.softmax(scores, dim=1).unsqueeze(-1)
        pooled = (attention * x).sum(dim=1)
        count = mask.sum(dim=1, keepdim=True).clamp(min=1)
        mean_pooled = (x * mask.unsqueeze(-1)).sum(dim=1) / count
        z = torch.where(mask, (log_isi - cfg["log_isi_mean"]) / cfg["log_isi_std"], torch.zeros_like(log_isi))
        z_mean = z.sum(dim=1, keepdim=True) / count
        z_std = (((z - z_mean) ** 2) * mask).sum(dim=1, keepdim=True).div(count).sqrt()
        h = self.trunk(torch.cat([pooled, mean_pooled, z_mean, z_std], dim=-1))
        return {
            "mean": self.mean_head(h),
            "log_std": self.log_std_head(h).clamp(-6.0, 3.0),
            "logits": self.class_head(h),
            "aux": self.aux_head(h),
        }
