"""Image decoding and augmentation on uint8 tensors [3, H, W].

Randomness: torchvision's v2 transform classes draw their parameters from the
global torch RNG and take no generator, which would make a batch depend on
which worker built it and on everything drawn before. So the train transforms
here draw their parameters from an explicit per-view random stream (a
:class:`~benchmark.data.rng.SplitMix64` the loader seeds from seed, epoch,
batch, position and view) and apply them with the functional ops (the resize
through the very kernel ``torchvision.transforms.v2.functional.resize``
dispatches to for uint8, bit-identical, without the wrapper's per-call cost).
The parameter distributions are the ones of ``RandomResizedCrop``,
``RandomCrop`` and ``RandomHorizontalFlip``, and of HORDE's multi-resolution
random crop (:func:`multires_params`), which is written out here because no
library has it.

The views (:meth:`TrainTransform.view_into`) run on whichever device holds
the prepared image (``data.augment_on: device``): the same ops, except that
off the CPU the resizes are torchvision's float32 path there
(:func:`resize_into`).

Data is never normalised here: models normalise their own uint8 input.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

try:  # torchvision marks its decoders deprecated (0.29, for TorchCodec); PIL if they go
    from torchvision.io import ImageReadMode, decode_image
except ImportError:  # pragma: no cover - depends on the installed torchvision
    decode_image = None

from benchmark.config import DataConfig
from benchmark.errors import ConfigError, DatasetNotFoundError

from .readers import DatasetFormatError

# Counts decodes in this process (tests use it with num_workers=0 to prove an
# image is decoded once per batch whatever the number of views).
_DECODES = 0


def decode_count() -> int:
    """Images decoded so far in this process."""
    return _DECODES


def load_image(path: str, box: Optional[np.ndarray] = None) -> torch.Tensor:
    """Read and decode an image to uint8 RGB [3,H,W]; crop to ``box`` (x1,y1,x2,y2) if given."""
    global _DECODES
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise DatasetNotFoundError(f"image file missing: {path} (listed in the dataset's annotation files)") from None
    except OSError as exc:
        raise DatasetNotFoundError(f"cannot read image file {path}: {exc.strerror or exc}") from None
    img = _decode_with_torchvision(data) if decode_image is not None else None
    if img is None:  # formats/variants libjpeg-turbo/libpng reject (e.g. some CMYK, GIF)
        img = _decode_with_pil(path)
    _DECODES += 1
    if box is not None:
        img = crop_box(img, box)
    return img


def _decode_with_torchvision(data: bytes) -> Optional[torch.Tensor]:
    """libjpeg-turbo/libpng via torchvision (~4x faster than PIL on small JPEGs); None on failure."""
    with warnings.catch_warnings():
        # torchvision 0.29 warns on every call that its decoders are deprecated in
        # favour of TorchCodec, which is not a dependency of this project.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError):
            return None


def _decode_with_pil(path: str) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetFormatError(f"cannot decode image {path}: {exc}") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def box_window(h: int, w: int, box: np.ndarray) -> tuple[int, int, int, int]:
    """(y1, y2, x1, x2): the pixels of an h x w image the box (x1, y1, x2, y2) covers,
    clamped to the image; the whole image if that is empty."""
    x1 = min(max(int(math.floor(box[0])), 0), w)
    y1 = min(max(int(math.floor(box[1])), 0), h)
    x2 = min(max(int(math.ceil(box[2])), 0), w)
    y2 = min(max(int(math.ceil(box[3])), 0), h)
    if x2 - x1 < 1 or y2 - y1 < 1:
        return 0, h, 0, w
    return y1, y2, x1, x2


def crop_box(img: torch.Tensor, box: np.ndarray) -> torch.Tensor:
    """Crop to the box (x1, y1, x2, y2) in pixels, clamped to the image; whole image if empty."""
    y1, y2, x1, x2 = box_window(*img.shape[-2:], box)
    return img[:, y1:y2, x1:x2]


# ---------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------


def _resize(img: torch.Tensor, nh: int, nw: int) -> torch.Tensor:
    """torchvision's antialiased resize of a decoded uint8 [3,h,w] (evaluation: once per image)."""
    if img.shape[-2:] == (nh, nw):
        return img
    return F.resize(img, [nh, nw], antialias=True)


def _longer_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    s = size / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def _resize_longer(img: torch.Tensor, size: int) -> torch.Tensor:
    return _resize(img, *_longer_side_size(*img.shape[-2:], size))


def _resize_shorter(img: torch.Tensor, size: int) -> torch.Tensor:
    _, h, w = img.shape
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    return _resize(img, nh, nw)


