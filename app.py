"""The Space entry: load the models, then serve lstmgen's Gradio app (lstmgen.app) with its named API.

    python app.py [--model FOLDER_OR_REPO ...] [--no-hub] [--host 127.0.0.1] [--port 7860] [--share]
"""

import os

# Offline-safe defaults, read when gradio and huggingface_hub are imported: without them the server and
# gradio_client look up outside hosts in the background, Client() makes a blocking call to the Hub, and
# launch()'s call to its own local URL can hang behind a proxy.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"]))

import argparse
import threading

import torch

from lstmgen.core.operator_settings import OperatorSettings, environment_help, operator_settings, variable
from lstmgen.serve import service
from lstmgen.serve import studio  # noqa: F401  (decorates its GPU function before anything asks CUDA: docs/deploy.md)


def prepare_runtime() -> None:
    # One thread per request, torch's and each ONNX Runtime session's (lstmgen.engine.ort takes torch's count):
    # the two copies of a side-by-side run alternate, and concurrent requests share the cores.
    torch.set_num_threads(1)


def main(argv=None) -> None:
    settings = operator_settings()
    parser = argparse.ArgumentParser(description=__doc__, epilog=environment_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], metavar="FOLDER_OR_REPO",
                        help="serve this model folder or Hub repo too, in a tab of its own (repeatable; also "
                             f"{variable(OperatorSettings, 'models')}, comma-separated)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", default=os.environ.get("GRADIO_SHARE") == "True")
    parser.add_argument("--hub-timeout", type=float, default=settings.hub_timeout_s,
                        help=f"seconds to wait for the Hub per model ({variable(OperatorSettings, 'hub_timeout_s')})")
    parser.add_argument("--no-hub", action="store_true", help="use the bundled weights without asking the Hub")
    args = parser.parse_args(argv)
    sources = [s.strip() for s in settings.models.split(",") if s.strip()] + args.model
    prepare_runtime()
    # Resolve the models while gradio imports (lstmgen.app imports it), so the Hub's bounded wait costs nothing extra.
    loaded: dict[str, service.ServedModel] = {}
    loader = threading.Thread(target=lambda: loaded.update(
        service.load_all(sources=sources, hub_timeout_s=args.hub_timeout, use_hub=not args.no_hub)))
    loader.start()
    from lstmgen.app import build_demo, launch

    loader.join()
    for name, served in loaded.items():
        why = f" (the Hub was not used: {served.loaded.fallback_reason})" if served.loaded and served.loaded.fallback_reason else ""
        print(f"{name}: {served.loaded.source + why if served.loaded else 'NOT LOADED: ' + served.error}", flush=True)
    _stop_on_sigterm()
    launch(build_demo(loaded), server_name=args.host, server_port=args.port, share=args.share)


def _stop_on_sigterm() -> None:
    """SIGTERM (a Space restarting, `kill`) ends the app like Ctrl-C does, so the visitors' models folder is
    deleted on the way out (the studio registers that with atexit)."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C while starting: stop quietly (the visitors' folder goes with atexit)
        raise SystemExit(130) from None
