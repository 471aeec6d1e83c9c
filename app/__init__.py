"""Canopy."""

import os as _os

# Prometheus multiprocess mode (`canopy serve --workers N`) writes samples to files in this
# directory from the moment a metric is defined, at import: it has to exist before anything
# of the app is imported, or a directory named by the operator but not yet made fails the start.
if _os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _os.makedirs(_os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
