"""Command line for people without the UI: `lstmgen` once installed, `python -m lstmgen` in a checkout.

    python -m lstmgen generate --model char-shakespeare --prompt "ROMEO:" --temperature 0.8 --length 300 [--int8] [--seed N]
    python -m lstmgen evaluate --model char-shakespeare --split val [--int8] [--data DIR]
    python -m lstmgen export --onnx char-shakespeare out/ [--weights float,int8]   (one stateful step, ONNX)
    python -m lstmgen cells --model char [--no-hub] [--all] [--recompute] [--write] [--data DIR]   (the best cells)

--model takes a preset, a Hub repo id or a local folder (local folder, else Hub, else bundled weights).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from .core.data import DATA_ENV, read_corpus
from .core.operator_settings import operator_settings
from .core.evaluate import evaluate
from .engine.generate import GenerationStats, text_pieces
from .hub import resolve
from .engine.ort import OrtModel
from .core.records import find, prepare
from .core.sampling import SamplingConfig
from .core.settings import add_flags, checked, given


def run_politely(main, argv=None) -> int:
    """Run a command-line `main`; turn any failure into one line on stderr and exit code 2 (130 on Ctrl-C)."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except Exception as error:
        if operator_settings().debug:
            raise
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        known = type(error).__module__.startswith("lstmgen") or isinstance(error, (OSError, ValueError))
        prefix = "error" if known else f"error ({type(error).__name__})"
        hint = "" if known else " [LSTMGEN_DEBUG=1 shows the traceback]"
        print(f"{prefix}: {text}{hint}", file=sys.stderr)
        return 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lstmgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("export", help="ONNX export of one decoding step (python -m lstmgen export -h)")
    commands.add_parser("cells", help="the best cell per text feature (python -m lstmgen cells -h)")
    for name in ("generate", "evaluate"):
        command = commands.add_parser(name)
        command.add_argument("--model", required=True, help="preset, Hub repo id or local folder")
        command.add_argument("--revision", help="Hub revision (branch, tag or commit)")
        command.add_argument("--int8", action="store_true", help="use the dynamically int8-quantized copy")
        command.add_argument("--no-hub", action="store_true", help="skip the Hub: local folder or bundled weights")
    generate = commands.choices["generate"]
    generate.add_argument("--prompt", default="")
    add_flags(generate, SamplingConfig, "sampling")
    evaluate_ = commands.choices["evaluate"]
    evaluate_.add_argument("--split", choices=["val", "test"], default="val")
    evaluate_.add_argument("--data", help=f"folder holding the preset's corpus (default ${DATA_ENV}, then data/)")
    evaluate_.add_argument("--streams", type=int, help="parallel streams (default: the preset's)")
    evaluate_.add_argument("--limit", type=int, help="evaluate only the first N tokens of the split")
    return parser.parse_args(argv)


README_SNIPPET = '''\
import numpy as np, onnxruntime as ort

session = ort.InferenceSession("{path}", providers=["CPUExecutionProvider"])
h = np.zeros(({layers}, 1, {hidden}), np.float32); c = np.zeros_like(h)
token = np.array([[{token}]], np.int64)  # a token id of the model's tokenizer
for _ in range(20):  # greedy
    logits, h, c = session.run(None, {{"token": token, "h": h, "c": c}})
    token[0, 0] = int(logits.argmax())
    print(int(token[0, 0]))
'''


