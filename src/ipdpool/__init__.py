"""ipdpool: individual participant data pooled analyses of randomized trials.

`ipdpool.lmer` and `ipdpool.glmer` (linear and logistic mixed models on any DataFrame) and
`ipdpool.meta_analysis` are loaded on first use, so that `import ipdpool` stays light (the
workflow imports it at parse time).
"""

__version__ = "0.4.0"
__all__ = ["glmer", "lmer", "meta_analysis"]


def __getattr__(name: str):
    if name == "lmer":
        from .models.api import lmer

        return lmer
    if name == "glmer":
        from .models.glmer import glmer

        return glmer
    if name == "meta_analysis":
        from .meta import meta_analysis

        return meta_analysis
    raise AttributeError(f"module 'ipdpool' has no attribute {name!r}")
