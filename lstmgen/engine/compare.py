"""Two copies of a model side by side: what each expects next, and how faithful int8 is to float32.

Both read whole distributions along a text with one `model(ids)` call per copy (an OrtModel steps it,
a torch model runs it batched).
"""

from __future__ import annotations

import copy

import torch

from ..core.sampling import SamplingConfig, distribution, without_filters
from ..core.tokenizers import Tokenizer
from .generate import primed_detokenizer

VISIBLE = str.maketrans({" ": "␣", "\n": "↵", "\t": "⇥"})


def visible(piece: str) -> str:
    """A token as people can read it in a list: spaces and line breaks shown."""
    return piece.translate(VISIBLE) or "∅"


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) in nats over the last dimension, from log-probabilities (0 · log 0 counted as 0)."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


@torch.inference_mode()
def top_candidates(float_model, int8_model, tokenizer: Tokenizer, prompt_ids: list[int], k: int,
                   config: SamplingConfig, banned=None) -> dict:
    """The k most likely next tokens under each model (the distribution generation would sample from),
    each as a token ("token": spaces and line breaks shown) and as it would be written after `prompt_ids`
    ("text": what the detokenizer adds, cased and spaced as generation writes it), the KL divergence
    between the two distributions, and whether their top choices agree. The divergence
    is taken at the temperature with special tokens masked, before top-k and top-p: those can leave the
    two models different tokens to choose from, and the divergence would then be infinite."""
    inputs = torch.tensor([prompt_ids])
    logits = [model(inputs)[0][0, -1].double() for model in (float_model, int8_model)]
    dists = [distribution(values, config, banned) for values in logits]
    whole = without_filters(config)
    primed = primed_detokenizer(tokenizer, prompt_ids)

    def written(token: int) -> str:
        decode = copy.deepcopy(primed)  # each candidate follows the same text
        return decode(token) + decode.flush()

    def top(probs):
        values, ids = torch.topk(probs, min(k, probs.numel()))
        return [{"token": visible(tokenizer.piece(int(i))), "text": written(int(i)), "probability": float(v)}
                for v, i in zip(values, ids) if v > 0]

    log_p, log_q = (distribution(values, whole, banned).clamp_min(1e-300).log() for values in logits)
    return {"float32": top(dists[0]), "int8": top(dists[1]),
            # KL is never negative; rounding can make a near-zero one slightly so.
            "kl_nats": max(0.0, float(kl_divergence(log_p, log_q))), "same_top1": int(dists[0].argmax()) == int(dists[1].argmax())}


@torch.inference_mode()
def fidelity(float_model, int8_model, prompt_ids: list[int], float_ids: list[int], sampled_probabilities: list[float],
             u_keeps: list[float], config: SamplingConfig, banned=None) -> dict:
    """The int8 model fed the float model's text, with the random numbers the run used:
    - same_choice: share of steps where the coupled int8 draw keeps the float model's token;
    - top1_agreement: share of steps where both models' most likely token is the same;
    - mean_kl_nats: mean KL(float || int8) of the models' own next-token distributions (temperature 1).
    Unlike the length of the texts' common start, none of these depends on where the texts part."""
    steps = len(float_ids)
    if steps == 0:
        return {"same_choice": 1.0, "top1_agreement": 1.0, "mean_kl_nats": 0.0, "steps": 0}
    inputs = torch.tensor([prompt_ids + float_ids[:-1]])
    float_logits = float_model(inputs)[0][0, -steps:].double()
    int8_logits = int8_model(inputs)[0][0, -steps:].double()
    targets = torch.tensor(float_ids)
    q = distribution(int8_logits, config, banned).double()
    q_of_x = q.gather(1, targets[:, None])[:, 0]
    kept = torch.tensor(u_keeps, dtype=torch.float64) * torch.tensor(sampled_probabilities, dtype=torch.float64) < q_of_x
    log_p, log_q = torch.log_softmax(float_logits, -1), torch.log_softmax(int8_logits, -1)
    return {"same_choice": float(kept.double().mean()),
            "top1_agreement": float((float_logits.argmax(-1) == int8_logits.argmax(-1)).double().mean()),
            "mean_kl_nats": max(0.0, float(kl_divergence(log_p, log_q).mean())), "steps": steps}
