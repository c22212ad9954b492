"""Live inputs: async iterators of `EventBatch` (or `TextEvent`) with bounded buffers whose drops are counted.

udp: SPIF 32-bit words or faery records over UDP; dv: the DV software's network stream (dv-processing);
synthetic: the gesture renderer as a live camera; text: lines of stdin and an inbox for text from any transport.
"""

from sources.live.dv import dv_batches
from sources.live.synthetic import synthetic_batches
from sources.live.text import LineStats, TextInbox, stdin_text
from sources.live.udp import UdpEventSource, decode_faery, decode_spif, encode_spif, udp_batches
from sources.live.watermarks import IDLE_S, idle_watermarks

__all__ = [
    "IDLE_S",
    "LineStats",
    "TextInbox",
    "UdpEventSource",
    "decode_faery",
    "decode_spif",
    "dv_batches",
    "encode_spif",
    "idle_watermarks",
    "stdin_text",
    "synthetic_batches",
    "udp_batches",
]
