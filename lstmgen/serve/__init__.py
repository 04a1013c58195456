"""What a public server keeps: the served models and their requests, visitors' trainings, web defences."""

from ..core.package import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "service": ("ServedModel", "load_all", "load_source", "validate", "side_by_side", "RequestError"),
    "studio": ("Studio", "TrainingError", "run_training"),
    "web": ("client_key", "Gate", "BodyLimit"),
})
