"""The Gradio app: the named API over the served models and a studio, and the page that shows them."""

from ..core.package import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "api": ("App",),
    "blocks": ("build_demo", "launch"),
})
