"""The OpenAI-compatible HTTP server: ``create_app(engine, model_id, settings)``.

Endpoints: ``POST /v1/chat/completions`` (JSON or SSE stream), ``GET /v1/models``, ``GET /health``,
``GET /openapi.json``. Every client error is an OpenAI-style JSON error with a 4xx status."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from regiongpt.api import RegionGPT
from regiongpt.serve.batching import Batcher, Job, Result, Sampling
from regiongpt.serve.errors import (
    ERROR_RESPONSES,
    APIError,
    BodyLimitMiddleware,
    describe_validation,
    error_response,
)
from regiongpt.serve.inputs import (
    build_regions,
    decode_image,
    fetch_image_bytes,
    image_key,
    parse_messages,
)
from regiongpt.serve.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ModelCard,
    ModelList,
    ServerSettings,
    Usage,
    chunk,
    completion_id,
)

logger = logging.getLogger(__name__)


def create_app(
    engine: RegionGPT, model_id: str = "default", settings: Optional[ServerSettings] = None
) -> FastAPI:
    """A FastAPI app serving ``engine`` as ``model_id``; run it with uvicorn."""
    settings = settings or ServerSettings()
    batcher = Batcher(engine, settings)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="regiongpt",
        summary="OpenAI-compatible chat completions about image regions",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # Swagger/ReDoc pages load scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.batcher, app.state.settings, app.state.model_id = batcher, settings, model_id
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe_validation(exc)
        return error_response(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # the details (paths, values) go to the server log, not to the client
        logger.error("internal error on %s", request.url.path, exc_info=exc)
        return error_response(500, f"internal error ({type(exc).__name__}); details are in the server log")

    async def require_key(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            token.strip().encode(), settings.api_key.encode()
        ):
            raise APIError(
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                type="authentication_error",
                code="invalid_api_key",
            )

    @app.get("/health", summary="Liveness and the served model")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": model_id}

    @app.get(
        "/v1/models", response_model=ModelList, dependencies=[Depends(require_key)], responses=ERROR_RESPONSES
    )
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=model_id, created=created)])

    async def prepare(request: ChatCompletionRequest) -> Job:
        if request.model != model_id:
            raise APIError(
                404,
                f"model {request.model!r} is not served here; this server serves {model_id!r}",
                type="invalid_request_error",
                param="model",
                code="model_not_found",
            )
        max_tokens = (
            request.max_completion_tokens
            or request.max_tokens
            or min(settings.default_max_tokens, settings.max_tokens_limit)
        )
        if max_tokens > settings.max_tokens_limit:
            raise APIError(
                400,
                f"max_tokens {max_tokens} exceeds this server's limit of {settings.max_tokens_limit}",
                param="max_tokens",
            )
        parsed = parse_messages(request)
        data = await fetch_image_bytes(parsed.image_url, settings)

        def encode() -> Any:
            image = decode_image(data, settings)
            regions = build_regions(request.regions, image, settings)
            try:
                return engine.processor.encode(
                    parsed.conversation, image, regions, add_generation_prompt=True
                )
            except ValueError as error:  # tags without regions, unreferenced regions, bad turns
                raise APIError(400, str(error), param="messages") from None

        sample = await asyncio.to_thread(encode)
        job = Job(
            sample,
            image_key(data),
            Sampling(max_tokens, request.temperature, request.top_p),
            asyncio.get_running_loop().create_future(),
            asyncio.Queue() if request.stream else None,
        )
        await batcher.submit(job)
        return job

    def timeout_error() -> APIError:
        return APIError(
            504,
            f"the model did not answer within {settings.request_timeout_s:g} s; retry later "
            "or ask for fewer max_tokens",
            type="timeout_error",
            code="timeout",
        )

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        dependencies=[Depends(require_key)],
        responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
        summary="Chat about <regionK> regions of one image (OpenAI schema + top-level 'regions')",
    )
    async def chat_completions(request: ChatCompletionRequest) -> Any:
        deadline = time.monotonic() + settings.request_timeout_s
        job = await prepare(request)
        if request.stream:
            return await start_stream(job, request, deadline)
        try:
            result: Result = await asyncio.wait_for(asyncio.shield(job.future), deadline - time.monotonic())
        except asyncio.TimeoutError:
            job.cancelled.set()
            raise timeout_error() from None
        except ValueError as error:  # the library refused the inputs
            raise APIError(400, str(error)) from None
        return ChatCompletion(
            model=model_id,
            choices=[
                Choice(message=AssistantMessage(content=result.text), finish_reason=result.finish_reason)
            ],
            usage=usage_of(result),
        )

    async def start_stream(job: Job, request: ChatCompletionRequest, deadline: float) -> StreamingResponse:
        assert job.stream is not None
        try:  # wait for the model to take the request: a 504 is still possible before the headers
            kind, payload = await asyncio.wait_for(job.stream.get(), max(deadline - time.monotonic(), 0.001))
        except asyncio.TimeoutError:
            job.cancelled.set()
            raise timeout_error() from None
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        return StreamingResponse(
            sse(job, (kind, payload), deadline, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def sse(
        job: Job, first: tuple[str, Any], deadline: float, include_usage: bool
    ) -> AsyncIterator[str]:
        cid, created_at = completion_id(), int(time.time())

        def event(body: dict[str, Any]) -> str:
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        def error_event(message: str, type: str, code: Optional[str] = None) -> str:
            return event({"error": {"message": message, "type": type, "param": None, "code": code}})

        assert job.stream is not None
        try:
            yield event(chunk(cid, created_at, model_id, {"role": "assistant", "content": ""}))
            kind, payload = first
            while kind != "done":
                if kind == "text":
                    yield event(chunk(cid, created_at, model_id, {"content": payload}))
                elif kind == "error":
                    yield error_event(f"generation failed: {payload}", "server_error")
                    break
                try:
                    kind, payload = await asyncio.wait_for(job.stream.get(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    yield error_event(timeout_error().message, "timeout_error", "timeout")
                    break
            if kind == "done":
                yield event(chunk(cid, created_at, model_id, {}, finish_reason=payload.finish_reason))
                if include_usage:
                    yield event(
                        chunk(cid, created_at, model_id, {}, usage=usage_of(payload), with_choice=False)
                    )
            yield "data: [DONE]\n\n"
        finally:
            job.cancelled.set()  # a client that went away stops the generation

    return app


def usage_of(result: Result) -> Usage:
    return Usage(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        total_tokens=result.prompt_tokens + result.completion_tokens,
    )
