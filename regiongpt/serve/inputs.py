"""Turn a chat completion request into the library's inputs: a conversation, one image, regions.

Every problem raises :class:`APIError` with an HTTP status and a message that names it."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from regiongpt.imaging import load_image
from regiongpt.regions import Box, Mask, Point, Region, validate_regions
from regiongpt.serve.errors import APIError
from regiongpt.serve.schemas import BoxRegion, ChatCompletionRequest, MaskRegion, RegionSpec, ServerSettings

DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*);base64,(?P<data>.*)$", re.DOTALL
)


@dataclass
class ParsedRequest:
    """What the model needs: user/assistant turns, the image source and the region specs."""

    conversation: list[dict[str, str]]
    image_url: str


def parse_messages(request: ChatCompletionRequest) -> ParsedRequest:
    """System/developer messages are dropped (the model uses its own short system prompt); the
    single image may sit in any user message; the last message must be the user's."""
    conversation: list[dict[str, str]] = []
    image_url: str | None = None
    for index, message in enumerate(request.messages):
        if message.role in ("system", "developer"):
            continue
        texts = []
        for part in message.content or []:
            if part.type == "text":
                text = part.text or ""
                try:  # a lone surrogate ("\ud800" is valid JSON) makes the tokenizer raise TypeError
                    text.encode("utf-8")
                except UnicodeEncodeError as error:
                    raise APIError(
                        400,
                        f"messages[{index}]: the text holds invalid Unicode ({error.reason} at {error.start})",
                        param=f"messages[{index}].content",
                    ) from None
                texts.append(text)
                continue
            if message.role != "user":
                raise APIError(
                    400,
                    f"messages[{index}]: images are only accepted in user messages",
                    param=f"messages[{index}].content",
                )
            if image_url is not None:
                raise APIError(
                    400,
                    f"messages[{index}]: only one image per conversation is supported",
                    param=f"messages[{index}].content",
                )
            image_url = part.url
        conversation.append({"role": message.role, "content": "\n".join(texts)})
    if not conversation or conversation[-1]["role"] != "user":
        raise APIError(
            400, "the last message must be a user message (the question to answer)", param="messages"
        )
    if conversation[0]["role"] != "user":
        raise APIError(
            400, "the conversation must start with a user message (system messages aside)", param="messages"
        )
    if image_url is None:
        raise APIError(
            400,
            "no image: add one {'type': 'image_url', 'image_url': {'url': 'data:image/png;base64,...'}} "
            "content part to a user message",
            param="messages",
        )
    return ParsedRequest(conversation, image_url)


def decode_base64(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(re.sub(r"\s+", "", data), validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"{what} is not valid base64") from None


def split_data_url(url: str) -> bytes:
    """The bytes of a ``data:image/...;base64,...`` URL."""
    match = DATA_URL.match(url)
    if match is None:
        shown = url[:40] + ("..." if len(url) > 40 else "")
        raise APIError(
            400,
            f"malformed data URL {shown!r}: expected data:image/<format>;base64,<data>",
            param="image_url",
        )
    mime = match.group("mime")
    if mime is not None and not mime.startswith("image/"):
        raise APIError(400, f"the data URL holds {mime!r}, not an image", param="image_url")
    return decode_base64(match.group("data"), "the image data URL")


def open_image(data: bytes, settings: ServerSettings, what: str = "the image") -> Image.Image:
    """Decode image bytes with the pixel cap checked before the pixels are decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            pixels = image.width * image.height
            if pixels > settings.max_image_pixels:
                raise APIError(
                    400,
                    f"{what} is {image.width}x{image.height} = {pixels} pixels, over the limit of "
                    f"{settings.max_image_pixels} pixels",
                    param="image_url",
                )
            image.load()
    except APIError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise APIError(
            400, f"{what} is too large to decode (over {settings.max_image_pixels} pixels)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise APIError(400, f"cannot decode {what}: {error}") from None
    return image


async def fetch_image_bytes(url: str, settings: ServerSettings) -> bytes:
    """The image bytes of a data URL, or of an http(s) URL when remote URLs are allowed."""
    if url.startswith("data:"):
        return split_data_url(url)
    if not url.startswith(("http://", "https://")):
        raise APIError(
            400, f"unsupported image URL {url[:40]!r}: send a data:image/...;base64 URL", param="image_url"
        )
    if not settings.allow_remote_urls:
        raise APIError(
            400,
            "remote image URLs are disabled on this server: send the image as a data:image/...;base64 "
            "URL (or start the server with --allow-remote-urls)",
            param="image_url",
        )
    from regiongpt.serve.remote import fetch_remote_image

    return await fetch_remote_image(url, settings)


def build_regions(specs: list[RegionSpec], image: Image.Image, settings: ServerSettings) -> list[Region]:
    """Library regions in the (EXIF-transposed) image's pixel frame; ValueErrors become 400s."""
    if len(specs) > settings.max_regions:
        raise APIError(
            400,
            f"too many regions: {len(specs)} given, at most {settings.max_regions} per request",
            param="regions",
        )
    regions: list[Region] = []
    try:
        for index, spec in enumerate(specs):
            where = f"region {index + 1}"
            if isinstance(spec, BoxRegion):
                regions.append(Box(*spec.box))
            elif isinstance(spec, MaskRegion):
                mask = open_image(
                    decode_base64(spec.png_base64, f"{where}'s png_base64"), settings, f"{where}'s mask"
                )
                if mask.size != image.size:
                    raise ValueError(
                        f"mask is {mask.width}x{mask.height} but the image is {image.width}x{image.height}"
                    )
                array = (
                    np.asarray(mask.getchannel("A"))
                    if mask.mode in ("RGBA", "LA")
                    else np.asarray(mask.convert("L"))
                )
                regions.append(Mask(array > 0))
            else:
                regions.append(Point(*spec.point, radius=spec.radius))
    except ValueError as error:
        raise APIError(400, f"{where}: {error}", param="regions") from None
    try:
        return validate_regions(regions, image.size)
    except ValueError as error:
        raise APIError(400, str(error), param="regions") from None


def image_key(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def decode_image(data: bytes, settings: ServerSettings) -> Image.Image:
    """RGB, EXIF-transposed: the frame region coordinates refer to."""
    try:
        return load_image(open_image(data, settings))
    except ValueError as error:
        raise APIError(400, f"cannot use the image: {error}", param="image_url") from None
