"""`digitocr` command line: each subcommand lives in its own module with add_parser() and run()."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import DigitocrError

# Subcommand modules, in the order `digitocr --help` lists them.
COMMANDS = ("fetch", "train", "ensemble", "evaluate", "summary", "plot", "report", "export", "serve", "read")
EXIT_USAGE = 2  # bad arguments, bad files, bad images
EXIT_INTERRUPTED = 130  # Ctrl-C, after saving what there was to save


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line on stderr (no usage dump), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> Parser:
    parser = Parser(prog="digitocr", description="Handwritten-digit OCR with the classic MNIST CNN and more.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details (default: off)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except DigitocrError as e:
        print(f"digitocr {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"digitocr {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `digitocr ... | head`
        return 0
    except OSError as e:  # a path the user named cannot be written or read: say which, in one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"digitocr {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
