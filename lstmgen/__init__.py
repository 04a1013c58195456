"""lstmgen: LSTM text generation — tokenizers, model, data, training, evaluation, sampling, int8."""
