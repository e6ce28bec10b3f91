"""``mslesion`` command line: one subcommand per stage, no logic of its own."""

from __future__ import annotations

import argparse
import sys

from mslesion import __version__
from mslesion.cli.data import add_prep, add_prep3d, add_split, add_synth
from mslesion.cli.evaluate import add_evaluate, add_export, add_postprocess, add_predict, add_score
from mslesion.cli.report import add_demo, add_report
from mslesion.cli.train import add_models, add_train, add_train3d, add_tune

__all__ = ["main"]


def _error_line(exc: BaseException) -> str:
    """An expected failure as one line: ``<path or value>: <what is wrong>; <what to do>``."""
    if isinstance(exc, FileExistsError) and exc.filename and exc.strerror:  # raised by the OS, not by mslesion
        text = f"{exc.filename}: already exists; choose another path, or move it away first"
    else:
        text = str(exc)
    return " ".join(text.split())  # messages quoting a file's text may hold newlines


def _debug_from_env() -> bool:
    import os

    return os.environ.get("MSLESION_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mslesion`` console command.

    Expected failures (a missing run, a damaged file, an unknown model, an output
    that may not be written, ...) print one line ``mslesion: error: ...`` on
    stderr and return 2; ``--debug`` or ``MSLESION_DEBUG=1`` lets them raise,
    with the traceback. mslesion's own warnings print as ``mslesion: warning: ...``.
    """
    import warnings

    from mslesion import QUIET_TENSORFLOW
    from mslesion.env.quiet_import import import_tensorflow
    from mslesion.errors import MslesionError, MslesionWarning

    # the subcommands' options come from modules that import TensorFlow: import it first, filtered
    import_tensorflow(quiet=QUIET_TENSORFLOW and not _debug_from_env() and "--debug" not in (argv or sys.argv))
    parser = argparse.ArgumentParser(prog="mslesion", description="MS lesion segmentation toolkit")
    parser.add_argument("--version", action="version", version=f"mslesion {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of one line (also MSLESION_DEBUG=1)")  # fmt: skip
    subparsers = parser.add_subparsers(required=True, metavar="command")
    for add in (add_synth, add_prep, add_split, add_models, add_train, add_tune, add_evaluate, add_score,
                add_postprocess, add_predict, add_export, add_report, add_demo, add_prep3d, add_train3d):
        add(subparsers)
    args = parser.parse_args(argv)
    debug = args.debug or _debug_from_env()
    with warnings.catch_warnings():  # restores warnings.showwarning when the command ends
        default_show = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, MslesionWarning) and not debug:
                print(f"mslesion: warning: {_error_line(message)}", file=sys.stderr)
            else:
                default_show(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            return int(args.run(args) or 0)
        except (MslesionError, FileExistsError) as exc:
            if debug:
                raise
            print(f"mslesion: error: {_error_line(exc)}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
