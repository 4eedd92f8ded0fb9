"""ipdpool: individual participant data pooled analyses of randomized trials."""

__version__ = "0.1.0"
