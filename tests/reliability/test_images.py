"""Images from files and bytes: corrupt, truncated, tiny, huge, every common mode, EXIF rotation.

``load_image`` (library) and ``decode_image`` (server) give an RGB image or a ValueError /
APIError 400 with a message, never another exception; the pixel cap is checked before pixels are
decoded; a box drawn on the displayed (EXIF-rotated) image covers the same content after loading,
through the processor's resize/pad too."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from regiongpt import imaging
from regiongpt.imaging import load_image, load_mask_image
from regiongpt.processing import ImagePreprocessor
from regiongpt.regions import Box
from regiongpt.serve.errors import APIError
from regiongpt.serve.inputs import decode_image
from regiongpt.serve.schemas import ServerSettings
from tests.reliability.helpers import PROPS, count

SETTINGS = ServerSettings(max_image_pixels=1_000_000)
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def sample_image(width: int = 24, height: int = 16) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))


SEEDS = {
    "png": encode(sample_image(), "PNG"),
    "png-palette": encode(sample_image().convert("P"), "PNG"),
    "png-16bit": encode(Image.fromarray((np.arange(24 * 16).reshape(16, 24) * 150).astype(np.uint16)), "PNG"),
    "jpeg": encode(sample_image(), "JPEG", quality=90),
    "jpeg-progressive": encode(sample_image(), "JPEG", progressive=True),
    "gif": encode(sample_image().convert("P"), "GIF"),
    "bmp": encode(sample_image(), "BMP"),
    "tiff": encode(sample_image(), "TIFF"),
    "webp": encode(sample_image(), "WEBP", lossless=True),
    "ico": encode(sample_image(16, 16), "ICO"),
}


def load_both(data: bytes, path: Path) -> Image.Image | None:
    """Load through the library (file) and the server (bytes); they must agree on success."""
    path.write_bytes(data)
    try:
        library = load_image(path)
    except ValueError as error:
        assert str(error).strip()
        library = None
    try:
        served = decode_image(data, SETTINGS)
    except APIError as error:
        assert error.status == 400 and error.message.strip()
        served = None
    for image in (library, served):
        if image is not None:
            assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
            np.asarray(image)  # the pixels are really there
    return library


@settings(max_examples=400, **PROPS)
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_corrupted_and_truncated_files(tmp_path_factory, seed, edits, cut):
    data = bytearray(SEEDS[seed])
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    count("images.corrupt/truncated bytes")
    load_both(bytes(data), tmp_path_factory.mktemp("img") / "x.bin")


@settings(max_examples=100, **PROPS)
@given(data=st.binary(max_size=300))
def test_random_bytes(tmp_path_factory, data):
    count("images.random bytes")
    load_both(data, tmp_path_factory.mktemp("img") / "x.bin")


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_every_truncation_point_of_small_files(tmp_path, seed):
    data = SEEDS[seed]
    for cut in range(0, len(data), max(1, len(data) // 40)):
        count("images.truncation points")
        load_both(data[:cut], tmp_path / "cut.bin")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ValueError, match="image file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ValueError, match="image file not found"):
        load_image(tmp_path)


# --------------------------------------------------------------------------------- sizes
def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (greyscale) with a tiny, incomplete IDAT."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(100_000, 100_000))
    with pytest.raises(ValueError, match="pixel"):
        load_image(path)
    with pytest.raises(APIError, match="pixels"):
        decode_image(path.read_bytes(), SETTINGS)


def test_pixel_cap_is_checked_before_decoding(tmp_path, monkeypatch):
    """Between 1x and 2x the cap PIL only warns: the image must still be refused undecoded."""
    monkeypatch.setattr(imaging, "MAX_IMAGE_PIXELS", 10_000)
    path = tmp_path / "big.png"
    sample_image(150, 100).save(path)  # 15,000 pixels: over the cap, under twice the cap
    decoded = []
    original = PngImagePlugin.PngImageFile.load

    def spy(self):
        decoded.append(self.size)
        return original(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", spy)
    with pytest.raises(ValueError, match="15000 pixels exceeds the 10000 pixel limit"):
        load_image(path)
    assert decoded == [], "the pixels were decoded before the size was checked"
    with pytest.raises(ValueError, match="15000 pixels exceeds the 10000 pixel limit"):
        load_mask_image(path)


def test_pil_global_limit_is_left_alone(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "a.png"
    sample_image().save(path)
    load_image(path)
    with pytest.raises(ValueError):
        load_image(tmp_path / "missing.png")
    assert before == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_one_by_one_images(tmp_path, fmt):
    path = tmp_path / f"one.{fmt.lower()}"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(path, format=fmt)
    image = load_image(path)
    assert image.size == (1, 1) and image.mode == "RGB"
    pixels, transform = ImagePreprocessor(8, MEAN, STD)(image)
    assert pixels.shape == (3, 8, 8) and transform.scale_x == 8


def test_zero_sized_arrays_are_refused():
    for array in (np.zeros((0, 5, 3), np.uint8), np.zeros((5, 0), np.uint8)):
        with pytest.raises(ValueError, match="no pixels|image array"):
            load_image(array)


# --------------------------------------------------------------------------------- modes
def white_square(
    mode: str, size: tuple[int, int] = (24, 16), box: tuple[int, int, int, int] = (4, 3, 12, 9)
) -> Image.Image:
    """An opaque black image with a white rectangle at ``box``."""
    array = np.zeros((size[1], size[0]), np.uint8)
    array[box[1] : box[3], box[0] : box[2]] = 255
    grey = Image.fromarray(array)
    if mode == "I;16":
        return Image.fromarray(array.astype(np.uint16) * 257)
    if mode in ("RGBA", "LA", "PA"):
        image = grey.convert("RGB" if mode == "RGBA" else "L").convert(mode if mode != "PA" else "RGBA")
        image.putalpha(255)
        return image if mode != "PA" else image.convert("P")
    if mode == "P":
        return grey.convert("RGB").convert("P")
    return grey.convert(mode)


MODES = {  # mode -> formats that store it
    "1": ["PNG", "TIFF", "BMP"],
    "L": ["PNG", "JPEG", "TIFF", "WEBP"],
    "P": ["PNG", "GIF", "BMP", "TIFF"],
    "RGB": ["PNG", "JPEG", "TIFF", "WEBP", "BMP"],
    "RGBA": ["PNG", "TIFF", "WEBP"],
    "LA": ["PNG", "TIFF"],
    "CMYK": ["JPEG", "TIFF"],
    "I;16": ["PNG", "TIFF"],
    "I": ["TIFF"],
    "F": ["TIFF"],
}


def brightness_inside(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[float, float]:
    array = np.asarray(image.convert("L"), dtype=np.float64)
    inside = np.zeros(array.shape, bool)
    inside[box[1] : box[3], box[0] : box[2]] = True
    return float(array[inside].mean()), float(array[~inside].mean())


@pytest.mark.parametrize(("mode", "fmt"), [(m, f) for m, formats in MODES.items() for f in formats])
def test_every_mode_loads_as_the_same_picture(tmp_path, mode, fmt):
    source = white_square(mode)
    path = tmp_path / f"img.{fmt.lower()}"
    source.save(path, format=fmt)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (24, 16)
    inside, outside = brightness_inside(image, (4, 3, 12, 9))
    assert inside > 200 and outside < 50, (Image.open(path).mode, inside, outside)
    assert brightness_inside(load_image(source), (4, 3, 12, 9))[0] > 200  # a PIL image in that mode


def test_transparent_pixels_become_white_for_every_alpha_mode(tmp_path):
    for mode in ("RGBA", "LA"):
        array = np.zeros((4, 4, 4 if mode == "RGBA" else 2), np.uint8)  # black, fully transparent
        assert np.asarray(load_image(Image.fromarray(array, mode=mode))).min() == 255, mode
    palette_alpha = Image.new("P", (4, 4), 0)
    palette_alpha.putpalette([0, 0, 0] * 256)
    palette_alpha.putalpha(0)
    assert palette_alpha.mode == "PA" and np.asarray(load_image(palette_alpha)).min() == 255
    palette = Image.new("P", (4, 4), 0)
    palette.info["transparency"] = 0
    path = tmp_path / "t.png"
    palette.save(path, transparency=0)
    assert np.asarray(load_image(path)).min() == 255


def test_signed_and_float_images_keep_their_contrast():
    """32-bit signed (negative values) and float images map to 0..255 without wrapping."""
    signed = np.full((4, 6), -1000, np.int32)
    signed[1:3, 2:4] = 3000
    image = np.asarray(load_image(Image.fromarray(signed, mode="I")).convert("L"))
    assert image[1:3, 2:4].min() > 200 and image[0].max() < 50, image
    floats = np.zeros((4, 6), np.float32)
    floats[1:3, 2:4] = 1.0
    image = np.asarray(load_image(Image.fromarray(floats, mode="F")).convert("L"))
    assert image[1:3, 2:4].min() > 200 and image[0].max() < 50, image


# --------------------------------------------------------------------------------- EXIF
# exif orientation -> the transpose ImageOps.exif_transpose applies, and its inverse
ORIENTATIONS = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_LEFT_RIGHT),
    3: (Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_180),
    4: (Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.FLIP_TOP_BOTTOM),
    5: (Image.Transpose.TRANSPOSE, Image.Transpose.TRANSPOSE),
    6: (Image.Transpose.ROTATE_270, Image.Transpose.ROTATE_90),
    7: (Image.Transpose.TRANSVERSE, Image.Transpose.TRANSVERSE),
    8: (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270),
}
DISPLAYED_BOX = (30, 4, 44, 14)  # on the displayed 48x32 picture: near the top-right corner


def stored_with_orientation(mode: str, orientation: int, fmt: str) -> bytes:
    """The bytes of a file that *displays* as a white box at DISPLAYED_BOX on 48x32."""
    displayed = white_square(mode, (48, 32), DISPLAYED_BOX)
    stored = displayed.transpose(ORIENTATIONS[orientation][1]) if orientation in ORIENTATIONS else displayed
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, fmt, exif=exif)


@pytest.mark.parametrize("orientation", [1, *ORIENTATIONS])
@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("RGB", "JPEG"),
        ("RGB", "PNG"),
        ("L", "PNG"),
        ("P", "PNG"),
        ("RGBA", "WEBP"),
        ("CMYK", "JPEG"),
        ("I;16", "PNG"),
        ("RGB", "TIFF"),
    ],
)
def test_exif_rotation_is_applied_consistently_with_regions(tmp_path, orientation, mode, fmt):
    data = stored_with_orientation(mode, orientation, fmt)
    path = tmp_path / f"rotated.{fmt.lower()}"
    path.write_bytes(data)
    box = Box(*DISPLAYED_BOX)
    for image in (load_image(path), decode_image(data, SETTINGS)):
        assert image.size == (48, 32), (orientation, image.size)
        inside, outside = brightness_inside(image, DISPLAYED_BOX)
        assert inside > 200 and outside < 50, (orientation, inside, outside)
        for resize in ("pad", "resize"):  # the processor moves the box with the pixels
            processor = ImagePreprocessor(32, MEAN, STD, resize)
            pixels, transform = processor(image)
            _, masks = processor.region_tensors([box], image.size, transform)
            grey = ((pixels * 0.5 + 0.5).mean(0) * 255).numpy()
            region = masks[0].numpy() > 0.5
            assert grey[region].mean() > 180 and grey[~region].mean() < 80, (orientation, resize)
