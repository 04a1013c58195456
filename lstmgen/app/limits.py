"""What Gradio lacks for a public server: a client's share of the queue, small sessions, listed MCP tools only.

Also: a malformed call is refused in one line. Each reaches into Gradio (6.31, the version requirements.txt
pins) where it has no setting for it; the tests in tests/test_security.py hold each to its promise over HTTP, so
an upgrade that moves these internals fails there.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass

import gradio as gr

from ..serve.web import client_key

@dataclass
class Ticket:
    """A request one client put in the queue: waiting, running, or answered and not yet read."""
    client: str
    group: str
    session: str
    answered_at: float | None = None


def share_the_queue(demo: gr.Blocks, share: int, shares: dict[str, int], unread_keep_s: float,
                    pooled: tuple[str, ...] = ()) -> None:
    """No client holds more than `share` requests in a concurrency group (`shares[group]` where given: waiting,
    running, or answered and not yet read), the groups in `pooled` counting as one: one more is refused at once,
    before it enters Gradio's queue, so one client cannot fill the queue all visitors share (Gradio's queue has no
    per-client bound). A client is client_key's: a signed-in user, else an address. An answer nobody reads within
    `unread_keep_s` is dropped (Gradio would keep it for its 2,000 most recent sessions)."""
    from gradio import route_utils

    queue, push, remove = demo._queue, demo._queue.push, demo._queue.remove_from_queue
    tickets: dict[str, Ticket] = {}  # by event id
    entering: collections.Counter = collections.Counter()  # pushes under way (push may yield before it queues)

    def forget_unread(event_id: str, session: str) -> None:
        pending = queue.pending_event_ids_session.get(session)
        if pending is not None:
            pending.discard(event_id)
            if not pending:  # nothing else of that session to deliver: its messages go too
                queue.pending_event_ids_session.pop(session, None)
                if session in queue.pending_messages_per_session:
                    del queue.pending_messages_per_session[session]

    def held(client: str, group: str) -> int:
        now = time.monotonic()
        live = {e._id for q in queue.event_queue_per_concurrency_id.values() for e in q.queue}
        live |= {e._id for job in queue.active_jobs if job for e in job}
        for event_id, ticket in list(tickets.items()):
            if event_id not in queue.pending_event_ids_session.get(ticket.session, ()):
                del tickets[event_id]  # read: it holds nothing any more
            elif event_id not in live:  # answered (or stopped), not read
                ticket.answered_at = ticket.answered_at or now
                if now - ticket.answered_at > unread_keep_s:
                    forget_unread(event_id, ticket.session)
                    del tickets[event_id]
        return entering[client, group] + sum(1 for t in tickets.values() if (t.client, t.group) == (client, group))

    async def fair_push(body, request, username):
        try:
            group = route_utils.get_fn(demo, None, body).concurrency_id
        except Exception:  # no such function: Gradio's own push answers that
            return await push(body=body, request=request, username=username)
        group = pooled[0] if group in pooled else group
        mine, client = shares.get(group, share), client_key(request)
        if held(client, group) >= mine:
            held_now = "a request" if mine == 1 else f"{mine} requests"
            return False, (f"you already have {held_now} of this kind waiting, running or not yet read: wait for "
                           "it to finish, then try again"), "queue_full"
        entering[client, group] += 1
        try:
            answer = await push(body=body, request=request, username=username)
        finally:
            entering[client, group] -= 1
            if not entering[client, group]:
                del entering[client, group]
        if answer[0]:
            tickets[answer[1]] = Ticket(client, group, body.session_hash)
        return answer

    async def remove_from_queue(event_id: str):  # a visitor's Stop: the stopped request holds nothing any more
        tickets.pop(event_id, None)
        return await remove(event_id)

    queue.push, queue.remove_from_queue = fair_push, remove_from_queue


def keep_session_state_small(demo: gr.Blocks) -> None:
    """Gradio makes a copy of every component's settings for each new session (a few hundred KB for this page,
    and 0.1 s of CPU), though it reads that copy only to share a page's state by link, which this app does not
    offer. Here a session copies only what its events change. Each page's own values (gr.State) are kept as
    before, up to LSTMGEN_SESSIONS sessions."""
    import copy

    from gradio.state_holder import SessionState, StateHolder

    class SmallSessionState(SessionState):
        def __init__(self, blocks):  # SessionState.__init__ without its copy of every component's settings
            self.blocks_config = copy.copy(blocks.default_config)
            self.config_values = {}
            self.state_data, self._state_ttl, self.is_closed = {}, {}, False
            self.STATE_TTL_WHEN_CLOSED = 3600

    class SmallStateHolder(StateHolder):
        def __getitem__(self, session_id: str) -> SessionState:
            if session_id not in self.session_data:
                self.session_data[session_id] = SmallSessionState(self.blocks)
            return super().__getitem__(session_id)

    demo.server_app.state_holder.__class__ = SmallStateHolder


def call_only_listed_tools(demo: gr.Blocks) -> None:
    """Gradio's MCP server hides an endpoint whose function is not an MCP tool from its list but still calls it by
    name; dropping it from the server's tool table makes it neither listed nor callable (nor in its schema)."""
    server = demo.mcp_server_obj
    if server is None:
        return
    for tool, endpoint in list(server.tool_to_endpoint.items()):
        block_fn = server.get_block_fn_from_endpoint_name(endpoint)
        if getattr(getattr(block_fn, "fn", None), "_mcp_type", "tool") != "tool":
            del server.tool_to_endpoint[tool]


