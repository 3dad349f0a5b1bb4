"""Lightning's banners and a few known-harmless warnings, silenced for the length of a run only.

Importing the project changes nothing; a run (``run_benchmark``, ``bench perf``, the studies) enters
:func:`quiet_lightning` and leaves the user's logging levels and warning filters as it found them.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")
HARMLESS_WARNINGS = (
    ".*does not have many workers.*",  # data live in memory: workers would only add start-up cost
    ".*LeafSpec.*",
    ".*smaller than the logging interval.*",
    r".*module\(s\) in eval mode.*",  # frozen teachers are meant to be in eval mode
    ".*sync_dist=True.*",  # logged losses are never read across ranks
)


@contextlib.contextmanager
def quiet_lightning(enabled: bool = True) -> Iterator[None]:
    """Within the block, Lightning logs warnings only (its "GPU available" banners and tips would drown the
    benchmark's own progress display) and the harmless warnings above are hidden. ``enabled=False``
    (``bench run --verbose``) leaves everything as it is."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for message in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
