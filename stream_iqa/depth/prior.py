"""A weight-free relative inverse-depth *prior* from three physical image cues.

What this is
    A fast heuristic (about 2 ms for a 640×360 frame on one core of the 2-core development CPU) that orders the
    regions of an ordinary outdoor or indoor frame roughly from near to far. It is the default depth source because
    it needs no checkpoint and costs nothing next to the scorer, and because its failure modes are predictable.
    Cues, each scaled to [0, 1] with 1 = near, combined with fixed weights (``WEIGHTS``) at about 128 px on the long
    side:

    * **transmission** (weight 0.35), from the dark channel prior (He et al., CVPR 2009): in haze-free patches some
      colour channel is near zero, so the local minimum over colour and a small window, ``dc``, measures added
      airlight ``A·(1 − t)``. ``t = 1 − ω·dc/A`` is the transmission ``exp(−β·d)`` of the atmospheric scattering
      model, which falls with distance ``d`` — so ``t`` itself is an inverse-depth-like cue. It is absolute (not
      re-normalised per image): a crisp haze-free frame has ``t ≈ 1`` nearly everywhere and the cue then stays
      quiet instead of amplifying noise;
    * **vertical position** (weight 0.40): for a camera roughly level over a ground plane, image rows further down
      meet the ground closer to the camera, and sky sits at the top;
    * **texture energy** (weight 0.25): the local mean gradient magnitude, scaled as ``g / (g + mean g)``. Near
      surfaces show resolved texture and are usually the ones in focus; distant ones are attenuated by haze, by
      the lens' MTF at high spatial frequency and often by defocus.

    The blend is smoothed with a guided filter (He et al., ECCV 2010) steered by the low-resolution grey image, so
    depth edges snap to image edges instead of the blocky dark-channel windows, and returned at the low working
    resolution; ``DepthSource.__call__`` upsamples it bilinearly and min–max scales it per image.

What this is not
    Not metric depth, not a learned monocular depth estimator, and not stable for measurement: it only ranks
    regions, and only where the cues agree with typical photographic geometry. Expect it to fail on

    * night and low-light scenes: lamps and lit windows are bright in every channel, so the dark channel reads
      them as far-away airlight, and there is no haze signal otherwise;
    * top-down, tilted or ceiling shots, selfies and close-ups, where "lower is nearer" does not hold;
    * white, grey or pastel surfaces near the camera (walls, snow, clouds of steam), which look like airlight;
    * flat, textureless near surfaces and busy distant textures (foliage on a far hillside), which invert the
      texture cue; shallow depth-of-field portraits partly rescue it, macro shots do not;
    * sky or water reflecting the sky at the *bottom* of the frame (mirror views, aerial and inverted shots).

    Depth Anything (``stream_iqa.depth.depth_anything``) is the source to use when depth quality matters; the
    checkpoints record which source a model was trained with so the two are never mixed silently.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stream_iqa.depth.base import DepthSource

#: Blend weights of the three nearness cues; they sum to 1. Vertical position is the most reliable single cue on
#: ordinary footage, transmission is decisive when there is haze and silent when there is none, texture breaks ties.
WEIGHTS: dict[str, float] = {"transmission": 0.35, "vertical": 0.40, "texture": 0.25}


class PriorDepth(DepthSource):
    """Heuristic relative inverse depth (near = 1) from transmission, vertical position and texture energy.

    ``work_size`` is the long side of the internal resolution: 128 px keeps the cost tiny and is plenty for a
    smooth prior whose job is to separate foreground from background, not to trace object outlines.
    """

    name = "prior"

    def __init__(
        self,
        work_size: int = 128,
        dark_window: int = 5,
        omega: float = 0.95,
        guide_radius: int = 4,
        guide_eps: float = 1e-2,
    ) -> None:
        if work_size < 16:
            raise ValueError(f"work_size must be at least 16 px, got {work_size}")
        if dark_window < 1 or dark_window % 2 == 0:
            raise ValueError(f"dark_window must be a positive odd number of pixels, got {dark_window}")
        self.work_size = work_size
        self.dark_window = dark_window
        self.omega = omega
        self.guide_radius = guide_radius
        self.guide_eps = guide_eps

    def _estimate(self, rgb: torch.Tensor) -> torch.Tensor:
        small = self._downscale(rgb).clamp(0.0, 1.0)  # clamp after pooling: 25× fewer pixels to touch
        grey = (0.299 * small[:, 0:1] + 0.587 * small[:, 1:2] + 0.114 * small[:, 2:3]).contiguous()
        near = (
            WEIGHTS["transmission"] * self._transmission(small)
            + WEIGHTS["vertical"] * self._vertical(small)
            + WEIGHTS["texture"] * self._texture(grey)
        )
        return _guided_filter(grey, near, self.guide_radius, self.guide_eps).clamp_min(0.0)

    def _downscale(self, rgb: torch.Tensor) -> torch.Tensor:
        """Box-average down to ``work_size`` on the long side (an integer factor keeps it a cheap avg-pool)."""
        factor = max(1, max(rgb.shape[-2:]) // self.work_size)
        if factor == 1:
            return rgb
        return F.avg_pool2d(rgb, kernel_size=factor, stride=factor, ceil_mode=True, count_include_pad=False)

    def _transmission(self, rgb: torch.Tensor) -> torch.Tensor:
        """``t = 1 − ω·dc/A`` with the dark channel ``dc`` and airlight ``A`` from its brightest value."""
        dark = _min_filter(rgb.amin(dim=1, keepdim=True), self.dark_window // 2)
        # Airlight is the brightest dark-channel value but at least 0.7: in a dim frame that maximum is small, and
        # dividing by it would stretch ordinary colours into fake haze.
        airlight = dark.flatten(1).amax(dim=1).clamp_min(0.7).view(-1, 1, 1, 1)
        return (1.0 - self.omega * dark / airlight).clamp(0.0, 1.0)

    @staticmethod
    def _vertical(rgb: torch.Tensor) -> torch.Tensor:
        """Row position, 0 at the top row and 1 at the bottom (ground-plane prior)."""
        h = rgb.shape[-2]
        rows = torch.linspace(0.0, 1.0, h, device=rgb.device, dtype=rgb.dtype).view(1, 1, h, 1)
        return rows.expand(rgb.shape[0], 1, h, rgb.shape[-1])

    @staticmethod
    def _texture(grey: torch.Tensor) -> torch.Tensor:
        """Local mean gradient magnitude mapped by ``g / (g + mean g)``: scale-free, so exposure does not matter."""
        gx = F.pad(grey[..., :, 1:] - grey[..., :, :-1], (0, 1, 0, 0))
        gy = F.pad(grey[..., 1:, :] - grey[..., :-1, :], (0, 0, 0, 1))
        energy = _box(gx.abs() + gy.abs(), 2)
        mean = energy.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-4)
        return energy / (energy + mean)


# Stride-1 pooling in PyTorch's CPU kernels costs O(k²) per pixel with a large per-call overhead; on the tiny maps here
# running sums (box) and shifted minima (erosion) are 5–20× faster and run unchanged on CUDA.
def _box_axis(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    padding = (r + 1, r) if dim == -1 else (0, 0, r + 1, r)
    csum = F.pad(x, padding).cumsum(dim)
    window_sum = csum.narrow(dim, 2 * r + 1, n) - csum.narrow(dim, 0, n)
    i = torch.arange(n, device=x.device, dtype=x.dtype)
    count = (i + r).clamp(max=n - 1) - (i - r).clamp(min=0) + 1  # windows are cut at the border, not zero-padded
    return window_sum / count.view(n, 1) if dim == -2 else window_sum / count


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)² window, renormalised at the borders; separable running sums."""
    return _box_axis(_box_axis(x, r, -1), r, -2)


def _min_filter(x: torch.Tensor, r: int) -> torch.Tensor:
    """Grey erosion over a (2r+1)² window with replicated borders, as separable shifted minima."""
    h, w = x.shape[-2:]
    rows = F.pad(x, (r, r, 0, 0), mode="replicate")
    out = rows[..., :, 0:w]
    for i in range(1, 2 * r + 1):
        out = torch.minimum(out, rows[..., :, i : i + w])
    cols = F.pad(out, (0, 0, r, r), mode="replicate")
    out = cols[..., 0:h, :]
    for i in range(1, 2 * r + 1):
        out = torch.minimum(out, cols[..., i : i + h, :])
    return out


def _guided_filter(guide: torch.Tensor, src: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """Grey-guide guided filter: locally ``src ≈ a·guide + b``, so the output follows the guide's edges."""
    means = _box(torch.cat([guide, src, guide * src, guide * guide], dim=1), r)
    mean_i, mean_p, corr_ip, corr_ii = means.split(1, dim=1)
    a = (corr_ip - mean_i * mean_p) / (corr_ii - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    mean_a, mean_b = _box(torch.cat([a, b], dim=1), r).split(1, dim=1)
    return mean_a * guide + mean_b