def _pad_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """Pad with zeros, image centred, to size x size."""
    _, h, w = img.shape
    ph, pw = size - h, size - w
    if ph <= 0 and pw <= 0:
        return img
    ph, pw = max(ph, 0), max(pw, 0)
    return F.pad(img, [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2], fill=0)


def rrc_params(
    h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float], rng
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a RandomResizedCrop box; ``rng.random()`` gives uniforms.

    The distribution of torchvision's RandomResizedCrop (area fraction uniform in
    ``scale``, log aspect ratio uniform in ``ratio``, 10 tries, then a central crop
    with the ratio clamped), written out because its parameter sampler reads the
    global RNG.
    """
    area = h * w
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * rng.random())
        aspect = math.exp(log_lo + (log_hi - log_lo) * rng.random())
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.random() * (h - ch + 1)), int(rng.random() * (w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def multires_params(h: int, w: int, crop: int, ratio: tuple[float, float], rng) -> tuple[int, int, int, int]:
    """(new_h, new_w, top, left) of a multi-resolution random crop; ``rng.random()`` gives uniforms.

    HORDE's augmentation (Jacob et al., ICCV 2019), which DM² Sec. 4.2 follows:
    the longer side is resized to a length uniform in
    [int(crop * ratio[0]), int(crop * ratio[1])], the shorter side in
    proportion (both rounded up), then a crop x crop window is drawn uniformly
    along each side longer than ``crop`` (offset 0 along a side that is not;
    the view is then padded, see :meth:`TrainTransform.view_into`). Offsets
    are uniform in [0, n - crop] as in torchvision's RandomCrop (HORDE's code
    draws from [0, n - crop), never the last position).
    """
    lo, hi = int(crop * ratio[0]), int(crop * ratio[1])
    longer = lo + rng.random() * (hi - lo)
    if h > w:
        nh, nw = math.ceil(longer), math.ceil(w / h * longer)
    else:
        nw, nh = math.ceil(longer), math.ceil(h / w * longer)
    nh, nw = max(nh, 1), max(nw, 1)
    top = int(rng.random() * (nh - crop + 1)) if nh > crop else 0
    left = int(rng.random() * (nw - crop + 1)) if nw > crop else 0
    return nh, nw, top, left


def resize_into(src: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``F.resize(src, out.shape[-2:], antialias=True)`` for uint8 [1,3,h,w], written into ``out``.

    On the CPU, calls the kernel torchvision itself dispatches to (bilinear,
    antialiased interpolate on uint8; a test checks the bytes are
    torchvision's) through its ``out=`` overload, so a view is resized
    straight into its slot of the batch, and without the v2 wrapper, which
    costs ~3x the kernel on the tiny smoke images. Fastest with channels-last
    ``src`` and ``out`` (see :meth:`TrainTransform.prepare`).

    On another device (``data.augment_on: device``), torchvision's own path
    there: no uint8 kernel, so float32 interpolation, rounded. Its bytes can
    differ from the CPU kernel's (fixed-point weights, rounded between the two
    passes) by a level or two at some pixels.
    """
    size = list(out.shape[-2:])
    if list(src.shape[-2:]) == size:
        out.copy_(src)
    elif src.device.type != "cpu":
        out.copy_(_resize_float(src, size))
    elif _RESIZE_AA_OUT is not None:
        _RESIZE_AA_OUT(src, size, False, None, None, out=out)
    else:  # pragma: no cover - a torch without the out= overload
        out.copy_(torch.nn.functional.interpolate(src, size=size, mode="bilinear", align_corners=False, antialias=True))
    return out


def _resize_float(src: torch.Tensor, size: list[int]) -> torch.Tensor:
    """What ``F.resize(antialias=True)`` computes for uint8 where it has no uint8 kernel
    (GPUs): bilinear antialiased interpolation in float32, rounded (still float)."""
    return torch.nn.functional.interpolate(
        src.float(), size=size, mode="bilinear", align_corners=False, antialias=True
    ).round_()


