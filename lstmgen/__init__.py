"""lstmgen: LSTM text generation — tokenizers, model, data, training, evaluation, sampling, int8.

    import lstmgen
    model = lstmgen.load("someone/char-mine")          # or a local folder; int8=True for the compressed copy
    print(model.generate("ROMEO:", length=200, temperature=0.8))

`import lstmgen` loads nothing else: each name below is imported on first use (lstmgen.core.package).
"""

from .core.package import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "use": ("load", "Model", "CellValues"),
})
