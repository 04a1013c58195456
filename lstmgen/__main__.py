"""Command line for people without the UI.

    python -m lstmgen generate --model char-shakespeare --prompt "ROMEO:" --temperature 0.8 --length 300 [--int8] [--seed N]
    python -m lstmgen evaluate --model char-shakespeare --split val [--int8]

--model takes a preset, a Hub repo id or a local folder (local folder, else Hub, else bundled weights).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from .data import load_text
from .evaluate import evaluate
from .generate import GenerationStats, SamplingConfig, stream
from .hub import resolve
from .presets import PRESETS, corpus_files, prepare
from .quantize import quantize_dynamic


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lstmgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("generate", "evaluate"):
        command = commands.add_parser(name)
        command.add_argument("--model", required=True, help="preset, Hub repo id or local folder")
        command.add_argument("--revision", help="Hub revision (branch, tag or commit)")
        command.add_argument("--int8", action="store_true", help="use the dynamically int8-quantized copy")
        command.add_argument("--no-hub", action="store_true", help="skip the Hub: local folder or bundled weights")
    generate = commands.choices["generate"]
    generate.add_argument("--prompt", default="")
    generate.add_argument("--temperature", type=float, default=0.8)
    generate.add_argument("--length", type=int, default=300, help="new tokens")
    generate.add_argument("--top-k", type=int, default=0)
    generate.add_argument("--top-p", type=float, default=1.0)
    generate.add_argument("--seed", type=int)
    evaluate_ = commands.choices["evaluate"]
    evaluate_.add_argument("--split", choices=["val", "test"], default="val")
    evaluate_.add_argument("--data", help="folder holding the preset's corpus (default ../shared/data)")
    evaluate_.add_argument("--streams", type=int, help="parallel streams (default: the preset's)")
    evaluate_.add_argument("--limit", type=int, help="evaluate only the first N tokens of the split")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # stdout carries only the generated text or the JSON report: huggingface_hub's from_pretrained
    # prints "Loading weights from local directory" there.
    with contextlib.redirect_stdout(sys.stderr):
        loaded = resolve(args.model, revision=args.revision, use_hub=not args.no_hub)
    model = quantize_dynamic(loaded.model) if args.int8 else loaded.model
    print(f"# {loaded.source}" + (" (int8)" if args.int8 else ""), file=sys.stderr)
    if args.command == "generate":
        if not 0 <= args.temperature <= 2 or args.length < 1:
            print("temperature must be in [0, 2] and length at least 1", file=sys.stderr)
            return 2
        stats = GenerationStats()
        sys.stdout.write(args.prompt)
        for piece in stream(model, loaded.tokenizer, args.prompt, args.length,
                            SamplingConfig(args.temperature, args.top_k, args.top_p, args.seed), stats):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        if stats.unknown:
            print(f"# not in the vocabulary: {stats.unknown}", file=sys.stderr)
        print(f"# {stats.new_tokens} tokens, first after {stats.first_token_s * 1000:.0f} ms, "
              f"{stats.tokens_per_s:.0f} tokens/s", file=sys.stderr)
        return 0
    preset = PRESETS.get(loaded.preset or args.model)
    if preset is None:
        print("evaluate needs a preset's model (its metrics.json names the preset)", file=sys.stderr)
        return 2
    files = corpus_files(preset, args.data)
    data = prepare(preset, load_text(files))
    if data.tokenizer.state() != loaded.tokenizer.state():
        # Its ids would mean other tokens to this model: the figures would be silently wrong.
        print(f"the corpus in {files[0].parent} does not give this model's tokenizer "
              f"({data.tokenizer.vocab_size} tokens, the model has {loaded.tokenizer.vocab_size}); "
              "evaluate on the corpus the model was trained on", file=sys.stderr)
        return 2
    ids = data.val_ids if args.split == "val" else data.test_ids
    if ids is None:
        print(f"{preset.name} has no {args.split} split", file=sys.stderr)
        return 2
    per_tokens = data.val_per_tokens if args.split == "val" else None
    chars = data.val_chars if preset.kind == "char" and args.split == "val" else None
    if args.limit:
        ids, per_tokens, chars = ids[: args.limit], None, (args.limit if chars else None)
    result = evaluate(model, ids, args.streams or preset.eval_batch_size, preset.eval_seq_len,
                      num_chars=chars, per_tokens=per_tokens)
    print(json.dumps({"model": loaded.source, "int8": args.int8, "split": args.split, **result.as_dict()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
