"""Pooled models: one-stage mixed models and sensitivity analyses."""


class NotEstimable(Exception):
    """The model cannot be fitted on these data (say why)."""
