"""Many lesions: worklists (CSV, JSON lines, DeepLesion's DL_info.csv), annotating them all resumably, tables.

Modules:
    items: ``WorklistItem`` and ``read_worklist`` (the documented format).
    run: ``annotate_worklist`` (``lesanet annotate-list``: batches, state file, one SR per study) and
        ``write_outputs``.
    summary: summary.csv and the model-against-reader agreement (table and plot).
"""

from __future__ import annotations

from .items import WorklistItem, read_worklist
from .run import WorklistRun, annotate_worklist, write_outputs
from .summary import agreement, write_summary

__all__ = ["WorklistItem", "WorklistRun", "agreement", "annotate_worklist", "read_worklist", "write_outputs",
           "write_summary"]