def resized_window(src: torch.Tensor, nh: int, nw: int, top: int, left: int, hm: int, wm: int) -> torch.Tensor:
    """``resize(src, [nh, nw])[..., top:top+hm, left:left+wm]`` (antialiased bilinear), computing
    little more than the window; the same bytes. ``src`` is [1,3,h,w] channels-last.

    torch's uint8 kernel is separable and rounds to uint8 between its passes:
    a horizontal pass (each row on its own, weights set by the widths only),
    then a vertical one (each column on its own, weights set by the heights
    only). So the horizontal pass is run only on the source rows the window's
    output rows read (their filter support, plus a margin), into a full-height
    buffer, and the vertical pass only on the window's columns. Rows outside
    that range stay unset; they feed only output rows outside the window.
    A test checks the result against torchvision's resize then crop.

    Off the CPU (float interpolation in one 2-D pass, see :func:`resize_into`)
    the whole image is resized and the window cut from it, as torchvision does.
    """
    h, w = src.shape[-2:]
    if (nh, nw) == (h, w):
        return src[:, :, top : top + hm, left : left + wm]
    if src.device.type != "cpu":
        full = torch.empty(1, nh, nw, 3, dtype=torch.uint8, device=src.device).permute(0, 3, 1, 2)
        return resize_into(src, full)[:, :, top : top + hm, left : left + wm]
    scale = h / nh
    support = max(scale, 1.0)  # bilinear: 1 output pixel of support, in input pixels when shrinking
    a = max(math.floor((top + 0.5) * scale - support) - 2, 0)
    b = min(math.ceil((top + hm - 0.5) * scale + support) + 2, h)
    if nw == w:
        rows = src
    else:
        rows = torch.empty(1, h, nw, 3, dtype=torch.uint8).permute(0, 3, 1, 2)
        resize_into(src[:, :, a:b, :], rows[:, :, a:b, :])
    if nh == h:
        return rows[:, :, top : top + hm, left : left + wm]
    cols = resize_into(rows[:, :, :, left : left + wm], torch.empty(1, nh, wm, 3, dtype=torch.uint8).permute(0, 3, 1, 2))
    return cols[:, :, top : top + hm, :]


# The out= overload of the aten op ``interpolate(mode="bilinear", antialias=True)``
# calls (same kernel, same bytes); None if this torch lacks it.
try:
    _RESIZE_AA_OUT = torch.ops.aten._upsample_bilinear2d_aa.out
except (AttributeError, RuntimeError):  # pragma: no cover - depends on the torch version
    _RESIZE_AA_OUT = None


# ---------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------


def _check_sizes(cfg: DataConfig) -> None:
    if cfg.crop_size <= 0 or cfg.resize_size <= 0:
        raise ConfigError("data.crop_size / data.resize_size: must be positive")
    if cfg.crop_size > cfg.resize_size:  # both test transforms (and resize_pad_random_crop) crop the resized image
        raise ConfigError(
            f"data.crop_size: {cfg.crop_size} is larger than data.resize_size={cfg.resize_size}, "
            f"from which test_transform {cfg.test_transform} crops"
        )
    lo, hi = cfg.rrc_scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"data.rrc_scale: expected 0 < min <= max <= 1, got {list(cfg.rrc_scale)}")
    lo, hi = cfg.rrc_ratio
    if not 0 < lo <= hi:
        raise ConfigError(f"data.rrc_ratio: expected 0 < min <= max, got {list(cfg.rrc_ratio)}")
    if cfg.train_transform == "multi_resolution_crop":
        if cfg.multires_range is None:
            raise ConfigError("data.multires_range: multi_resolution_crop needs [min, max] (longer side / crop_size)")
        lo, hi = cfg.multires_range
        if not 0 < lo <= hi or int(cfg.crop_size * lo) < 1:
            raise ConfigError(
                f"data.multires_range: expected 0 < min <= max with min x crop_size >= 1, got {list(cfg.multires_range)}"
            )


def to_channels_last(img: torch.Tensor) -> torch.Tensor:
    """[3,H,W] -> [1,3,H,W] with channels-last memory (strides H*W*3, 1, W*3, 3), same values.

    Built through an explicit [1,H,W,3] tensor so that the batch stride is a
    proper one: ``img.unsqueeze(0)`` of a decoded image gives batch stride 3,
    which ``suggest_memory_format`` does not take for channels-last, and the
    resize would then write (slowly) a planar output.
    """
    hwc = img.permute(1, 2, 0)
    if not hwc.is_contiguous():
        hwc = hwc.contiguous()
    return hwc.unsqueeze(0).permute(0, 3, 1, 2)


