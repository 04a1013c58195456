"""What a person at the command line sees when something fails: one line naming the problem and the
fix, and a non-zero exit code; the traceback only with LSTMGEN_DEBUG=1."""

from __future__ import annotations

import os
import sys


def run_politely(main, argv=None) -> int:
    """Run a command-line `main`; turn any failure into one line on stderr and exit code 2 (130 on Ctrl-C)."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as error:
        if os.environ.get("LSTMGEN_DEBUG") == "1":
            raise
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        known = type(error).__module__.startswith("lstmgen") or isinstance(error, (OSError, ValueError))
        prefix = "error" if known else f"error ({type(error).__name__})"
        hint = "" if known else " [LSTMGEN_DEBUG=1 shows the traceback]"
        print(f"{prefix}: {text}{hint}", file=sys.stderr)
        return 2
