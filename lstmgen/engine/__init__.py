"""Generation one step at a time: the step graph, ONNX Runtime, token streams, float beside int8."""

from ..core.package import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "graph": ("step_model", "export", "WEIGHT_KINDS"),
    "ort": ("OrtModel", "OrtStep", "OrtStream"),
    "streams": ("TokenStream", "LogitsStream", "token_stream", "coupled_draw"),
    "generate": ("text_pieces", "generate_ids", "coupled_ids", "GenerationStats", "banned_ids"),
    "compare": ("top_candidates", "fidelity", "kl_divergence"),
})
