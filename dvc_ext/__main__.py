"""``python -m dvc_ext`` is the ``dvc-ext`` command."""

import sys

from dvc_ext.cli import main

if __name__ == "__main__":
    sys.exit(main())
