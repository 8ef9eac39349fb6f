"""``unif2ace serve`` / ``unif2ace web``: the OpenAI-compatible HTTP server and its web demo page.

Examples::

    unif2ace serve --model runs/bundle --port 8000            # API on http://127.0.0.1:8000/v1, demo at /
    UNIF2ACE_API_KEY=secret unif2ace serve --host 0.0.0.0     # exposed: always set a key
    unif2ace web --model runs/bundle --open                   # same server, opens the demo in a browser
"""

from __future__ import annotations

import argparse
import logging

from unif2ace.serving.settings import API_KEY_ENV, ServerSettings

_INSTALL_HINT = "the server needs the serve extra: pip install 'unif2ace[serve]'"


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model bundle folder (default: the shipped model)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 = any free port)")
    p.add_argument("--api-key", default=None, help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV})")
    p.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: CUDA when available)")
    p.add_argument("--dtype", default=None, help="float32 (default), bfloat16 or float16")
    p.add_argument("--max-queue", type=int, default=64, help="requests that may wait for the model (then 503)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request, queueing included (then 504)")
    p.add_argument("--max-body-mb", type=float, default=25.0, help="largest request body in MiB (then 413)")
    p.add_argument("--max-image-side", type=int, default=4096, help="longest side of an uploaded image (then 400)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 on a busy CPU)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` and ``web`` commands."""
    p = subparsers.add_parser("serve", help="OpenAI-compatible HTTP API (and the web demo at /)")
    _add_options(p)
    p.set_defaults(func=_serve, open_browser=False)
    p = subparsers.add_parser("web", help="the web demo: the same server, printing (or opening) the page URL")
    _add_options(p)
    p.add_argument("--open", dest="open_browser", action="store_true", help="open the page in the default browser")
    p.set_defaults(func=_serve)


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """Server settings from the command line (API key falls back to the environment)."""
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    if not args.max_body_mb > 0:
        raise ValueError(f"--max-body-mb must be positive, got {args.max_body_mb}")
    return ServerSettings.from_env(
        api_key=args.api_key,
        max_queue=args.max_queue,
        request_timeout_s=args.timeout,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_image_side=args.max_image_side,
    )


def _serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    try:
        import uvicorn

        from unif2ace.serving.app import create_app
    except ImportError:
        raise ValueError(_INSTALL_HINT) from None
    from unif2ace import Unif2acePipeline

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pipeline = Unif2acePipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    if args.host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        logging.getLogger("unif2ace.serve").warning(
            "binding %s without an API key: anyone who can reach this port can use the model (set %s)",
            args.host,
            API_KEY_ENV,
        )
    app = create_app(pipeline, settings)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    server = uvicorn.Server(config)
    _announce_when_started(server, args.host, f"{pipeline.name} ({pipeline.model_hash[:12]})", args.open_browser)
    server.run()
    return 0


def _announce_when_started(server, host: str, what: str, open_browser: bool) -> None:
    """Print the real URL (``--port 0`` picks one) once the socket is bound; open it in a browser if asked."""
    import threading
    import time
    import webbrowser

    def wait() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]
            shown = f"[{host}]" if ":" in host else host
            print(f"serving {what}: API http://{shown}:{port}/v1, demo page http://{shown}:{port}/", flush=True)
            if open_browser:
                webbrowser.open(f"http://{shown}:{port}/")

    threading.Thread(target=wait, daemon=True).start()
