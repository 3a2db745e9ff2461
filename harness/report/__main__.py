"""``python -m harness.report compare|report ...``: the two commands without the rest of bench."""
import sys

from harness.report.cli_commands import main

if __name__ == "__main__":  # importing this module (pkgutil.walk_packages) must not run it
    sys.exit(main())
