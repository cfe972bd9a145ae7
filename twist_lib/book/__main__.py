"""``python -m twist_lib.book list|run|strip|publish|build ...``: see :mod:`twist_lib.book.cli`."""
import sys

from .cli import main

sys.exit(main())
