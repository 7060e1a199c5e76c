"""``python -m mlx_stack.gateway --routes FILE --host H --port P`` (the key in $MLX_STACK_GATEWAY_KEY)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

KEY_ENV = "MLX_STACK_GATEWAY_KEY"
OPEN_FILES = 16384  # wanted soft RLIMIT_NOFILE (macOS starts processes at 256)


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlx_stack.gateway", description=__doc__)
    parser.add_argument("--routes", required=True, type=Path, help="the routes file rendered by mlx-stack")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--home", type=Path, default=None,
                        help="the stack's home (default: the routes file's folder's parent)")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate chain: https (with --tls-key)")
    parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    args = parser.parse_args(argv)
    # Tiers the front door starts on demand inherit its environment: not the key.
    key = os.environ.pop(KEY_ENV, "")
    if len(key) < 16:
        beyond = "" if is_loopback(args.host) else f" (serving on {args.host}, beyond this Mac, needs it)"
        sys.stderr.write(f"front door: ${KEY_ENV} must hold the stack key (16+ characters){beyond}\n")
        return 2
    from mlx_stack.system.tls import tls_problem

    problem = tls_problem(args.tls_cert, args.tls_key)
    if problem is not None:
        sys.stderr.write(f"front door: {problem}\n")
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s front-door: %(message)s")
    from mlx_stack.gateway.app import FrontDoor
    from mlx_stack.gateway.routes_file import RoutesFile
    from mlx_stack.system.limits import raise_open_files

    try:
        routes = RoutesFile(args.routes, key)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"front door: cannot read the routes file: {exc}\n")
        return 3
    import uvicorn

    door = FrontDoor(routes, key, home=args.home or args.routes.resolve().parent.parent)
    before, after = raise_open_files(OPEN_FILES)
    if 0 <= after < door.connections.max_open * 2:  # each client connection may hold an upstream one
        door.connections.max_open = max(64, after // 2 - 64)
        logging.getLogger("mlx_stack.front_door").warning(
            "open-file limit %d (was %d): at most %d client connections", after, before,
            door.connections.max_open)
    if not is_loopback(args.host) and not args.tls_cert:
        logging.getLogger("mlx_stack.front_door").warning(
            "serving on %s without TLS: requests and the key cross the network in clear text "
            "(set gateway.tls-cert and gateway.tls-key)", args.host)
    tls = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key} if args.tls_cert else {}
    uvicorn.run(
        door, host=args.host, port=args.port, **tls,
        loop="uvloop" if _have("uvloop") else "asyncio",
        http=door.connections.protocol(_http_protocol()),
        lifespan="on", access_log=False, log_level="warning",
        server_header=False, date_header=False, timeout_keep_alive=30,
    )
    return 0


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def _http_protocol() -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol (the relay's fast path), else its portable h11 one;
    MLX_STACK_GATEWAY_HTTP=h11 picks h11 (how the portable path is tested)."""
    if os.environ.get("MLX_STACK_GATEWAY_HTTP") != "h11" and _have("httptools"):
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return H11Protocol


if __name__ == "__main__":
    raise SystemExit(main())