def refuse_malformed_calls(demo: gr.Blocks) -> None:
    """Every call's shape is checked before any handler runs, and a wrong one is refused in one line (a gr.Error,
    logged without a traceback): too many or too few values, a value its component cannot read (a list for a
    slider, a number for a choice), event data that is not what the event sends. Gradio raises plain
    exceptions for these, and logs each with its traceback: any caller could fill the log.

    A REST caller may leave out trailing arguments of a named endpoint ({"data": ["char", "ROMEO:"]}): they take
    their documented defaults."""
    from gradio.components.api_component import Api

    check, preprocess, process = demo.validate_inputs, demo.preprocess_data, demo.process_api

    def validate_inputs(block_fn, inputs):
        missing = block_fn.inputs[len(inputs):]
        if missing and all(isinstance(component, Api) for component in missing):
            inputs.extend(component.value for component in missing)
        if len(inputs) != len(block_fn.inputs):
            raise _refusal(f"this call takes {len(block_fn.inputs)} values, not {len(inputs)}")
        for component, value in zip(block_fn.inputs, inputs):
            if not _sent_by_the_page(component, value):
                raise _refusal(f"a value of this call is not what its {component.get_block_name()} sends")
        return check(block_fn, inputs)

    async def preprocess_data(block_fn, inputs, state, explicit_call=False):
        try:
            return await preprocess(block_fn, inputs, state, explicit_call)
        except gr.Error as error:
            if not error.print_exception:  # already refused in one line
                raise
            message = error.message
            raise _refusal(f"a value of this call is not what it takes: {message[:120]}") from None
        except Exception as error:  # its components' failures
            message = getattr(error, "message", None) or str(error)
            raise _refusal(f"a value of this call is not what it takes: {message[:120]}") from None

    async def process_api(block_fn, inputs, state=None, request=None, iterator=None, session_hash=None,
                          event_id=None, event_data=None, *args, **kwargs):
        fn = (demo.fns[block_fn] if isinstance(block_fn, int) else block_fn).fn
        if fn is not None and _wants_selection(fn) and not _is_selection(getattr(event_data, "_data", None)):
            raise _refusal("this call's event data is not a selection")
        return await process(block_fn, inputs, state, request, iterator, session_hash, event_id, event_data,
                             *args, **kwargs)

    demo.validate_inputs, demo.preprocess_data, demo.process_api = validate_inputs, preprocess_data, process_api


def _sent_by_the_page(component, value) -> bool:
    """Whether `value` has the type the page sends for `component` (a text box sends text, a slider a number, a
    check box true or false, an example its place in the list); other components are left to Gradio's checks."""
    if isinstance(component, gr.Dataset):
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(component.samples)
    if isinstance(component, gr.Textbox):
        return isinstance(value, str)
    if isinstance(component, gr.Number) and value is None:  # a number box left empty
        return True
    if isinstance(component, (gr.Slider, gr.Number)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e15
    if isinstance(component, gr.Checkbox):
        return isinstance(value, bool)
    return True


def _refusal(message: str) -> gr.Error:
    print(f"refused a call: {message[:200]}", flush=True)
    return gr.Error(message, print_exception=False)


def _wants_selection(fn) -> bool:
    import inspect

    try:
        return any(p.annotation in (gr.SelectData, "gr.SelectData") for p in inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False


def _is_selection(data) -> bool:
    """Event data as a selection sends it: {"index": an int or a list of ints, "value": …}."""
    if not isinstance(data, dict) or "index" not in data:
        return False
    index = data["index"]
    indices = index if isinstance(index, list) else [index]
    return all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 10**9 for i in indices) and len(indices) <= 2
