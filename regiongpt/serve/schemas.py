"""Server settings and the OpenAI-compatible request/response models (pydantic).

A request is OpenAI's chat completion body plus a top-level ``regions`` list (the ``openai``
client sends it with ``extra_body={"regions": [...]}``)::

    {"model": "default",
     "messages": [{"role": "user", "content": [
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
         {"type": "text", "text": "What is <region1>?"}]}],
     "regions": [{"type": "box", "box": [10, 20, 120, 200]}],
     "max_tokens": 32}
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


@dataclass
class ServerSettings:
    """Limits and options of the server (``regiongpt serve`` flags set the common ones)."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: Optional[str] = None
    allow_remote_urls: bool = False
    remote_url_hosts: tuple[str, ...] = ()  # with allow_remote_urls: only these hosts (else public ones)
    max_regions: int = 32
    max_image_pixels: int = 16_000_000
    max_body_bytes: int = 20 * 1024 * 1024
    default_max_tokens: int = 128
    max_tokens_limit: int = 1024
    max_batch_size: int = 8
    batch_wait_s: float = 0.005
    request_timeout_s: float = 120.0
    remote_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "max_regions",
            "max_image_pixels",
            "max_body_bytes",
            "default_max_tokens",
            "max_tokens_limit",
            "max_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        self.remote_url_hosts = tuple(_host_as_connected(host) for host in self.remote_url_hosts)
        if self.remote_url_hosts and not self.allow_remote_urls:
            raise ValueError(
                "remote_url_hosts (--remote-url-host) needs allow_remote_urls (--allow-remote-urls)"
            )
        if not all(self.remote_url_hosts):
            raise ValueError(f"remote_url_hosts holds an empty host name: {list(self.remote_url_hosts)}")
        if self.request_timeout_s <= 0 or self.batch_wait_s < 0:
            raise ValueError("request_timeout_s must be positive and batch_wait_s non-negative")


def _host_as_connected(host: str) -> str:
    """An allow-list entry as :func:`~regiongpt.serve.remote.allowed` compares it: ``"[::1]"`` ->
    ``"::1"``, ``"Bücher.example"`` -> ``"xn--bcher-kva.example"`` (any port); with a port, only
    that port: ``"Example.com:8443"`` -> ``"example.com:8443"``, ``"[::1]:80"`` -> ``"[::1]:80"``."""
    import httpx

    from regiongpt.serve.remote import host_and_port, host_name

    entry = host.strip()
    if not entry:
        return ""
    bad = ValueError(f"remote_url_hosts: {host!r} is not a host name or address, with an optional :PORT")
    try:
        url = httpx.URL(f"allow://{entry}/")  # a scheme with no default port keeps ":80"
    except (httpx.InvalidURL, UnicodeError):
        raise bad from None
    extra = url.userinfo or url.raw_path != b"/" or url.query or url.fragment
    if extra or entry.endswith(":") or (url.port is not None and not 1 <= url.port <= 65535):
        raise bad
    return host_name(url) if url.port is None else host_and_port(host_name(url), url.port)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------- regions
class BoxRegion(_Strict):
    type: Literal["box"]
    box: Annotated[list[float], Field(min_length=4, max_length=4, description="pixel x1, y1, x2, y2")]


class MaskRegion(_Strict):
    type: Literal["mask"]
    png_base64: str = Field(
        description="a PNG of the image's size, base64; non-zero (or alpha) pixels are inside"
    )


class PointRegion(_Strict):
    type: Literal["point"]
    point: Annotated[list[float], Field(min_length=2, max_length=2, description="pixel x, y")]
    radius: float = Field(8.0, gt=0, description="the point counts as a disk of this radius (pixels)")


RegionSpec = Annotated[Union[BoxRegion, MaskRegion, PointRegion], Field(discriminator="type")]


# ---------------------------------------------------------------------------------- messages
class ContentPart(BaseModel):
    """``{"type": "text", "text": ...}`` or ``{"type": "image_url", "image_url": {"url": ...}}``."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: Optional[str] = None
    image_url: Optional[Union[str, dict[str, Any]]] = None

    @model_validator(mode="after")
    def _check(self) -> ContentPart:
        if self.type == "text":
            if self.text is None:
                raise ValueError("a 'text' content part needs a 'text' string")
        elif self.type == "image_url":
            url = self.image_url.get("url") if isinstance(self.image_url, dict) else self.image_url
            if not isinstance(url, str) or not url:
                raise ValueError(
                    "an 'image_url' content part needs 'image_url': {'url': 'data:image/...;base64,...'}"
                )
        else:
            raise ValueError(f"unsupported content part type {self.type!r}: use 'text' and 'image_url'")
        return self

    @property
    def url(self) -> str:
        return self.image_url["url"] if isinstance(self.image_url, dict) else str(self.image_url)


def _text_to_parts(content: Any) -> Any:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[Optional[list[ContentPart]], BeforeValidator(_text_to_parts)] = Field(
        None, description="a string, or a list of content parts (text and one image_url)"
    )


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI chat completion request; unknown OpenAI fields (``top_p``, ``seed``...) are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(description="the served model id (see GET /v1/models)")
    messages: list[ChatMessage] = Field(min_length=1)
    regions: list[RegionSpec] = Field(default_factory=list, description="<regionK> is regions[K-1]")
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy")
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    n: int = 1
    stream: bool = False
    stream_options: Optional[StreamOptions] = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"only n=1 is supported, got {value}")
        return value


# ---------------------------------------------------------------------------------- responses
def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "regiongpt"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def chunk(
    cid: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: Optional[str] = None,
    usage: Optional[Usage] = None,
    with_choice: bool = True,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` object of a streamed answer."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}] if with_choice else [],
    }
    if usage is not None:
        body["usage"] = usage.model_dump()
    return body
