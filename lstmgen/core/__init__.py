"""What a model is: its shape and weights, tokenizers, corpora, records, sampling, settings, files and figures."""

from .package import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "model": ("LSTMLanguageModel", "ModelConfig"),
    "config": ("TrainConfig",),
    "tokenizers": ("Tokenizer", "CharTokenizer", "WordTokenizer", "SubwordTokenizer", "load_tokenizer"),
    "english": ("basic_english", "basic_english_cased", "Sentences", "casing_table"),
    "data": ("Corpus", "CorpusError", "read_corpus", "load_text", "read_hub_dataset", "batchify", "bptt_batches"),
    "records": ("ModelRecord", "RECORDS", "PRESETS", "find", "new_model", "prepare", "PreparedData"),
    "sampling": ("SamplingConfig", "distribution", "draw", "RandomNumbers", "is_greedy"),
    "settings": ("setting", "checked", "SettingError", "add_flags", "given", "ranges", "from_environment"),
    "operator_settings": ("OperatorSettings", "TrainingLimits", "training_limits"),  # and operator_settings() there
    "files": ("PRETRAINED_DIR", "read_json", "write_json_atomic", "replace_folder"),
    "evaluate": ("score_text", "Score", "Evaluation", "HELD_OUT_SLICE_TOKENS"),  # evaluate() is named like its module: import it from there
})
