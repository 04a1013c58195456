"""How often the int8 copy makes the float model's choice: the coupled draw against the independent,
id-ordered inverse CDF it replaced, on the shipped models.

    python -m bench.fidelity [--seeds 20] [--length 300] [--temperature 0.8]

For each model and seed, a side-by-side run from the tab's first example prompt; then the int8 model is
fed the float model's text (teacher-forced, one batched call) with the run's random numbers, and each
sampler's share of steps with the same choice is counted. Writes bench/fidelity.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from lstmgen.serve import service
from lstmgen.core.sampling import RandomNumbers, distribution, draw


def inverse_cdf_same_choice(served, request, result) -> float:
    """The share of steps where the int8 model, drawing on its own with the float draw's uniform number
    (the sampler before the coupling), picks the float model's token."""
    ids = request.prompt_ids + result.float.ids[:-1]
    with torch.inference_mode():
        logits = served.int8(torch.tensor([ids]))[0][0, -len(result.float.ids):]
    randomness = RandomNumbers(request.sampling.seed)
    banned = sorted(served.loaded.tokenizer.special_ids.values())
    same = sum(draw(distribution(logits[t], request.sampling, banned), randomness.next()[0]) == x
               for t, x in enumerate(result.float.ids))
    return same / len(result.float.ids)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--length", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--out", default="bench")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models = service.load_all(use_hub=False)
    report = {}
    for name, served in models.items():
        coupled, independent = [], []
        for seed in range(args.seeds):
            request = service.validate(models, name, served.record.examples[0], temperature=args.temperature,
                                       length=args.length, seed=seed)
            *_, result = service.side_by_side(request)
            coupled.append(result.fidelity["same_choice"])
            independent.append(inverse_cdf_same_choice(served, request, result))
        report[name] = {"coupled_mean": statistics.mean(coupled), "coupled_min": min(coupled),
                        "inverse_cdf_mean": statistics.mean(independent), "inverse_cdf_min": min(independent)}
        print(name, report[name], flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "fidelity.json").write_text(json.dumps({"settings": vars(args), "models": report}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
