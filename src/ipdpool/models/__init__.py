"""Pooled models: one-stage mixed models and sensitivity analyses."""