def export_command(argv) -> int:
    """`python -m lstmgen export --onnx MODEL OUT`: lstmgen.engine.graph's files, for a model resolved here (the
    exporter itself knows no Hub)."""
    from .engine.graph import DEFAULT_BLOCK, WEIGHT_KINDS, export
    from .engine.graph import __doc__ as export_doc

    parser = argparse.ArgumentParser(prog="python -m lstmgen export", description=export_doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", nargs=2, metavar=("MODEL", "OUT"), required=True,
                        help="a preset, Hub repo id or local folder, and the folder to write")
    parser.add_argument("--weights", default="float,int8", help=f"comma-separated: {', '.join(WEIGHT_KINDS)}")
    parser.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="int8/int4: inputs per weight scale")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    parser.add_argument("--no-hub", action="store_true", help="skip the Hub: local folder or bundled weights")
    args = parser.parse_args(argv)
    name, out = args.onnx
    kinds = tuple(k.strip() for k in args.weights.split(",") if k.strip())
    unknown = [k for k in kinds if k not in WEIGHT_KINDS]
    if unknown:
        parser.error(f"unknown --weights {', '.join(unknown)}: choose from {', '.join(WEIGHT_KINDS)}")
    with contextlib.redirect_stdout(sys.stderr):  # from_pretrained prints to stdout
        loaded = resolve(name, revision=args.revision, use_hub=not args.no_hub)
    model = loaded.model
    paths = export(model, out, kinds, block=args.block)
    token = loaded.tokenizer.encode("the").ids[:1] or [0]
    (Path(out) / "config.json").write_text(json.dumps(
        {"source": loaded.source, "vocab_size": model.vocab_size, "num_layers": model.num_layers,
         "hidden_size": model.hidden_size, "files": {k: p.name for k, p in zip(kinds, paths)}}, indent=2))
    for kind, path in zip(kinds, paths):
        print(f"{kind}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    print("\nRun it with ONNX Runtime (pip install onnxruntime):\n")
    print(README_SNIPPET.format(path=paths[0], layers=model.num_layers, hidden=model.hidden_size, token=token[0]))
    return 0


def cells_command(argv) -> int:
    """`python -m lstmgen cells --model MODEL`: the cells that track text features best (lstmgen.inside), read
    from the model's cells.json or measured on its held-out text; `--write` stores cells.json."""
    from .core.evaluate import HELD_OUT_SLICE_TOKENS
    from .inside import TOP, held_out_ids, held_out_source, load_cells, table, write_cells_json

    parser = argparse.ArgumentParser(prog="python -m lstmgen cells",
                                     description="the cells that track text features best, per feature")
    parser.add_argument("--model", required=True, help="preset, Hub repo id or local folder")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    parser.add_argument("--no-hub", action="store_true", help="skip the Hub: local folder or bundled weights")
    parser.add_argument("--data", help="folder holding the preset's corpus (where cells.json must be computed)")
    parser.add_argument("--all", action="store_true", help=f"show the best {TOP} cells per feature, not only the first")
    parser.add_argument("--recompute", action="store_true", help="ignore cells.json and measure now")
    parser.add_argument("--write", action="store_true",
                        help="measure on the held-out text and store cells.json in the model's folder")
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # from_pretrained prints to stdout
        loaded = resolve(args.model, revision=args.revision, use_hub=not args.no_hub)
    print(f"# {loaded.source}", file=sys.stderr)
    record = find(loaded.preset or args.model)
    if args.write:
        ids = held_out_ids(record, loaded.tokenizer, args.data) if record is not None else None
        if not ids:
            print("error: --write needs the preset's corpus (--data DIR) giving this model's tokenizer",
                  file=sys.stderr)
            return 2
        path = write_cells_json(loaded.folder, loaded.model, loaded.tokenizer, ids, held_out_source(len(ids)))
        print(f"# wrote {path}", file=sys.stderr)
    folder = None if args.recompute else loaded.folder
    cells = load_cells(folder, loaded.model, loaded.tokenizer, record, args.data, max_tokens=HELD_OUT_SLICE_TOKENS)
    print(table(cells, TOP if args.all else 1))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["export"]:
        return export_command(argv[1:])
    if argv[:1] == ["cells"]:
        return cells_command(argv[1:])
    args = parse_args(argv)
    # Checked before loading anything, with the limits the app uses.
    sampling = checked(SamplingConfig, **given(args, SamplingConfig)) if args.command == "generate" else None
    # stdout carries only the generated text or the JSON report: huggingface_hub's from_pretrained
    # prints "Loading weights from local directory" there.
    with contextlib.redirect_stdout(sys.stderr):
        loaded = resolve(args.model, revision=args.revision, use_hub=not args.no_hub)
    print(f"# {loaded.source}" + (" (int8)" if args.int8 else ""), file=sys.stderr)
    if args.command == "generate":  # on ONNX Runtime, as the app generates
        # One text at a time: the pool may spin between steps (the app's alternating models must not).
        model = OrtModel(loaded.model, "int8" if args.int8 else "float", spinning=True)
        stats = GenerationStats()
        sys.stdout.write(args.prompt)
        for piece in text_pieces(model, loaded.tokenizer, args.prompt, sampling, stats):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        if stats.unknown:
            print(f"# not in the vocabulary: {stats.unknown}", file=sys.stderr)
        print(f"# {stats.new_tokens} tokens, first after {stats.first_token_s * 1000:.0f} ms, "
              f"{stats.tokens_per_s:.0f} tokens/s", file=sys.stderr)
        return 0
    record = find(loaded.preset or args.model)
    if record is None:
        print("error: evaluate needs a preset's model (its metrics.json names the preset)", file=sys.stderr)
        return 2
    data = prepare(record, read_corpus(record.corpus, args.data))
    if data.tokenizer.state() != loaded.tokenizer.state():
        # Its ids would mean other tokens to this model: the figures would be silently wrong.
        where = args.data or "the default data folders"
        print(f"error: the corpus in {where} does not give this model's tokenizer ({data.tokenizer.vocab_size} tokens, the "
              f"model has {loaded.tokenizer.vocab_size}); evaluate on the corpus the model was trained on",
              file=sys.stderr)
        return 2
    ids = data.val_ids if args.split == "val" else data.test_ids
    if ids is None:
        print(f"error: {record.long_name} has no {args.split} split", file=sys.stderr)
        return 2
    per_tokens = data.val_per_tokens if args.split == "val" else None
    chars = data.val_chars if args.split == "val" else None
    if args.limit:
        ids, per_tokens, chars = ids[: args.limit], None, (args.limit if chars else None)
    model = OrtModel(loaded.model, "int8") if args.int8 else loaded.model  # float: torch's batched forward
    result = evaluate(model, ids, args.streams or record.train.eval_batch_size, record.train.eval_seq_len,
                      num_chars=chars, per_tokens=per_tokens)
    print(json.dumps({"model": loaded.source, "int8": args.int8, "split": args.split, **result.as_dict()}, indent=2))
    return 0


def console() -> int:
    """The `lstmgen` command (an installed console script): `python -m lstmgen`."""
    return run_politely(main)


def train_console() -> int:
    """The `lstmgen-train` command (an installed console script): lstmgen.training.command, as train_space.py runs it."""
    from .training.command import main as train

    return run_politely(train)


if __name__ == "__main__":
    sys.exit(console())
