"""What the cells track: text features, the cells' states token by token, and the best cell for each feature."""

from ..core.package import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "features": ("FEATURES", "Feature", "token_features", "features_for", "text_features", "token_texts"),
    "states": ("cell_states", "sampled_states", "INT8_STATE_TOLERANCE"),
    "cells": ("rank_cells", "correlations", "sentence", "compute_cells", "write_cells_json", "read_cells_json",
              "load_cells", "held_out_ids", "held_out_source", "table", "CELLS_FILE", "STARTUP_TOKENS", "TOP",
              "INT8_R_TOLERANCE"),
})

