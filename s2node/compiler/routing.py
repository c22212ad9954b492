"""Multicast routing tables: keys, key/mask entries and the source -> PE delivery tables.

Keys: every source block gets a power-of-two-aligned key range (key = base | index), so one key/mask entry
routes the whole block. Blocks: the host's input block (pixels, embedding dimensions, or token ids when the
embedding runs on PEs), one block per embedding PE (its values, to the first layer), one block per PE of
each EGRU layer (its units' events), one per decoder PE (its local argmax to the host). A block's entry sends
its packets to every PE that holds at least one weight from a source in the block (layer l's own PEs for the
recurrence, layer l+1's or the decoder's PEs for the feed-forward path). `recv[source, pe]` is that delivery
table per source, so that packets received per PE in a step are `recv[active].sum(0)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s2node.compiler.partition import GroupPlacement


@dataclass(frozen=True)
class RoutingTable:
    entries: int  # key/mask entries in the chip router
    key_space: int  # keys allocated (sum of aligned block sizes)
    blocks: tuple[tuple[str, int, int], ...]  # (source group, base key, size)


def _aligned(n: int) -> int:
    return 1 << max(0, int(np.ceil(np.log2(max(n, 1)))))


def block_recv(nnz: np.ndarray, block_of_source: np.ndarray, n_blocks: int) -> np.ndarray:
    """[sources, PEs] nnz + block id per source -> bool [sources, PEs]: does the source's block reach the PE."""
    per_block = np.zeros((n_blocks, nnz.shape[1]), dtype=np.int64)
    np.add.at(per_block, block_of_source, nnz)
    return (per_block > 0)[block_of_source]


def build_routing(groups: list[GroupPlacement]) -> tuple[RoutingTable, list[np.ndarray], list[np.ndarray | None]]:
    """Tables for EGRU groups followed by the decoder. Returns (table, recv_in per group, recv_rec per group)."""
    blocks: list[tuple[str, int, int]] = []
    key = 0

    def add(name: str, size: int) -> None:
        nonlocal key
        a = _aligned(size)
        key = (key + a - 1) // a * a
        blocks.append((name, key, size))
        key += a

    n_in0 = groups[0].nnz_in.shape[0]
    add("host", n_in0)
    recv_in: list[np.ndarray] = [block_recv(groups[0].nnz_in, np.zeros(n_in0, np.int64), 1)]
    recv_rec: list[np.ndarray | None] = []
    for i, g in enumerate(groups):
        if g.nnz_rec is None and i + 1 == len(groups):  # decoder: one block per PE, to the host
            for p in range(g.n_pes):
                add(f"{g.name}.pe{g.pe_start + p}", 1)
            recv_rec.append(None)
            continue
        if g.nnz_rec is None:  # embedding on PEs: each PE's values go to the first layer
            for p in range(g.n_pes):
                add(f"{g.name}.pe{g.pe_start + p}", int(g.bounds[p + 1] - g.bounds[p]))
            recv_rec.append(None)
            recv_in.append(block_recv(groups[i + 1].nnz_in, g.unit_pe, g.n_pes))
            continue
        for p in range(g.n_pes):
            add(f"{g.name}.pe{g.pe_start + p}", int(g.bounds[p + 1] - g.bounds[p]))
        recv_rec.append(block_recv(g.nnz_rec, g.unit_pe, g.n_pes))
        if i + 1 < len(groups):
            recv_in.append(block_recv(groups[i + 1].nnz_in, g.unit_pe, g.n_pes))
    return RoutingTable(entries=len(blocks), key_space=key, blocks=tuple(blocks)), recv_in, recv_rec
