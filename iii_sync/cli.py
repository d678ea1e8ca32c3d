"""The ``iii-sync`` command line.

``iii-sync engine`` runs the embedded engine in the foreground until Ctrl-C or
SIGTERM, then stops it cleanly; a second signal ends the process at once.
"""

import argparse
import logging
import signal
import sys
import threading
from typing import Any, List, Optional

_LOG_LEVELS = ("debug", "info", "warning", "error")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iii-sync", description=__doc__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    engine = commands.add_parser(
        "engine", help="run a local iii engine for development and tests"
    )
    engine.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    engine.add_argument(
        "--port",
        type=int,
        default=49134,
        help="worker WebSocket port, 0 for any (default: %(default)s)",
    )
    engine.add_argument(
        "--http-port",
        type=int,
        default=3111,
        help="http trigger port, 0 for any (default: %(default)s)",
    )
    engine.add_argument(
        "--log-level",
        default="info",
        choices=_LOG_LEVELS,
        help="logging level (default: %(default)s)",
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command line; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "engine":
        parser.print_help()
        return 2
    return _run_engine(args)


def _run_engine(args: argparse.Namespace) -> int:
    # The application configures logging; the library never does.
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # websockets logs every connection at INFO; the engine has its own lines.
    logging.getLogger("websockets").setLevel(
        max(logging.WARNING, logging.getLogger().level)
    )
    from .engine import LocalEngine

    engine = LocalEngine(host=args.host, port=args.port, http_port=args.http_port)
    try:
        engine.start()
    except OSError as exc:
        logging.getLogger(__name__).error("cannot start the engine: %s", exc)
        return 1

    stopping = threading.Event()
    _on_signals(stopping)
    print(f"iii engine on {engine.url}, http triggers on {engine.http_url}", flush=True)
    while not stopping.wait(1.0):
        pass
    engine.stop()
    return 0


def _on_signals(stopping: threading.Event) -> None:
    def handle(signum: int, frame: Any) -> None:
        # The first signal asks for a clean stop; the next one is fatal.
        stopping.set()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGINT, handle)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, handle)


if __name__ == "__main__":
    sys.exit(main())
