"""`s2 data convert IN OUT`: re-encode an event file, the formats taken from the files (magic bytes, extension)."""

from __future__ import annotations

import argparse


def register_convert(dsub: argparse._SubParsersAction) -> None:
    c = dsub.add_parser(
        "convert",
        help="convert an event file between AEDAT4, EVT2/EVT3 (.raw), DAT, ES, CSV and NPY",
        description="Read IN (format by magic bytes, then extension) and write OUT in the format of its "
        "extension (.aedat4, .raw/.evt3, .evt2, .dat, .es, .csv, .npy) or --to. AEDAT4 frames and IMU "
        "packets are skipped; ES keeps times relative to the first event.",
    )
    c.add_argument("input", metavar="IN", help="event file to read")
    c.add_argument("output", metavar="OUT", help="event file to write")
    c.add_argument("--to", dest="to_format", help="output format when the extension does not say")
    c.add_argument("--width", type=int, help="sensor width for inputs that do not record it (CSV, NPY)")
    c.add_argument("--height", type=int, help="sensor height for inputs that do not record it (CSV, NPY)")
    c.add_argument("--t-unit", choices=("us", "ms", "s"), default="us", help="time unit of NPY input (default us)")
    c.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    from sources.errors import SourceError
    from sources.events import SensorSize
    from sources.files import count_outside, format_for_writing, read_events, write_events

    if (args.width is None) != (args.height is None):
        raise SourceError("give both --width and --height, or neither")
    sensor = SensorSize(args.width, args.height) if args.width is not None else None
    out_fmt = format_for_writing(args.output, args.to_format)  # fail before decoding a large input
    events, sensor = read_events(args.input, sensor=sensor, t_unit=args.t_unit)
    outside = count_outside(events, sensor)
    if outside:
        events = events[(events["x"] < sensor.width) & (events["y"] < sensor.height)]
    write_events(args.output, events, sensor, out_fmt)
    note = f", {outside} outside the sensor dropped" if outside else ""
    print(f"{args.output}: {len(events)} events, {sensor.width}x{sensor.height}, {out_fmt}{note}")
    return 0
