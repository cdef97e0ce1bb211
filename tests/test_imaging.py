"""Saving images: the format comes from the file name, a bad name is refused up front, and a
failed write leaves the previous file as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from regiongpt.imaging import image_format_for, save_image_atomic


@pytest.mark.parametrize(("name", "fmt"), [("a.png", "PNG"), ("b.JPG", "JPEG"), ("c.webp", "WEBP")])
def test_image_format_follows_the_extension(name: str, fmt: str) -> None:
    assert image_format_for(name) == fmt


@pytest.mark.parametrize("name", ["answers.txt", "no_extension", "sheet.json"])
def test_an_unwritable_name_is_refused_with_the_path(name: str) -> None:
    with pytest.raises(ValueError, match=f"cannot write an image to '{name}'"):
        image_format_for(name)


def test_save_writes_the_format_of_the_name(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.jpg"
    save_image_atomic(Image.new("RGB", (8, 6), "red"), path)
    with Image.open(path) as written:
        assert written.format == "JPEG" and written.size == (8, 6)
    assert [p.name for p in path.parent.iterdir()] == ["out.jpg"]


def test_a_failed_save_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jpg"
    save_image_atomic(Image.new("RGB", (4, 4), "blue"), path)
    before = path.read_bytes()
    with pytest.raises(OSError, match="RGBA"):  # JPEG has no alpha channel
        save_image_atomic(Image.new("RGBA", (4, 4)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jpg"]
