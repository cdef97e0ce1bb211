"""OpenAI-style errors: the exception, the JSON answer, pydantic's messages, the body-size cap."""

from __future__ import annotations

from typing import Any, Optional

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from regiongpt.serve.schemas import ErrorResponse


class APIError(Exception):
    """An error answered as OpenAI-style JSON: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


ERROR_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    504: "timeout_error",
    500: "server_error",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 504)
}


def error_response(
    status: int,
    message: str,
    type: Optional[str] = None,
    param: Optional[str] = None,
    code: Optional[str] = None,
) -> JSONResponse:
    body = {
        "message": message,
        "type": type or ERROR_TYPES.get(status, "invalid_request_error"),
        "param": param,
        "code": code,
    }
    return JSONResponse({"error": body}, status_code=status)


def describe_validation(exc: RequestValidationError) -> tuple[str, Optional[str]]:
    """``messages[0].content[1]: unsupported content part type ...`` from pydantic's errors."""
    parts = []
    for error in exc.errors()[:3]:
        loc: list[str] = []
        for item in (
            error.get("loc", ())[1:] if error.get("loc", ("",))[0] == "body" else error.get("loc", ())
        ):
            if isinstance(item, int):
                loc.append(f"[{item}]")
            elif not loc or loc[-1].lstrip(".") != str(item):  # drop union tags repeated after a field
                loc.append(f".{item}")
        where = "".join(loc).lstrip(".") or "body"
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append((where, f"{where}: {message}"))
    return "; ".join(text for _, text in parts) or "invalid request", parts[0][0] if parts else None


class BodyLimitMiddleware:
    """Answers 413 when a request body exceeds ``max_bytes`` (checked on the bytes actually read)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            total += len(body)
            more = message.get("more_body", False)
            if total > self.max_bytes:
                while more and total <= 8 * self.max_bytes:  # drain, so the client reads our answer
                    message = await receive()
                    total += len(message.get("body", b""))
                    more = message.get("more_body", False) and message["type"] != "http.disconnect"
                response = error_response(
                    413, f"request body exceeds the limit of {self.max_bytes} bytes", code="request_too_large"
                )
                return await response(scope, receive, send)
            chunks.append(body)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
