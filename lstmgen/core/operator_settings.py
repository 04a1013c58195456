"""Every setting the person running lstmgen gives through the environment (LSTMGEN_*), declared once."""

from __future__ import annotations

from dataclasses import dataclass

from .settings import from_environment, setting


@dataclass(frozen=True)
class OperatorSettings:
    """What a server or a command line reads from its environment. Read it with `operator_settings()` when it is
    needed (never at import), so a test or a restarted server sees the environment of now."""

    data: str = setting("", "folder holding the corpora that do not ship (the Harry Potter books); the repository's "
                            "data/ is searched after it", env="LSTMGEN_DATA")
    debug: bool = setting(False, "a failing command prints its traceback, not one line", env="LSTMGEN_DEBUG")
    hub_timeout_s: float = setting(6.0, "seconds to wait for the Hugging Face Hub per model before the bundled "
                                        "weights are used", low=0.0, env="LSTMGEN_HUB_TIMEOUT")
    hub_owner: str = setting("lstmgen", "the Hub account the shipped models are read from", env="LSTMGEN_HUB_OWNER")
    repos: tuple = setting((), "one shipped model's Hub repo, by its long name: LSTMGEN_REPO_CHAR_SHAKESPEARE=me/char",
                           env="LSTMGEN_REPO_*")
    models: str = setting("", "more model folders or Hub repos to serve, each in a tab of its own (comma-separated)",
                          env="LSTMGEN_MODELS")
    ort_spinning: bool = setting(False, "ONNX Runtime's threads spin between steps (faster for one text at a time, "
                                        "slower for a server's alternating models)", env="LSTMGEN_ORT_SPINNING")
    mcp_train: bool = setting(False, "list training among the MCP server's tools", env="LSTMGEN_MCP_TRAIN")
    publish_with_server_token: bool = setting(
        False, "a visitor who is not signed in publishes with this machine's own Hub login (only for an app no "
               "stranger reaches)", env="LSTMGEN_PUBLISH_WITH_SERVER_TOKEN")

    def repo(self, long_name: str) -> str | None:
        """The repo LSTMGEN_REPO_<LONG_NAME> names for a shipped model ("char-shakespeare" -> CHAR_SHAKESPEARE)."""
        key = "".join(c if c.isalnum() else "_" for c in long_name.upper())
        return dict(self.repos).get(key)


@dataclass(frozen=True)
class TrainingLimits:
    """What a visitor's training may take on this server (Train your own, /train). The one place of these limits:
    the check, the UI, the API docs and the docs read them here."""

    min_bytes: int = setting(1_000, "the least text a visitor gives, in UTF-8 bytes", low=1,
                             env="LSTMGEN_TRAIN_MIN_BYTES")
    max_bytes: int = setting(10_000_000, "the most text, in UTF-8 bytes (also the upload and Hub dataset limit)",
                             low=1, env="LSTMGEN_TRAIN_MAX_BYTES")
    min_seconds: int = setting(10, "the shortest training time a visitor picks", low=1, env="LSTMGEN_TRAIN_MIN_SECONDS")
    max_seconds: int = setting(300, "the longest training time", low=1, env="LSTMGEN_TRAIN_MAX_SECONDS")
    max_models: int = setting(4, "visitors' models kept at once (the oldest is deleted first)", low=1,
                              env="LSTMGEN_TRAIN_MAX_MODELS")
    max_waiting: int = setting(8, "trainings waiting behind the running one; one more is refused", low=0,
                               env="LSTMGEN_TRAIN_MAX_WAITING")
    keep_s: float = setting(3600.0, "seconds a visitor's model is kept", low=0.0, env="LSTMGEN_TRAIN_KEEP_S")
    dataset_timeout_s: float = setting(60.0, "seconds to read a Hub dataset a visitor names", low=0.0,
                                       env="LSTMGEN_TRAIN_DATASET_TIMEOUT_S")


@dataclass(frozen=True)
class ServerLimits:
    """What one client of a public server may hold at once, and how the server tells clients apart. A client is
    a signed-in Hugging Face user, else an address (docs/deploy.md: what an anonymous client can cost)."""

    client_requests: int = setting(1, "costly requests one client may have waiting, running or unread: generating or "
                                      "looking inside (together), and training; one more is refused at once", low=1, env="LSTMGEN_CLIENT_REQUESTS")
    unread_keep_s: float = setting(60.0, "seconds a finished request's answer waits to be read before it is dropped",
                                   low=1.0, env="LSTMGEN_UNREAD_KEEP_S")
    trusted_proxies: int = setting(-1, "proxies in front of the app that append the client's address to "
                                       "X-Forwarded-For; the client is the hop that many from the right (-1: 1 on a "
                                       "Hugging Face Space, 0 elsewhere, where the connection's own address counts)",
                                   low=-1, env="LSTMGEN_TRUSTED_PROXIES")
    allowed_origins: str = setting("", "web pages besides the app's own (and huggingface.co on a Space) that may "
                                       "call it from a browser, comma-separated: https://example.org",
                                   env="LSTMGEN_ALLOWED_ORIGINS")
    sessions: int = setting(2_000, "browser sessions whose page state the server keeps (the oldest is dropped "
                                   "first)", low=1, env="LSTMGEN_SESSIONS")
    uploads_per_minute: int = setting(10, "files one client may upload in a minute", low=1,
                                      env="LSTMGEN_UPLOADS_PER_MINUTE")
    upload_bytes_per_minute: int = setting(30_000_000, "bytes one client may upload in a minute", low=1,
                                           env="LSTMGEN_UPLOAD_BYTES_PER_MINUTE")
    upload_keep_s: float = setting(300.0, "seconds an upload no training has used is kept", low=1.0,
                                   env="LSTMGEN_UPLOAD_KEEP_S")


def operator_settings() -> OperatorSettings:
    return from_environment(OperatorSettings)


def training_limits() -> TrainingLimits:
    return from_environment(TrainingLimits)


def server_limits() -> ServerLimits:
    return from_environment(ServerLimits)


DECLARATIONS = (OperatorSettings, TrainingLimits, ServerLimits)  # what --help and docs/deploy.md list


def variable(cls, name: str) -> str:
    """The environment variable of one declared setting, for messages: variable(OperatorSettings, "data")."""
    return cls.__dataclass_fields__[name].metadata["env"]


def environment_help() -> str:
    """The variables, one a line with its default: the epilog of `python app.py --help` and train_space.py's."""
    from .settings import environment_variables

    lines = ["environment variables (lstmgen/core/operator_settings.py):"]
    for cls in DECLARATIONS:
        lines += [f"  {name}  {help} (default {default!r})" for name, default, help in environment_variables(cls)]
    return "\n".join(lines)