class TrainTransform:
    """``cfg.train_transform`` with parameters drawn from an explicit generator."""

    def __init__(self, cfg: DataConfig):
        _check_sizes(cfg)
        self.kind = cfg.train_transform
        self.crop = cfg.crop_size
        self.resize = cfg.resize_size
        self.scale = tuple(cfg.rrc_scale)
        self.ratio = tuple(cfg.rrc_ratio)
        self.multires = tuple(cfg.multires_range) if cfg.multires_range is not None else None
        self.hflip = cfg.hflip

    def prepared_shape(self, h: int, w: int, box: Optional[np.ndarray] = None) -> tuple[int, int]:
        """(H', W') of :meth:`prepare`'s result for an h x w image cropped to ``box``."""
        if self.kind == "resize_pad_random_crop":
            return self.resize, self.resize
        if box is None:
            return h, w
        y1, y2, x1, x2 = box_window(h, w, box)
        return y2 - y1, x2 - x1

    def prepare(self, img: torch.Tensor) -> torch.Tensor:
        """The deterministic part shared by every view (done once per image) -> [1,3,H',W'].

        The result is channels-last in memory (pixels with interleaved RGB, as
        libjpeg-turbo decodes them, so usually no copy): torch's AVX2 uint8
        antialiased resize works on interleaved pixels, and with a
        channels-last input it also writes a channels-last output, skipping its
        scalar repacking to planar, which costs as much as the resize itself.
        Views are written, still interleaved, into a channels-last batch.
        """
        img = to_channels_last(img)
        if self.kind != "resize_pad_random_crop":
            return img
        # longer side -> resize, centred on a black square: resized straight into
        # the canvas (what _pad_square(_resize_longer(...)) gives, one pass less)
        size = self.resize
        nh, nw = _longer_side_size(*img.shape[-2:], size)
        canvas = torch.zeros(1, size, size, 3, dtype=torch.uint8).permute(0, 3, 1, 2)
        y, x = (size - nh) // 2, (size - nw) // 2
        resize_into(img, canvas[:, :, y : y + nh, x : x + nw])
        return canvas

    def view_into(self, prepared: torch.Tensor, rng, out: torch.Tensor, scratch: torch.Tensor) -> None:
        """Write one random view of a ``prepare``d image into ``out``.

        ``out`` and ``scratch`` are uint8 [crop, crop, 3] (interleaved RGB, the
        layout of a channels-last batch slot), on the device of ``prepared``. ``rng`` is any object with
        ``random()`` (the loader passes a per-view
        :class:`~benchmark.data.rng.SplitMix64`); the crop is drawn first, then
        the flip. An unflipped view is resized straight into ``out``; a flipped
        one goes through ``scratch`` and is mirrored in the copy into ``out``.
        """
        h, w = prepared.shape[-2:]
        c = self.crop
        if self.kind == "multi_resolution_crop":
            self._multires_view_into(prepared, rng, out)
            return
        if self.kind == "random_resized_crop":
            top, left, ch, cw = rrc_params(h, w, self.scale, self.ratio, rng)
        else:
            top, left, ch, cw = int(rng.random() * (h - c + 1)), int(rng.random() * (w - c + 1)), c, c
        flip = self.hflip and rng.random() < 0.5
        crop = prepared[:, :, top : top + ch, left : left + cw]
        if ch == c and cw == c:  # no resize: one copy from the image
            src = crop[0].permute(1, 2, 0)
        else:
            target = scratch if flip else out
            resize_into(crop, target.unsqueeze(0).permute(0, 3, 1, 2))
            if not flip:
                return
            src = scratch
        out.copy_(src.flip(1) if flip else src)  # torch's flip: ~10x numpy's reversed copy of 3-byte pixels

    def _multires_view_into(self, prepared: torch.Tensor, rng, out: torch.Tensor) -> None:
        """The window of the resized image (exactly what resizing then cropping gives), into ``out``."""
        h, w = prepared.shape[-2:]
        c = self.crop
        nh, nw, top, left = multires_params(h, w, c, self.multires, rng)
        flip = self.hflip and rng.random() < 0.5
        hm, wm = min(c, nh), min(c, nw)
        window = resized_window(prepared, nh, nw, top, left, hm, wm)[0].permute(1, 2, 0)
        if hm == c and wm == c:
            out.copy_(window.flip(1) if flip else window)
            return
        # Smaller than the crop along a side: centred on black, then the whole
        # canvas is flipped (so the padding is mirrored too).
        out.zero_()
        y, x = (c - hm) // 2, (c - wm) // 2
        out[y : y + hm, x : x + wm] = window
        if flip:
            out.copy_(out.flip(1))

    def __call__(self, img: torch.Tensor, rng) -> torch.Tensor:
        """One random view of a decoded image [3,H,W] -> [3,crop,crop] (contiguous)."""
        c = self.crop
        out = torch.empty(c, c, 3, dtype=torch.uint8)
        self.view_into(self.prepare(img), rng, out, torch.empty_like(out))
        return out.permute(2, 0, 1).contiguous()


class EvalTransform:
    """``cfg.test_transform``: deterministic -> uint8 [3, crop, crop]."""

    def __init__(self, cfg: DataConfig):
        _check_sizes(cfg)
        self.kind = cfg.test_transform
        self.crop = cfg.crop_size
        self.resize = cfg.resize_size

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.kind == "resize_center_crop":
            img = _resize_shorter(img, self.resize)
        elif self.kind == "resize_square_center_crop":
            img = _resize(img, self.resize, self.resize)
        else:
            img = _pad_square(_resize_longer(img, self.resize), self.resize)
        return F.center_crop(img, [self.crop, self.crop])
