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

Two array kinds, one algorithm
    ``_near`` is written once over a handful of primitives (pooling, erosion, box means, clipping), given twice:
    in torch (``TorchOps``, for batches on any device: training, GPU workers) and in numpy + OpenCV (``NumpyOps``,
    for the torch-free ONNX Runtime worker). The two agree to float rounding (a test pins it at 1e-5).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stream_iqa.depth.base import DepthSource

#: Blend weights of the three nearness cues; they sum to 1. Vertical position is the most reliable single cue on
#: ordinary footage, transmission is decisive when there is haze and silent when there is none, texture breaks ties.
WEIGHTS: dict[str, float] = {"transmission": 0.35, "vertical": 0.40, "texture": 0.25}


class PriorDepth(DepthSource):
    """Heuristic relative inverse depth (near = 1) from transmission, vertical position and texture energy.

    ``work_size`` is the long side of the internal resolution: 128 px keeps the cost tiny and is plenty for a
    smooth prior whose job is to separate foreground from background, not to trace object outlines. Takes torch
    tensors or numpy arrays (``DepthSource``).
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

    def _estimate(self, rgb: Any) -> Any:
        from stream_iqa.depth.torch_ops import TorchOps

        return self._near(rgb, TorchOps)

    def _estimate_host(self, rgb: np.ndarray) -> np.ndarray:
        return self._near(rgb, NumpyOps)

    def _near(self, rgb: Any, ops: Any) -> Any:
        """The prior on (N,3,H,W) RGB in [0,1] with ``ops``' primitives: (N,1,h,w) nearness at the working size."""
        factor = max(1, max(rgb.shape[-2:]) // self.work_size)
        small = ops.clip(ops.downscale(rgb, factor), 0.0, 1.0)  # clamp after pooling: 25× fewer pixels to touch
        grey = ops.contiguous(0.299 * small[:, 0:1] + 0.587 * small[:, 1:2] + 0.114 * small[:, 2:3])
        near = (
            WEIGHTS["transmission"] * self._transmission(small, ops)
            + WEIGHTS["vertical"] * ops.rows(small)
            + WEIGHTS["texture"] * self._texture(grey, ops)
        )
        return ops.clip(_guided_filter(grey, near, self.guide_radius, self.guide_eps, ops), 0.0, None)

    def _transmission(self, rgb: Any, ops: Any) -> Any:
        """``t = 1 − ω·dc/A`` with the dark channel ``dc`` and airlight ``A`` from its brightest value."""
        dark = ops.min_filter(ops.channel_min(rgb), self.dark_window // 2)
        # Airlight is the brightest dark-channel value but at least 0.7: in a dim frame that maximum is small, and
        # dividing by it would stretch ordinary colours into fake haze.
        airlight = ops.clip(ops.image_max(dark), 0.7, None)
        return ops.clip(1.0 - self.omega * dark / airlight, 0.0, 1.0)

    @staticmethod
    def _texture(grey: Any, ops: Any) -> Any:
        """Local mean gradient magnitude mapped by ``g / (g + mean g)``: scale-free, so exposure does not matter."""
        gx, gy = ops.gradients(grey)
        energy = ops.box(abs(gx) + abs(gy), 2)
        mean = ops.clip(ops.image_mean(energy), 1e-4, None)
        return energy / (energy + mean)


def _guided_filter(guide: Any, src: Any, r: int, eps: float, ops: Any) -> Any:
    """Grey-guide guided filter: locally ``src ≈ a·guide + b``, so the output follows the guide's edges."""
    mean_i, mean_p, corr_ip, corr_ii = ops.split(ops.box(ops.cat([guide, src, guide * src, guide * guide]), r))
    a = (corr_ip - mean_i * mean_p) / (corr_ii - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    mean_a, mean_b = ops.split(ops.box(ops.cat([a, b]), r))
    return mean_a * guide + mean_b


class NumpyOps:
    """The prior's primitives on float32 (N,C,h,w) numpy arrays, with OpenCV for the windowed ones."""

    @staticmethod
    def clip(x: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
        return np.clip(x, lo, hi)

    @staticmethod
    def contiguous(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float32)

    @staticmethod
    def cat(xs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(xs, axis=1)

    @staticmethod
    def split(x: np.ndarray) -> list[np.ndarray]:
        return [x[:, i : i + 1] for i in range(x.shape[1])]

    @staticmethod
    def channel_min(x: np.ndarray) -> np.ndarray:
        return x.min(axis=1, keepdims=True)

    @staticmethod
    def image_max(x: np.ndarray) -> np.ndarray:
        return x.max(axis=(1, 2, 3), keepdims=True)

    @staticmethod
    def image_mean(x: np.ndarray) -> np.ndarray:
        return x.mean(axis=(-2, -1), keepdims=True, dtype=np.float32)

    @staticmethod
    def rows(x: np.ndarray) -> np.ndarray:
        h = x.shape[-2]
        ramp = np.linspace(0.0, 1.0, h, dtype=np.float32).reshape(1, 1, h, 1)
        return np.broadcast_to(ramp, (x.shape[0], 1, h, x.shape[-1]))

    @staticmethod
    def downscale(x: np.ndarray, factor: int) -> np.ndarray:
        """Box average over ``factor``² blocks; blocks cut by the border average only the pixels they hold
        (``avg_pool2d(ceil_mode=True, count_include_pad=False)``). OpenCV's area resize is that average, exactly
        and ~10× faster than a numpy reduction, where the factor divides the size: it does the whole blocks, and
        the few cut ones along the bottom and right border are averaged here."""
        import cv2

        x = np.asarray(x, dtype=np.float32)
        if factor == 1:
            return x
        n, c, h, w = x.shape
        fh, fw = h // factor, w // factor  # whole blocks per axis
        out = np.empty((n, c, -(-h // factor), -(-w // factor)), dtype=np.float32)
        if fh and fw:
            out[:, :, :fh, :fw] = _per_plane(x[:, :, : fh * factor, : fw * factor], lambda p: cv2.resize(
                p, (fw, fh), interpolation=cv2.INTER_AREA))
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                if i >= fh or j >= fw:  # a block cut by the border
                    block = x[:, :, i * factor : (i + 1) * factor, j * factor : (j + 1) * factor]
                    out[:, :, i, j] = block.mean(axis=(2, 3), dtype=np.float32)
        return out

    @staticmethod
    def min_filter(x: np.ndarray, r: int) -> np.ndarray:
        """Grey erosion over a (2r+1)² window with replicated borders."""
        import cv2

        kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
        return _per_plane(x, lambda p: cv2.erode(p, kernel, borderType=cv2.BORDER_REPLICATE))

    @staticmethod
    def box(x: np.ndarray, r: int) -> np.ndarray:
        """Mean over a (2r+1)² window, renormalised at the borders (the window is cut, not zero-padded)."""
        import cv2

        h, w = x.shape[-2:]
        k = (2 * r + 1, 2 * r + 1)
        sums = _per_plane(x, lambda p: cv2.boxFilter(p, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT))
        counts = np.outer(_window_counts(h, r), _window_counts(w, r)).astype(np.float32)
        return sums / counts

    @staticmethod
    def gradients(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gx, gy = np.zeros_like(grey), np.zeros_like(grey)
        gx[..., :, :-1] = grey[..., :, 1:] - grey[..., :, :-1]
        gy[..., :-1, :] = grey[..., 1:, :] - grey[..., :-1, :]
        return gx, gy


def _window_counts(n: int, r: int) -> np.ndarray:
    i = np.arange(n)
    return np.minimum(i + r, n - 1) - np.maximum(i - r, 0) + 1


def _per_plane(x: np.ndarray, fn: Any) -> np.ndarray:
    """``fn`` on each (h, w) plane of (N,C,h,w), stacked back (OpenCV filters take one plane of up to 4 channels)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return np.stack([np.stack([fn(plane) for plane in frame]) for frame in x])
