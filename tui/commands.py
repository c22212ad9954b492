"""`s2 tui`: the terminal UI. With --broker it only subscribes; without, it starts the embedded broker and the
local pipeline (demo recording into the gesture model, the character LM answering typed text) first.

The only module of tui/ that reaches past stream's protocol modules: it starts the demo's back end
(stream.local.local_demo) before handing the broker URL to the app.
"""

from __future__ import annotations

import argparse
import contextlib

from stream.defaults import DEFAULT_RECORDING


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tui",
        help="the terminal UI (starts a local broker and pipeline unless --broker is given)",
        description="Show live gesture predictions, typed-text predictions and the emulated node over MQTT. "
        "Without --broker: start the embedded broker and a local pipeline that replays the demo recording, "
        "then the UI against it (the one-command demo).",
    )
    p.add_argument("--broker", metavar="URL", help="an MQTT broker already running (mqtt://host:port)")
    p.add_argument("--node", metavar="ID", default=None,
                   help="node id to show (default: with --broker the first node heard, else the demo's own)")
    p.add_argument("--recording", metavar="FILE", action="append",
                   help="without --broker: event file(s) the local pipeline replays (repeatable; ctrl+r switches; "
                   f"default {DEFAULT_RECORDING} when it exists)")
    p.add_argument("--speed", type=float, default=1.0, help="without --broker: replay speed factor (default 1)")
    p.add_argument("--username", help="with --broker: MQTT user name")
    p.add_argument("--password", help="with --broker: MQTT password (visible in the process list: prefer "
                   "--password-file or the S2_MQTT_PASSWORD environment variable)")
    p.add_argument("--password-file", metavar="FILE", help="with --broker: read the MQTT password from FILE")
    p.add_argument("--tls", action="store_true", help="with --broker: connect with TLS (implied by mqtts://)")
    p.add_argument("--cafile", help="with --broker: CA certificate file for TLS")
    p.add_argument("--group", metavar="G",
                   help="with --broker: the text pane asks the text workers of group G (`s2 serve --group G`, an "
                   "MQTT 5 broker) instead of the node's own language model")
    p.add_argument("--sensor-map", default="scale", metavar="scale|crop|roi=x,y,w,h",
                   help="without --broker: how recordings of another sensor size reach the gesture model's input "
                   "(default scale: the whole sensor, aspect kept)")
    p.add_argument("--continuation", metavar="greedy|sample|beam[:KEY=V,...]", default="sample:t=0.8,p=0.9",
                   help="without --broker: how the language model writes its continuation (default "
                   "sample:t=0.8,p=0.9, nucleus sampling seeded by the text). Keys: t temperature, p top-p, k top-k, "
                   "rep repetition penalty, ngram no-repeat n-gram, seed; beam: w width. "
                   "E.g. greedy, beam:w=4,ngram=3")
    p.set_defaults(func=_tui)


def _tui(args: argparse.Namespace) -> int:
    from stream.errors import PipelineError
    from stream.schema import BrokerURL, BrokerURLError, is_node_id

    if args.node is not None and not is_node_id(args.node):
        raise PipelineError(f"--node {args.node!r}: a node id is 1 to 64 printable characters without / + #")
    if args.group is not None and not is_node_id(args.group):
        raise PipelineError(f"--group {args.group!r}: a group is 1 to 64 printable characters without / + #")
    if args.group is not None and not args.broker:
        raise PipelineError("--group needs --broker: the MQTT 5 broker the group's workers (`s2 serve`) use")
    if args.broker:
        from stream.credentials import resolve_password
        from stream.mqtt import ConnectSettings, refusal
        from tui.app import S2App

        try:
            BrokerURL.parse(args.broker)
        except BrokerURLError as e:
            raise PipelineError(str(e)) from e
        # one-line errors (a missing CA file, an unreadable password file) before the screen is taken over
        settings = ConnectSettings.make(args.broker, username=args.username,
                                        password=resolve_password(args.password, args.password_file),
                                        tls=args.tls or None, cafile=args.cafile, client_prefix="s2-tui")
        import asyncio

        # a refused password (or MQTT 5, with a group) is a one-line error, not a UI that retries forever
        asyncio.run(refusal(settings, mqtt5=args.group is not None))
        return asyncio.run(_app_until_quit(S2App(args.broker, args.node, settings=settings, group=args.group)))
    return _demo(args.node, args.recording, args.speed, args.sensor_map, args.continuation)


def _demo(node: str | None, recordings: list[str] | None = None, speed: float = 1.0,
          sensor_map: str = "scale", continuation: str = "sample:t=0.8,p=0.9") -> int:
    """Embedded broker + local pipeline + the app, all in this process; everything stops when the UI quits."""
    import asyncio
    import sys
    from pathlib import Path

    from stream.errors import PipelineError
    from stream.local import local_demo
    from stream.process import backend_from_env, tune_for_streaming
    from stream.schema import DEFAULT_NODE_ID
    from stream.signals import hung_up
    from tui.app import S2App

    node = node or DEFAULT_NODE_ID
    backend = backend_from_env()
    tune_for_streaming()
    if not recordings and Path(DEFAULT_RECORDING).is_file():
        recordings = [DEFAULT_RECORDING]

    async def main() -> int:
        async with local_demo(node, recordings, speed, backend, sensor_map, continuation) as (url, pipeline):
            app = S2App(url, node)
            # a pipeline that dies (missing model, bad recording) ends the UI instead of leaving it waiting
            pipeline.add_done_callback(lambda t: t.cancelled() or t.exception() is None or app.exit(return_code=1))
            code = await _app_until_quit(app)
            # after a hangup the demo ends as ctrl+q does, whatever the pipeline met on its way down (its broker,
            # in the closed terminal's process group, may have had the hangup too)
            if pipeline.done() and not pipeline.cancelled() and pipeline.exception() and not hung_up():
                raise PipelineError(f"local pipeline failed: {pipeline.exception()}")
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            print("s2 tui: stopped the demo's broker and pipeline", file=sys.stderr, flush=True)
        return code  # non-zero when the app itself failed

    return asyncio.run(main())


class _HangupSafe:
    """The stream the UI draws on (Textual's Linux driver writes to sys.__stderr__ from a thread), with writes to a
    terminal that has hung up (EIO) dropped: the error would kill Textual's writer thread, and the UI's shutdown
    would then wait on that thread's full queue forever, with the demo's broker still running."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


async def _app_until_quit(app) -> int:
    """Run the app until it quits; a closed terminal (SIGHUP), a kill (SIGTERM) or SIGINT end it like ctrl+q
    (stream.signals), so that the demo's broker and pipeline stop on the way out instead of outliving the process
    and the terminal is given back as it was."""
    import sys

    from stream.signals import hung_up, interrupt_calls

    terminal = sys.__stderr__
    sys.__stderr__ = _HangupSafe(terminal)  # type: ignore[misc]
    try:
        with interrupt_calls(app.exit):
            await app.run_async()
    finally:
        sys.__stderr__ = terminal  # type: ignore[misc]
    # after a hangup the app may have failed reading its gone terminal (EIO) before it heard the signal: that is
    # the hangup, and it ends as ctrl+q does
    return 0 if hung_up() else app.return_code or 0
