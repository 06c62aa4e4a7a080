"""Still-image I/O shared by scoring, training and evaluation (one decoder, one tensor layout), and the student's
resize in both array kinds: torch (``resize_tensor``) and numpy (``resize_array``, the torch-free worker's).

Importing this module does not import torch; the torch helpers import it when called.
"""

from __future__ import annotations

import functools
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch


def read_rgb(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """An image file as uint8 RGB HxWx3; ValueError when OpenCV cannot decode it, or when its header declares more
    than ``max_pixels`` (width × height): checked before decoding, which for a PNG of zeros is ~1 kB of file per
    megapixel of memory."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if max_pixels is not None:
        declared = declared_pixels(path)
        if declared is not None and declared[0] > max_pixels:
            raise ValueError(f"image {path} is {declared[1]}, more than max_pixels={max_pixels} "
                             "(video.max_image_pixels)")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


#: the formats whose size Pillow reads from the header alone, among those OpenCV decodes (ICO is not one: Pillow
#: decodes its whole image to open it, and OpenCV cannot read it anyway)
_HEADER_FORMATS = ["PNG", "JPEG", "BMP", "TIFF", "WEBP", "PPM", "JPEG2000"]


def declared_pixels(path: str | Path) -> tuple[int, str] | None:
    """How many pixels the file's header declares, and the size as text ("20000x20000"): Pillow's ``open`` reads no
    pixel data. None where Pillow does not know the format or the header is damaged (OpenCV then decides). Beyond
    Pillow's own decompression-bomb bound (~179 M pixels) it does not give the size, only that it is over that."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit decides, not Pillow's
            with Image.open(path, formats=_HEADER_FORMATS) as im:
                width, height = im.size
                return width * height, f"{width}x{height}"
    except Image.DecompressionBombError:
        bound = 2 * int(Image.MAX_IMAGE_PIXELS or 0)
        return bound + 1, f"over {bound} pixels"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def to_array(img: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 → float32 (1,3,H,W) in [0,1] (numpy; ``to_tensor``'s twin)."""
    return (np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0))[None]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 → float (1,3,H,W) in [0,1]."""
    import torch

    return torch.from_numpy(np.require(img, requirements=["C", "W"])).permute(2, 0, 1)[None].float().div_(255.0)


def resize_tensor(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The student's own resize (antialiased bilinear), so training and evaluation see what inference sees."""
    import torch

    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def resize_array(x: np.ndarray, size: tuple[int, int], threads: int = 1) -> np.ndarray:
    """``resize_tensor`` of float32 (N,C,H,W) numpy arrays, through Pillow's float resampler.

    torch's antialiased bilinear is Pillow's triangle filter, stretched by the scale factor when shrinking, ported
    to tensors; on Pillow's 32-bit float planes ("F" mode) the two agree to ~1e-5 (a test pins it) at the same
    speed, where a hand-written banded filter in numpy costs several times more. Pillow releases the GIL while it
    resamples, so ``threads`` > 1 resizes that many planes at once: the ONNX Runtime backend passes its own thread
    count, because its cores are idle while a batch is being resized."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    h, w = size
    out = np.empty(x.shape[:-2] + (h, w), dtype=np.float32)
    planes = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, *x.shape[-2:])
    pairs = list(zip(planes, out.reshape(-1, h, w)))
    if threads > 1 and len(pairs) > 1:
        list(_plane_pool(threads).map(lambda pair: _resize_plane(*pair, (w, h)), pairs))
    else:
        for plane, dst in pairs:
            _resize_plane(plane, dst, (w, h))
    return out


def _resize_plane(plane: np.ndarray, dst: np.ndarray, wh: tuple[int, int]) -> None:
    from PIL import Image

    dst[...] = np.asarray(Image.fromarray(plane).resize(wh, Image.Resampling.BILINEAR))  # float32: an "F" image


@functools.lru_cache(maxsize=4)
def _plane_pool(threads: int) -> ThreadPoolExecutor:
    """One long-lived pool per thread count (starting threads per batch would cost more than it saves)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="resize")


def resize_frames_and_depth(rgb: torch.Tensor, depth: torch.Tensor, size: tuple[int, int]
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``resize_tensor`` of both, skipping a tensor already at ``size``. Frames and depth maps of the same size and
    dtype go through one 4-channel call (channels are resized independently, so the result is the same; one pass
    over the batch instead of two)."""
    import torch

    size = tuple(size)
    need_rgb, need_depth = tuple(rgb.shape[-2:]) != size, tuple(depth.shape[-2:]) != size
    if need_rgb and need_depth and rgb.shape[-2:] == depth.shape[-2:] and rgb.dtype == depth.dtype:
        both = resize_tensor(torch.cat([rgb, depth], dim=1), size)
        return both[:, :-1], both[:, -1:]
    return (resize_tensor(rgb, size) if need_rgb else rgb), (resize_tensor(depth, size) if need_depth else depth)
