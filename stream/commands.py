"""The stream package's sub-commands: `s2 broker`, `s2 replay`, `s2 run`, `s2 subscribe`, `s2 serve`, `s2 ask`.

The one module of stream/ that parses options: each command turns them into one typed call (stream.serve,
stream.broker) and makes the process-wide settings (stream.process). Without --broker an embedded broker is
started (mosquitto if installed, else amqtt) and its URL printed on stderr. Heavy imports (torch, aiomqtt)
happen inside the command functions, so that `s2 --help` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from stream.defaults import DEFAULT_GESTURE_MODEL, DEFAULT_TEXT_MODEL
from stream.schema import DEFAULT_NODE_ID


def _positive_int(text: str) -> int:
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {v}")
    return v


def _non_negative(text: str) -> float:
    v = float(text)
    if not v >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "broker",
        help="run the embedded MQTT broker and print its URL",
        description="Run a local MQTT broker: a mosquitto subprocess when the binary exists, else an "
        "in-process amqtt broker (MQTT 3.1.1). Binds to 127.0.0.1 unless --host says otherwise. Ctrl-C, SIGTERM or "
        "SIGHUP stop it (exit status 0). With --bridge it is an edge broker that forwards its nodes to a central one "
        "(docs/fleet.md).",
    )
    b.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    b.add_argument("--port", type=int, default=1883, help="port (default 1883; 0 picks a free one)")
    b.add_argument("--amqtt", action="store_true", help="use the in-process amqtt broker even if mosquitto exists")
    b.add_argument("--allow-anonymous", action="store_true",
                   help="with a --host other than loopback: run anyway (the embedded broker has no credentials)")
    b.add_argument("--bridge", metavar="URL", action="append",
                   help="forward s2/v1/# to this central broker and take its in/text and in/control back "
                        "(mosquitto's bridge: QoS 1, persistent session, messages queued while it is away); "
                        "mqtt://[user[:pw]@]host[:port] or mqtts://...; repeatable; needs mosquitto")
    b.add_argument("--bridge-password-file", metavar="FILE",
                   help="the bridge password (first line of FILE) for --bridge URLs with a user but no password")
    b.add_argument("--bridge-cafile", metavar="FILE", help="CA certificate file to verify mqtts:// bridges")
    b.set_defaults(func=_broker)

    p = sub.add_parser(
        "replay", help="replay an event file into the gesture model, predictions to MQTT",
        description="Replay a DVS event file (AEDAT4, EVT2/3, DAT, ES, CSV, NPY) paced by its timestamps into "
        "the gesture model; publish predictions, stats and event frames on s2/v1/<node>/... It obeys in/control "
        "(pause, resume, speed, reset: start over) and answers in the retained status, with the speed achieved.",
    )
    p.add_argument("file", help="event file")
    p.add_argument("--model", default=DEFAULT_GESTURE_MODEL, help=f"gesture model (default {DEFAULT_GESTURE_MODEL})")
    p.add_argument("--speed", type=_non_negative, default=1.0, help="replay speed factor; 0 = as fast as possible")
    p.add_argument("--loop", action="store_true", help="start again at the end (until Ctrl-C)")
    p.add_argument("--start-s", type=float, default=0.0, help="skip this many seconds of the recording")
    p.add_argument("--end-s", type=float, default=None, help="stop at this many seconds of the recording")
    p.add_argument("--window-s", type=_non_negative, default=None,
                   help="gesture readout: mean of the per-step logits over the last seconds (default: the model "
                        "file's readout.window_s, the window it was trained for, else 2; as `s2 run` and the UI; "
                        "0 = over the whole recording, as `s2 node run` and `s2 eval`)")
    _frame_args(p)
    _sensor_args(p, "the file's own (NPY/CSV without one: the model's)")
    _chip_args(p)
    _broker_args(p)
    p.set_defaults(func=_replay)

    r = sub.add_parser(
        "run", help="run live sources or recordings (udp://, dv://, synthetic, text, files) through models, "
        "predictions to MQTT",
        description="One source: --source udp://HOST:PORT (SPIF 32-bit words as AEStream sends; ?format=faery for "
        "faery's UDP records), dv://HOST:PORT (DV software network stream, needs dv-processing), synthetic "
        "(the gesture renderer as a live camera) or text (lines of stdin and messages on in/text into the LM; "
        "each line's answer is printed on stdout, Ctrl-C ends with the summary); it publishes as "
        "s2/v1/<node>/... and obeys in/control, answered in the retained status: reset; pause/resume for "
        "udp/dv/synthetic (input is dropped and counted while paused). "
        "Many streams in one process: repeat --source ID=URL (URL as above, or an event file to replay; text is "
        "served alone), or give --fleet FILE.toml (docs/fleet.md). Each stream publishes as its own node, "
        "s2/v1/<node>-<ID>/..., with its own status, stats, counters and in/control; streams on the same model "
        "file are stepped together, one batched call per tick. The options below are every stream's defaults; "
        "a fleet file's [defaults] table and stream keys override them.",
    )
    r.add_argument("--source", action="append", metavar="URL | ID=URL",
                   help="udp://HOST:PORT | dv://HOST:PORT | synthetic | text; ID=URL (repeatable) for several "
                        "streams, where URL may also be an event file (AEDAT4, EVT2/3, DAT, ES, CSV, NPY)")
    r.add_argument("--fleet", metavar="FILE.toml",
                   help="serve the streams of a TOML fleet file ([defaults] and one [[stream]] table each: id, "
                        "source, model, sensor, sensor_map, window_s, speed, loop, frames, buffer, idle_s, seed)")
    r.add_argument("--model", help=f"model (default {DEFAULT_GESTURE_MODEL}, or {DEFAULT_TEXT_MODEL} for text)")
    r.add_argument("--buffer", type=_positive_int, default=256, help="live buffer in batches; the oldest are dropped")
    r.add_argument("--duration-s", type=float, default=None, help="stop after this many seconds")
    r.add_argument("--idle-s", type=_non_negative, default=0.05,
                   help="udp/dv: after this much wall time without events, close bins as if event time ran on "
                        "with the wall clock (a still scene sends nothing); 0 = wait for the next event "
                        "(default 0.05)")
    r.add_argument("--window-s", type=_non_negative, default=None,
                   help="gesture readout: mean of per-step logits over the last seconds (default: the model file's "
                        "readout.window_s, else 2; 0 = since start)")
    r.add_argument("--speed", type=_non_negative, default=1.0,
                   help="file streams: replay speed factor (default 1; 0 = as fast as possible; nothing is dropped)")
    r.add_argument("--loop", action="store_true", help="file streams: start again at the end")
    r.add_argument("--continuation", type=_continuation, default="sample:t=0.8,p=0.9",
                   metavar="greedy|sample|beam[:KEY=V,...]",
                   help="text: how the continuation is written (default sample:t=0.8,p=0.9, nucleus sampling "
                   "seeded by the text). Keys: t temperature, p top-p, k top-k, rep repetition penalty, ngram "
                   "no-repeat n-gram, seed; beam: w width. E.g. beam:w=4,ngram=3")
    _frame_args(r)
    _sensor_args(r, "the model's; synthetic: 128x128; files: their own")
    _chip_args(r)
    _broker_args(r)
    r.set_defaults(func=_run)

    s = sub.add_parser(
        "subscribe", help="print MQTT messages as one JSON object per line",
        description="Subscribe and print {\"topic\": ..., \"payload\": ...} per message (payload parsed as JSON "
        "when it is JSON, else a string).",
    )
    s.add_argument("--topic", action="append", help="topic filter (repeatable; default s2/v1/#)")
    s.add_argument("--count", type=int, default=None, help="exit after this many messages")
    s.add_argument("--timeout-s", type=float, default=None, help="exit (status 1) if nothing came for this long")
    _broker_args(s, node=False)
    s.set_defaults(func=_subscribe)
    register_text_workers(sub)


def _continuation(text: str):
    """--continuation: an s2node.decode.DecodeSpec, or a one-line usage error."""
    from s2node.decode import DecodeError, DecodeSpec

    try:
        return DecodeSpec.parse(text)
    except DecodeError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _frame_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-frames", action="store_true", help="do not publish event frames")
    p.add_argument("--frames-per-s", type=float, default=5.0, metavar="N",
                   help="event frames (for the UI) at most N a second (default 5)")
    p.add_argument("--frame-bytes", type=int, default=4096, metavar="B",
                   help="an event frame is at most B bytes: a busier one goes out coarser (default 4096, "
                   "at least 1024)")


def _frames(args: argparse.Namespace):
    """--no-frames, --frames-per-s, --frame-bytes -> False or stream.pipeline.FrameLimits (one-line errors)."""
    from stream.errors import PipelineError
    from stream.pipeline import MIN_FRAME_BYTES, FrameLimits

    if args.no_frames:
        return False
    if not (args.frames_per_s > 0 and args.frames_per_s <= 1000) or args.frame_bytes < MIN_FRAME_BYTES:
        raise PipelineError(f"--frames-per-s must be above 0 and at most 1000, --frame-bytes at least "
                            f"{MIN_FRAME_BYTES}")
    return FrameLimits(per_s=args.frames_per_s, max_bytes=args.frame_bytes)


def _sensor_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--sensor-map", default="scale", metavar="scale|crop|roi=x,y,w,h",
                   help="how events of another sensor size reach the model's input: scale the whole sensor into it "
                        "(default, aspect kept), crop its centre, or fit a region x,y,w,h of the sensor")
    p.add_argument("--sensor", metavar="WxH", help=f"the source's sensor size (default {default})")


def _sensor_options(args: argparse.Namespace):
    from sources.sensor_map import SensorMap, parse_sensor

    return SensorMap.parse(args.sensor_map), parse_sensor(args.sensor) if args.sensor else None


def _say(text: str) -> None:
    print(f"s2: {text}", file=sys.stderr, flush=True)


def _chip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--numerics", choices=["fp32", "int8"], default="fp32",
                   help="the emulated node's PE arithmetic (default fp32)")
    p.add_argument("--decoder", choices=["host", "pe"], default="host",
                   help="where the decoder runs: on the host (default, as the paper) or on the chip's PEs")
    p.add_argument("--embedding", choices=["host", "pe"], default="host",
                   help="language models: where the embedding table lives (default host, as the paper)")


def _node_options(args: argparse.Namespace) -> dict:
    """The emulated node's placement (s2node.step.load_step_model's node options)."""
    return {"numerics": args.numerics, "decoder": args.decoder, "embedding": args.embedding}


def _broker_args(p: argparse.ArgumentParser, node: bool = True) -> None:
    p.add_argument("--broker", metavar="URL", help="mqtt://[user[:pw]@]host[:port] or mqtts://... "
                   "(default: start an embedded broker on a free port)")
    if node:
        p.add_argument("--node", default=DEFAULT_NODE_ID,
                       help=f"node id in the topics s2/v1/<node>/... (default {DEFAULT_NODE_ID})")
    credential_args(p)
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="QoS of published messages (default 1)")


def credential_args(p: argparse.ArgumentParser) -> None:
    """--username, --password, --password-file, --tls, --cafile (tui.commands declares the same)."""
    p.add_argument("--username", help="MQTT user name")
    p.add_argument("--password", help="MQTT password (visible to other users of this machine in the process "
                   "list: prefer --password-file or the S2_MQTT_PASSWORD environment variable)")
    p.add_argument("--password-file", metavar="FILE", help="read the MQTT password from the first line of FILE")
    p.add_argument("--tls", action="store_true", help="connect with TLS (implied by mqtts://)")
    p.add_argument("--cafile", help="CA certificate file for TLS")


def password(args: argparse.Namespace) -> str | None:
    """The password from --password, --password-file or $S2_MQTT_PASSWORD (in that order); None if none."""
    from stream.credentials import resolve_password

    return resolve_password(args.password, args.password_file)


def _print_answer(p) -> None:
    """The answer to a line of stdin, one line on stdout (ANSI styled on a terminal)."""
    from stream.text_pipeline import answer_line

    with contextlib.suppress(BrokenPipeError):  # `| head -1`: the rest goes to MQTT only
        print(answer_line(p, color=sys.stdout.isatty()), flush=True)


def _run_async(coro) -> int:
    """asyncio.run, but a user error raised inside task groups surfaces as itself (one line, exit 1); Ctrl-C
    (and SIGTERM, SIGHUP: stream.signals) is exit status 130."""
    import asyncio

    from stream.cli import user_errors

    try:
        return asyncio.run(coro)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, SIGTERM or SIGHUP
        return 130
    except BaseExceptionGroup as eg:
        leaf: BaseException = eg
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        if isinstance(leaf, KeyboardInterrupt):
            return 130
        if isinstance(leaf, user_errors()):
            raise leaf from None
        raise


async def _with_broker(broker: str | None, body, note: str = "") -> int:
    """Run body(url) against --broker or an embedded broker (`note` follows its URL on stderr)."""
    from stream.broker import BrokerURL, embedded_broker

    if broker:
        BrokerURL.parse(broker)  # one-line error on a bad URL before anything starts
        return await body(broker)
    async with embedded_broker() as url:
        print(f"s2: embedded broker at {url}{note}", file=sys.stderr, flush=True)
        return await body(url)


def _link_options(args: argparse.Namespace):
    from stream.serve import LinkOptions

    return LinkOptions(args.node, args.qos, args.username, password(args), args.tls or None, args.cafile)


def _broker(args: argparse.Namespace) -> int:
    import asyncio

    from stream.broker import check_exposure, embedded_broker

    check_exposure(args.host, args.allow_anonymous)
    bridges = _bridges(args)

    started: list[str] = []

    async def run() -> None:
        async with embedded_broker(args.port or None, args.host, "amqtt" if args.amqtt else "auto",
                                   bridges=bridges) as url:
            kind = "amqtt" if args.amqtt else "mosquitto-or-amqtt"
            print(f"broker listening at {url} ({kind}); Ctrl-C to stop", flush=True)
            for b in bridges:  # str() of a broker URL never shows the password
                print(f"bridged to {b.url} (s2/v1/# out, in/text and in/control in; QoS 1)", flush=True)
            started.append(url)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(run())
    if started:
        print(f"s2 broker: stopped the broker at {started[0]}", file=sys.stderr, flush=True)
    return 0


def _bridges(args: argparse.Namespace) -> list:
    """The --bridge URLs as stream.bridge.Bridge values (one-line errors for bad ones, passwords masked)."""
    from stream.bridge import Bridge
    from stream.credentials import read_password_file
    from stream.errors import PipelineError

    if not args.bridge:
        for opt in ("bridge_password_file", "bridge_cafile"):
            if getattr(args, opt):
                raise PipelineError(f"--{opt.replace('_', '-')} needs --bridge")
        return []
    pw = read_password_file(args.bridge_password_file) if args.bridge_password_file else None
    return [Bridge.parse(u, password=pw, cafile=args.bridge_cafile) for u in args.bridge]


def _replay(args: argparse.Namespace) -> int:
    from stream.process import backend_from_env, tune_for_streaming
    from stream.replay import iter_file
    from stream.serve import serve_replay

    next(iter_file(args.file, 1000), None)  # fail fast (one line) on a missing or unreadable file
    sensor_map, sensor = _sensor_options(args)
    frames = _frames(args)
    backend = backend_from_env()
    tune_for_streaming()

    def report(s) -> None:
        print(f"s2 replay: {s.predictions} predictions, {s.events_in} events in, {s.events_dropped} dropped, "
              f"{s.messages_dropped} messages dropped, {s.unsent} unsent", file=sys.stderr, flush=True)

    opts = _link_options(args)

    async def body(url: str) -> int:
        s = await serve_replay(url, args.file, model=args.model, link=opts, speed=args.speed,
                               loop=args.loop, start_s=args.start_s, end_s=args.end_s, frames=frames,
                               window_s=args.window_s, backend=backend, sensor_map=sensor_map, sensor=sensor,
                               announce=_say, report=report, node_options=_node_options(args))
        return 0 if s.unsent == 0 else 1

    note = " (it ends with this replay; to keep one: `s2 broker --port 1883 &` and --broker mqtt://127.0.0.1:1883)"
    return _run_async(_with_broker(args.broker, body, note))


def _run(args: argparse.Namespace) -> int:
    from stream.errors import PipelineError
    from stream.fleet_file import split_source

    sources = args.source or []
    if args.fleet and sources:
        raise PipelineError("give --fleet or --source, not both (see s2 run --help)")
    if not args.fleet and not sources:
        raise PipelineError("give --source URL, --source ID=URL (repeatable) or --fleet FILE.toml (see s2 run --help)")
    if args.fleet or len(sources) > 1 or split_source(sources[0])[0] is not None:
        return _run_fleet(args)
    return _run_one(args, sources[0])


def _run_one(args: argparse.Namespace, source: str) -> int:
    import asyncio

    from stream.process import backend_from_env, tune_for_streaming
    from stream.serve import live_kind, serve_live
    from stream.signals import interrupt_calls

    live_kind(source)  # a one-line error before a broker starts
    sensor_map, sensor = _sensor_options(args)
    frames = _frames(args)
    backend = backend_from_env()
    tune_for_streaming()

    def report(s) -> None:
        print(f"s2 run: {s.predictions} predictions, {s.events_in} events in, {s.events_dropped} dropped, "
              f"{s.malformed_in} malformed", file=sys.stderr, flush=True)

    opts = _link_options(args)
    text = live_kind(source) == "text"

    async def body(url: str) -> int:
        stop = asyncio.Event() if text else None
        # interactive text: Ctrl-C (and so SIGTERM, SIGHUP) ends it as EOF does, with the summary, exit status 0
        with interrupt_calls(stop.set) if stop is not None else contextlib.nullcontext():
            if stop is not None and sys.stdin.isatty():
                print("s2 run: type a line and press Enter for the model's answer; Ctrl-C ends", file=sys.stderr,
                      flush=True)
            await serve_live(url, source, model=args.model, link=opts, buffer=args.buffer,
                             duration_s=args.duration_s, idle_s=args.idle_s, window_s=args.window_s,
                             backend=backend, sensor_map=sensor_map, sensor=sensor, announce=_say, report=report,
                             node_options=_node_options(args), decoder=args.continuation, stop=stop,
                             on_answer=_print_answer if text else None, frames=frames)
        return 0

    return _run_async(_with_broker(args.broker, body))


def _run_fleet(args: argparse.Namespace) -> int:
    from stream.fleet import node_ids, serve_fleet
    from stream.fleet_file import from_sources, read_fleet
    from stream.process import backend_from_env, tune_for_streaming
    from stream.replay import iter_file

    defaults = {"model": args.model, "sensor": args.sensor, "sensor_map": args.sensor_map,
                "window_s": args.window_s, "speed": args.speed, "loop": args.loop, "buffer": args.buffer,
                "idle_s": args.idle_s}
    specs = read_fleet(args.fleet, defaults) if args.fleet else from_sources(args.source, defaults)
    node_ids(args.node, specs)
    for s in specs:  # fail fast (one line) on a missing or unreadable file, before a broker starts
        if s.kind == "file":
            next(iter_file(s.source, 1000), None)
    backend = backend_from_env()
    tune_for_streaming()

    def report(summaries) -> None:
        for s in summaries:
            c = s.counts
            state = f"stopped: {s.error}" if s.error else f"{c.predictions} predictions"
            print(f"s2 run: {s.node}: {state}, {c.events_in} events in, {c.events_dropped} dropped, "
                  f"{c.malformed_in} malformed, {c.unsent} unsent ({s.source})",
                  file=sys.stderr, flush=True)

    def say(text: str) -> None:
        print(f"s2: {text}", file=sys.stderr, flush=True)

    opts = _link_options(args)

    async def body(url: str) -> int:
        out = await serve_fleet(url, specs, link=opts, duration_s=args.duration_s, backend=backend,
                                node_options=_node_options(args), announce=say, report=report)
        return 1 if any(s.error or s.counts.unsent for s in out) else 0

    return _run_async(_with_broker(args.broker, body))


def _subscribe(args: argparse.Namespace) -> int:
    from stream.subscribe import DEFAULT_TOPICS, print_messages

    pw = password(args)

    def report(r) -> None:
        if r.timed_out:
            print(f"s2 subscribe: nothing for {args.timeout_s} s ({r.received} messages)", file=sys.stderr)
        elif args.count is None or r.received < args.count:  # stopped by Ctrl-C or a signal
            print(f"s2 subscribe: {r.received} messages", file=sys.stderr, flush=True)

    async def body(url: str) -> int:
        r = await print_messages(url, args.topic or DEFAULT_TOPICS, count=args.count, timeout_s=args.timeout_s,
                                 qos=args.qos, username=args.username, password=pw,
                                 tls=args.tls or None, cafile=args.cafile, report=report)
        return 1 if r.timed_out else 0

    return _run_async(_with_broker(args.broker, body))


# --- text workers: `s2 serve` (a worker of a group) and `s2 ask` (a client) ------------------------------------
def register_text_workers(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser(
        "serve", help="a text worker: answer a group's text requests (MQTT 5 shared subscription)",
        description="Answer text requests sent to s2/v1/lm/<group>/request, sharing them with every other worker "
        "of the group through the MQTT 5 shared subscription $share/<group>/...: start as many as the load needs, "
        "on any machine that reaches the broker. Needs an MQTT 5 broker (mosquitto; not the amqtt fallback). "
        "Without --broker an embedded mosquitto is started and its URL printed.",
    )
    w.add_argument("--lm", default=DEFAULT_TEXT_MODEL, metavar="MODEL",
                   help=f"language model file (default {DEFAULT_TEXT_MODEL})")
    w.add_argument("--group", required=True, help="the group whose requests this worker shares (one topic level)")
    w.add_argument("--worker", metavar="ID", help="this worker's id in its answers (default HOST-PID)")
    w.add_argument("--cache", type=_positive_int, default=256, metavar="N",
                   help="conversations whose reading state is kept (LRU; default 256); others are read afresh")
    _chip_args(w)
    w.add_argument("--broker", metavar="URL", help="mqtt://[user[:pw]@]host[:port] or mqtts://... "
                   "(default: start an embedded mosquitto on a free port)")
    credential_args(w)
    w.set_defaults(func=_serve)

    a = sub.add_parser(
        "ask", help="ask a group of text workers (`s2 serve`) for predictions",
        description="Send TEXT (one message) or, without TEXT, each line of standard input as the next message "
        "of one conversation to the workers of --group, and print each answer: the likeliest next tokens and a "
        "continuation. A line '/reset' starts the conversation afresh; a conversation holds at most 4096 "
        "characters. A request not answered within --timeout-s is sent again (same correlation), --retries times.",
    )
    a.add_argument("text", nargs="*", metavar="TEXT", help="one message (words joined by spaces); none: read stdin")
    a.add_argument("--group", required=True, help="the workers' group")
    a.add_argument("--conversation", metavar="ID", help="conversation id (default: a new random one)")
    a.add_argument("--topk", type=_positive_int, default=5, help="next tokens to show (default 5, at most 50)")
    a.add_argument("--continuation", type=int, default=20, help="tokens of continuation (default 20, at most 200)")
    a.add_argument("--timeout-s", type=_positive_float, default=2.0,
                   help="send a request again after this long without an answer (default 2)")
    a.add_argument("--retries", type=int, default=5, help="times a request is sent again before giving up (default 5)")
    a.add_argument("--json", action="store_true", help="print each answer as its JSON payload")
    a.add_argument("--broker", metavar="URL", required=True, help="the MQTT 5 broker the workers use")
    credential_args(a)
    a.set_defaults(func=_ask)


def _positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return v


def _serve(args: argparse.Namespace) -> int:
    from stream.lm_service import WorkerOptions, serve_text_worker
    from stream.process import backend_from_env, tune_for_streaming
    from stream.schema import lm_request_topic

    backend = backend_from_env()
    tune_for_streaming()
    opts = WorkerOptions(args.username, password(args), args.tls or None, args.cafile)

    def ready(wid: str) -> None:
        print(f"s2 serve: worker {wid} answering {lm_request_topic(args.group)} (group {args.group})",
              file=sys.stderr, flush=True)

    def report(s) -> None:
        print(f"s2 serve: {s.answered} answered, {s.refused} refused, {s.dropped} dropped, {s.reused} from a "
              "kept state", file=sys.stderr, flush=True)

    async def body(url: str) -> int:
        await serve_text_worker(url, args.lm, args.group, worker_id=args.worker, options=opts, backend=backend,
                                node_options=_node_options(args), cache_max=args.cache, ready=ready, report=report)
        return 0

    return _run_async(_with_broker(args.broker, body))


def _ask(args: argparse.Namespace) -> int:
    import asyncio

    from sources.live.text import stdin_text
    from stream.errors import PipelineError
    from stream.lm_ask import Conversation, TextClient, converse, describe
    from stream.mqtt import MqttLink
    from stream.schema import LM_CONTINUATION_MAX, LM_TOPK_MAX, BrokerURL, is_node_id

    BrokerURL.parse(args.broker)
    if not 1 <= args.topk <= LM_TOPK_MAX or not 0 <= args.continuation <= LM_CONTINUATION_MAX:
        raise PipelineError(f"--topk must be 1 to {LM_TOPK_MAX} and --continuation 0 to {LM_CONTINUATION_MAX}")
    if args.retries < 0:
        raise PipelineError("--retries must be 0 or more")
    if args.conversation is not None and not is_node_id(args.conversation):
        raise PipelineError(f"--conversation {args.conversation!r}: 1 to 64 printable characters without / + #")
    conv = Conversation(args.conversation) if args.conversation else Conversation()

    def show(ans) -> None:
        print(ans.to_json().decode() if args.json else describe(ans), flush=True)

    async def lines():
        if args.text:
            yield " ".join(args.text)
            return
        async for ev in stdin_text():
            yield ev.text

    async def main() -> int:
        link = MqttLink(args.broker, mqtt5=True, username=args.username, password=password(args),
                        tls=args.tls or None, cafile=args.cafile)
        client = TextClient(link, args.group, timeout_s=args.timeout_s, retries=args.retries)
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(link.run())
            try:
                await link.ensure_connected(10.0)
                errors = await converse(client, lines(), show, conversation=conv, topk=args.topk,
                                        continuation=args.continuation)
            finally:
                run.cancel()
        return 1 if errors else 0

    return _run_async(main())
