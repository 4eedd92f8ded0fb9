"""Harmonization: per-study rule files (data, not code) -> one common, validated schema."""
