"""The front door: mlx-stack's own process on the gateway port (``python -m mlx_stack.gateway``).

Pure ASGI on uvicorn (uvloop + httptools where available): the stack key, ``auto`` and
context-window routing, fallback before the first byte, 4xx passed back untouched,
frozen-tier skip, metrics. Nothing here is imported by the CLI except through
subprocess; the modules import uvicorn and httptools (upstreams: :mod:`h1`), never httpx,
mlx, Typer or Rich.
"""
