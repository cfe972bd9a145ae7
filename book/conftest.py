"""pytest configuration for ``pytest --nbval-lax book/``: run every notebook at the ``smoke``
profile (seconds) unless ``TWIST_PROFILE`` already says otherwise. The notebooks read it through
their ``profile`` parameter (empty = ``$TWIST_PROFILE``, else ``cpu``); kernels started by nbval
inherit this process's environment."""
import os

os.environ.setdefault("TWIST_PROFILE", "smoke")
