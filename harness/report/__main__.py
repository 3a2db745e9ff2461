"""``python -m harness.report compare|report ...``: the same commands as ``bench compare|report``."""
import sys

from harness.cli import main

if __name__ == "__main__":  # importing this module (pkgutil.walk_packages) must not run it
    sys.exit(main())
