"""Checkpoint digests: a hash of every state-dict entry's content, stored in the file and checked
when it is read (costs and the hash's choice in docs/checkpoints-integrity.md).

What is hashed, per entry (in the order the state dict holds them):
- a tensor: its dtype, shape and layout, then its elements' bytes in C order (little-endian,
  whatever the machine), so a changed header or a changed element is caught; strides, storage
  offsets and bytes of a storage that no element uses are not content and are not hashed. The
  bytes are read in place for a contiguous CPU tensor; other tensors (non-contiguous, on a GPU)
  are copied in row blocks of about 16 MiB, never whole. bfloat16, float8, bool, complex and
  zero-element tensors need no special case (raw bytes, no numpy).
- a slot record or any other value: a canonical encoding of None, bool, int, float (its exact
  bits), complex, str, bytes, dicts (keys and values, in order), lists, tuples, sets,
  torch.dtype and torch.device, tensors nested in them; anything else is hashed by its type's
  name only (save_checkpoint of a model never stores such values).
The state dict's own ``_metadata`` (module versions, which change how modules load) is hashed as
one more entry.

The digest travels in the state dict's ``_metadata`` under DIGEST_KEY, which no module path can
be, as plain str: the keys stay the model's own, ``torch.load(weights_only=True)`` reads the file,
plain ``model.load_state_dict`` ignores it, and esper-slot releases without this module load the
files unchanged. Entries are hashed on up to ``os.cpu_count()`` threads (hashlib releases the
GIL while it hashes a large buffer).

This module imports only torch and extra_state (for CheckpointError): it sits below the slot.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import struct
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import torch

from .extra_state import CheckpointError

DIGEST_KEY = "<esper-slot digest>"  # a key of the state dict's _metadata; no module path has it
METADATA_ENTRY = "<_metadata>"  # how the error names the state dict's _metadata
FORMAT = 1
# name stored in the file -> constructor. Files name their hash, so any of these stays readable.
ALGORITHMS: dict[str, Callable[[], Any]] = {
    "sha256": hashlib.sha256,
    "blake2b-256": lambda: hashlib.blake2b(digest_size=32),
    "sha512": hashlib.sha512,
}
ALGORITHM = "sha256"  # chosen from bench/checkpoint_digest.py's measurements
_BLOCK = 16 << 20  # bytes per copied block of a tensor that cannot be read in place
_PARALLEL_BYTES = 8 << 20  # below this many tensor bytes, one thread


def _u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def _text(tag: bytes, s: str) -> bytes:
    raw = s.encode("utf-8", "surrogatepass")
    return tag + _u64(len(raw)) + raw


def _swap_unit(t: torch.Tensor) -> int:
    """The width of one byte-swapped number: complex numbers are two floats."""
    return t.element_size() // (2 if t.is_complex() else 1)


def _tensor_blocks(t: torch.Tensor) -> Iterator[torch.Tensor]:
    """CPU, contiguous, little-endian pieces of ``t`` whose bytes, one after the other, are
    ``t``'s elements in C order."""
    if t.device.type == "cpu" and t.is_contiguous():
        pieces: Iterator[torch.Tensor] = iter((t,))
    elif t.dim() == 0:
        pieces = iter((t.cpu().contiguous(),))
    else:
        row = max(1, t[0].numel() * t.element_size())
        rows = max(1, _BLOCK // row)
        pieces = (t[i : i + rows].cpu().contiguous() for i in range(0, t.shape[0], rows))
    for piece in pieces:
        if sys.byteorder == "big" and _swap_unit(piece) > 1:
            unit = _swap_unit(piece)
            piece = piece.reshape(-1).view(torch.uint8).reshape(-1, unit).flip(-1).contiguous()
        yield piece


def _bytes_of(t: torch.Tensor) -> Any:
    """A zero-copy buffer over a CPU contiguous tensor's bytes (``t`` must outlive it)."""
    n = t.numel() * t.element_size()
    return (ctypes.c_char * n).from_address(t.data_ptr())


def _plain(t: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The tensor whose bytes are hashed, and what else its header must say."""
    t = t.detach()
    extra = ""
    if t.is_quantized:
        if t.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            extra = f"|{t.qscheme()}|{t.q_scale().hex()}|{t.q_zero_point()}"
        else:  # per channel: the scales and zero points are hashed after the data
            extra = f"|{t.qscheme()}|axis={t.q_per_channel_axis()}"
        return t.int_repr(), extra
    if t.layout != torch.strided:
        return t.to_dense(), extra
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    return t, extra


def _hash_tensor(h, t: torch.Tensor) -> None:
    data, extra = _plain(t)
    h.update(_text(b"T", f"{t.dtype}|{list(t.shape)}|{t.layout}{extra}"))
    if t.device.type != "meta" and data.numel():
        for block in _tensor_blocks(data):
            h.update(_bytes_of(block))
    if t.is_quantized and extra.startswith(f"|{t.qscheme()}|axis"):
        _hash_tensor(h, t.q_per_channel_scales())
        _hash_tensor(h, t.q_per_channel_zero_points())


def _hash_value(h, value: Any, algorithm: str, depth: int = 0) -> None:
    if depth > 100:
        raise CheckpointError("a checkpoint value is nested more than 100 levels deep")
    if isinstance(value, torch.Tensor):
        _hash_tensor(h, value)
    elif value is None:
        h.update(b"N")
    elif isinstance(value, bool):
        h.update(b"B1" if value else b"B0")
    elif isinstance(value, int):
        h.update(_text(b"I", str(value)))
    elif isinstance(value, float):
        h.update(b"F" + struct.pack("<d", value))
    elif isinstance(value, complex):
        h.update(b"C" + struct.pack("<dd", value.real, value.imag))
    elif isinstance(value, str):
        h.update(_text(b"S", value))
    elif isinstance(value, (bytes, bytearray)):
        h.update(b"Y" + _u64(len(value)) + bytes(value))
    elif isinstance(value, Mapping):
        h.update(b"D" + _u64(len(value)))
        for key, item in value.items():
            _hash_value(h, key, algorithm, depth + 1)
            _hash_value(h, item, algorithm, depth + 1)
    elif isinstance(value, (list, tuple)):
        h.update((b"L" if isinstance(value, list) else b"U") + _u64(len(value)))
        for item in value:
            _hash_value(h, item, algorithm, depth + 1)
    elif isinstance(value, (set, frozenset)):
        parts = sorted(_digest_of(item, algorithm, depth + 1) for item in value)
        h.update(b"E" + _u64(len(parts)) + "".join(parts).encode())
    elif isinstance(value, (torch.dtype, torch.device)):
        h.update(_text(b"t", str(value)))
    else:  # not canonically encodable: its type only (documented above)
        h.update(_text(b"?", f"{type(value).__module__}.{type(value).__qualname__}"))


def _digest_of(value: Any, algorithm: str, depth: int = 0) -> str:
    h = ALGORITHMS[algorithm]()
    _hash_value(h, value, algorithm, depth)
    return h.hexdigest()


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def digest_values(
    values: list[Any], algorithm: str = ALGORITHM, workers: int | None = None
) -> list[str]:
    """The hex digest of each value, hashed on up to ``workers`` threads (default: the CPUs;
    one thread below 8 MiB of tensors)."""
    if workers is None:
        workers = os.cpu_count() or 1
    if workers > 1 and len(values) > 1 and sum(map(_tensor_bytes, values)) >= _PARALLEL_BYTES:
        # largest first, so that one big tensor does not start last
        order = sorted(range(len(values)), key=lambda i: -_tensor_bytes(values[i]))
        with ThreadPoolExecutor(min(workers, len(values))) as pool:
            found = dict(zip(order, pool.map(lambda i: _digest_of(values[i], algorithm), order)))
        return [found[i] for i in range(len(values))]
    return [_digest_of(v, algorithm) for v in values]


def _metadata_of(state: Mapping) -> dict:
    meta = getattr(state, "_metadata", None)
    if not isinstance(meta, Mapping):
        return {}
    return {k: v for k, v in meta.items() if k != DIGEST_KEY}


def with_digest(
    state: Mapping, algorithm: str = ALGORITHM, workers: int | None = None
) -> OrderedDict:
    """A shallow copy of ``state`` (the same tensors) whose ``_metadata`` carries the digest of
    every entry. ``state`` and its ``_metadata`` are not changed."""
    keys = list(state)
    digests = digest_values([state[k] for k in keys], algorithm, workers)
    meta = _metadata_of(state)
    out: OrderedDict = OrderedDict(state)
    out._metadata = OrderedDict(meta)  # type: ignore[attr-defined]
    out._metadata[DIGEST_KEY] = {  # type: ignore[attr-defined]
        "format": FORMAT,
        "algorithm": algorithm,
        "entries": dict(zip(keys, digests)),
        "metadata": _digest_of(meta, algorithm),
    }
    return out


def pop_digest(state: Mapping, where: str) -> dict | None:
    """Remove the digest from a state dict just read (so that it is never saved again with
    changed tensors) and return it; None when the file has none. A digest that is there but
    malformed raises CheckpointError."""
    meta = getattr(state, "_metadata", None)
    if not isinstance(meta, dict) or DIGEST_KEY not in meta:
        return None
    record = meta.pop(DIGEST_KEY)
    problem = None
    if not isinstance(record, dict):
        problem = f"it is a {type(record).__name__}, not a dict"
    elif record.get("format") != FORMAT:
        problem = (
            f"its format is {record.get('format')!r}; this esper-slot reads format "
            f"{FORMAT} (a newer esper-slot wrote it?)"
        )
    elif record.get("algorithm") not in ALGORITHMS:
        problem = (
            f"its hash {record.get('algorithm')!r} is not one of {list(ALGORITHMS)} "
            "(a newer esper-slot wrote it?)"
        )
    elif not isinstance(record.get("entries"), dict) or not all(
        isinstance(d, str) for d in record["entries"].values()
    ):
        problem = "its entries are not a dict of hex digests"
    elif not isinstance(record.get("metadata"), str):
        problem = "its metadata digest is not a str"
    if problem:
        raise CheckpointError(
            f"checkpoint {where!r} is damaged: its esper-slot digest is "
            f"malformed ({problem}); nothing was loaded"
        )
    return record


def verify(state: Mapping, record: dict, where: str, workers: int | None = None) -> None:
    """Raise CheckpointError naming the first entry (in saved order) whose content does not
    match ``record`` (from pop_digest), or that is missing or was never digested."""
    algorithm = record["algorithm"]
    saved: dict = record["entries"]
    present = [k for k in saved if k in state]
    found = dict(zip(present, digest_values([state[k] for k in present], algorithm, workers)))
    damaged = []
    for key, digest in saved.items():
        if key not in state:
            damaged.append(f"entry {key!r} is missing")
        elif found[key] != digest:
            damaged.append(f"entry {key!r} does not match its {algorithm} digest")
    damaged += [f"entry {key!r} is not in the digest" for key in state if key not in saved]
    if _digest_of(_metadata_of(state), algorithm) != record["metadata"]:
        damaged.append(f"{METADATA_ENTRY} (module versions) does not match its digest")
    if damaged:
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise CheckpointError(
            f"checkpoint {where!r} is damaged: {damaged[0]}{more}; nothing was loaded. (A file "
            "changed on purpose with torch.save keeps its old digest: load it with "
            "verify=False, or save it again with esper_slot.save_checkpoint.)"
        )


def check_pickle_crc(file: str | os.PathLike | IO[bytes]) -> None:
    """For a zip checkpoint (torch.save's format since 1.6: what torch.load takes for a zip,
    a file starting with a zip local header), read its pickle (``*/data.pkl``, a few KB: the
    structure, the slot records and the digest, no tensor bytes) through zipfile, which checks
    the zip's CRC-32 of it. A damaged pickle is then refused before it is unpickled, so damage
    cannot hide the digest itself. Raises what zipfile raises (or BadZipFile when there is not
    exactly one data.pkl); a file in torch's legacy format: nothing to do."""
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            check_pickle_crc(f)
        return
    start = file.tell()
    try:
        if file.read(4) != b"PK\x03\x04":
            return
        file.seek(start)
        try:
            archive = zipfile.ZipFile(file)
        except zipfile.BadZipFile as err:
            raise zipfile.BadZipFile(
                f"it starts as a zip archive but has no readable end "
                f"(truncated, or its central directory is damaged): {err}"
            ) from err
        with archive:
            names = [n for n in archive.namelist() if n.rpartition("/")[2] == "data.pkl"]
            if len(names) != 1:
                raise zipfile.BadZipFile(f"it holds {len(names)} data.pkl records, not 1")
            archive.read(names[0])  # raises BadZipFile on a CRC mismatch
    finally:
        file.seek(start)
