"""Image loading (PIL images, paths and arrays to RGB PIL images) and saving, with clear errors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from regiongpt.atomic import write_bytes_atomic

ImageLike = Union[Image.Image, str, Path, np.ndarray]

#: Largest image we decode (pixels); guards against decompression bombs.
MAX_IMAGE_PIXELS = 64_000_000


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"image of {width}x{height} = {width * height} pixels exceeds the {MAX_IMAGE_PIXELS} pixel limit"
        )


def _open(path: Path) -> Image.Image:
    """Decode an image file; its size is checked against :data:`MAX_IMAGE_PIXELS` from the header,
    before any pixel is decoded (PIL's own limit is different, and below twice it PIL only warns)."""
    if not path.is_file():
        raise ValueError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:  # reads the header only
            _check_pixels(image.width, image.height)
            image.load()
            return image.copy() if image.mode != "P" else image.convert("RGBA")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # high bit depth: negatives shifted to 0, scaled so the brightest pixel is white
        array = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        array -= min(float(array.min()), 0.0)
        peak = max(float(array.max()), 1.0)
        return Image.fromarray(np.round(array / peak * 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def load_image(image: ImageLike) -> Image.Image:
    """Return an RGB PIL image with EXIF orientation applied.

    ``image``: a PIL image, a file path, or an ``HxWx3`` (or ``HxW``) uint8 array.
    Region coordinates always refer to the returned (EXIF-transposed) image."""
    if isinstance(image, (str, Path)):
        image = _open(Path(image))
    elif isinstance(image, np.ndarray):
        if (
            image.dtype != np.uint8
            or image.ndim not in (2, 3)
            or (image.ndim == 3 and image.shape[2] not in (3, 4))
        ):
            raise ValueError(
                f"image array must be HxWx3 uint8 RGB (or HxW), got shape {image.shape} dtype {image.dtype}"
            )
        image = Image.fromarray(image)
    elif not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL image, a path or a uint8 array, got {type(image).__name__}")
    _check_pixels(image.width, image.height)
    if image.width < 1 or image.height < 1:
        raise ValueError(f"image has no pixels: {image.width}x{image.height}")
    image = ImageOps.exif_transpose(image) or image
    return _to_rgb(image)


def load_mask_image(path: str | Path) -> np.ndarray:
    """A mask file as a boolean ``(height, width)`` array: alpha if present, else any non-zero."""
    image = _open(Path(path))
    if image.mode in ("RGBA", "LA"):
        return np.asarray(image.getchannel("A")) > 127
    array = np.asarray(image.convert("L"))
    return array > 127 if array.max() > 1 else array > 0


def image_format_for(path: str | Path) -> str:
    """PIL's format name for writing ``path`` by its extension (``.png`` -> ``"PNG"``); raises
    ``ValueError`` naming the path when PIL cannot write that extension."""
    path = Path(path)
    name = Image.registered_extensions().get(path.suffix.lower())
    if name is None or name not in Image.SAVE:
        raise ValueError(f"cannot write an image to {str(path)!r}: use a .png, .jpg or .webp file name")
    return name


def save_image_atomic(image: Image.Image, path: str | Path) -> None:
    """Write ``image`` in the format of ``path``'s extension, all or nothing (a failed write leaves
    the old file, if any, as it was)."""
    buffer = io.BytesIO()
    image.save(buffer, format=image_format_for(path))
    write_bytes_atomic(path, buffer.getvalue())
