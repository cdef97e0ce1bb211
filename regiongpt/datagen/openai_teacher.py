"""``openai:URL:MODEL``: any OpenAI-compatible chat completions endpoint as the teacher.

Our own ``regiongpt serve`` reads the region from the top-level ``regions`` field and ``<region1>``
in the text. Other endpoints (hosted VLMs) get the box in the text and, with ``send_crop``, the
crop with context as a second image; they never see the ``regions`` field (strict APIs reject
unknown fields). ``endpoint="auto"`` asks ``GET /models`` whether the server is ours.

Requests retry on 408/409/429/5xx, timeouts and connection errors with exponential backoff and
jitter (``Retry-After`` honoured); a shared :class:`RateLimiter` spaces requests of all threads.
"""

from __future__ import annotations

import base64
import io
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from PIL import Image

from regiongpt.datagen.prompts import GLOBAL_PROMPT, REGION_TAG, box_reference, region_prompt
from regiongpt.datagen.teacher import Caption, RegionRequest, TeacherError, TeacherOptions

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0


class RateLimiter:
    """At most ``rate`` calls of :meth:`wait` per second across threads (0 = no limit)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate < 0:
            raise ValueError(f"rate limit must be >= 0 requests/s, got {rate}")
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self.sleep(slot - now)


def backoff_delay(attempt: int, retry_after: str | None = None) -> float:
    """Seconds before retry ``attempt`` (0-based): ``Retry-After`` if given, else 0.5 s * 2^attempt
    (capped at 30 s) with +-50 % jitter."""
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), 60.0)
        except ValueError:
            pass
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.5, 1.5)


def data_url(image: Image.Image) -> str:
    """The image as ``data:image/jpeg;base64,...`` (quality 95)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class OpenAITeacher:
    """A teacher behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        options: TeacherOptions | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        options = options or TeacherOptions()
        if options.endpoint not in ("auto", "regiongpt", "vlm"):
            raise ValueError(f"endpoint must be auto, regiongpt or vlm, got {options.endpoint!r}")
        self.base_url, self.model, self.options = base_url.rstrip("/"), model, options
        self.name = f"openai:{self.base_url}:{model}"
        self.max_workers = max(1, options.workers)
        self.sleep = sleep
        self.limiter = RateLimiter(options.rate_limit, sleep=sleep)
        headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
        self.client = httpx.Client(timeout=options.timeout, transport=transport, headers=headers)
        self.ours = self._is_regiongpt() if options.endpoint == "auto" else options.endpoint == "regiongpt"

    # ------------------------------------------------------------------ teacher interface
    def global_caption(self, image: Image.Image) -> Caption:
        return self._complete([image], GLOBAL_PROMPT, regions=None)

    def region_caption(self, request: RegionRequest) -> Caption:
        box = request.box
        if self.ours:
            prompt = region_prompt(request.global_caption, request.class_name, REGION_TAG)
            return self._complete([request.image], prompt, regions=[{"type": "box", "box": box.as_list()}])
        crop = self.options.send_crop
        prompt = region_prompt(request.global_caption, request.class_name, box_reference(box, crop))
        return self._complete([request.image, request.crop] if crop else [request.image], prompt, None)

    # ------------------------------------------------------------------ HTTP
    def _complete(self, images: list[Image.Image], prompt: str, regions: list[dict] | None) -> Caption:
        content: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": data_url(i)}} for i in images
        ]
        content.append({"type": "text", "text": prompt})
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.options.max_new_tokens,
            "temperature": 0.0,
        }
        if regions is not None:
            body["regions"] = regions
        response, attempts = self._request("POST", "/chat/completions", body)
        try:
            payload = response.json()
            choice = payload["choices"][0]
            text = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise TeacherError(f"{self.name}: unexpected response {response.text[:200]!r}") from None
        if not isinstance(text, str):
            raise TeacherError(f"{self.name}: the response has no text content")
        meta = {
            "finish_reason": choice.get("finish_reason"),
            "attempts": attempts,
            "endpoint": "regiongpt" if self.ours else "vlm",
        }
        if isinstance(payload.get("usage"), dict):
            meta["usage"] = payload["usage"]
        return Caption(text, meta)

    def _request(self, method: str, path: str, body: dict | None = None) -> tuple[httpx.Response, int]:
        """Send with retries; returns the 2xx response and the number of attempts."""
        url = self.base_url + path
        retries = max(0, self.options.retries)
        for attempt in range(retries + 1):
            self.limiter.wait()
            retry_after = None
            try:
                response = self.client.request(method, url, json=body)
            except httpx.TimeoutException as error:
                problem = f"timed out ({type(error).__name__})"
            except httpx.TransportError as error:
                problem = f"connection failed ({error})"
            else:
                if response.is_success:
                    return response, attempt + 1
                problem = f"HTTP {response.status_code}: {_error_message(response)}"
                if response.status_code not in RETRY_STATUS:
                    raise TeacherError(f"{method} {url}: {problem}", permanent=True)
                retry_after = response.headers.get("retry-after")
            if attempt < retries:
                self.sleep(backoff_delay(attempt, retry_after))
        raise TeacherError(f"{method} {url}: {problem} (gave up after {retries + 1} attempts)")

    def _is_regiongpt(self) -> bool:
        """Whether the endpoint is ``regiongpt serve`` (its models are owned by "regiongpt")."""
        try:
            response, _ = self._request("GET", "/models")
        except TeacherError as error:
            if error.permanent:  # e.g. 404: the endpoint lists no models
                return False
            raise
        try:
            models = response.json().get("data", [])
        except (ValueError, AttributeError):
            return False
        return any(isinstance(m, dict) and m.get("owned_by") == "regiongpt" for m in models)

    def close(self) -> None:
        self.client.close()


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        message = error.get("message") if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        message = None
    return (message or response.text or response.reason_phrase)[:300]
