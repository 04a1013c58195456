"""A record and a text in, a model folder out: the trainer, the one pipeline, the folder it writes, the GPU."""

from ..core.package import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "run": ("train", "TrainCommand", "Trained", "TrainingFailed", "NothingToKeep"),
    "trainer": ("Trainer", "CHECKPOINT_FILE"),
    "folder": ("finalize", "bundle", "model_card", "MODEL_FOLDER"),
    "gpu": ("gpu_function", "compute_device", "on_zerogpu"),
})
