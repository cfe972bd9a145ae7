"""A dependency-free PLY reader and a small writer (the mesh format of ScanNet's ``*_vh_clean_2.ply``).

ScanNet's meshes are ``binary_little_endian`` with this header::

    element vertex N
    property float x / y / z
    property uchar red / green / blue / alpha
    element face F
    property list uchar int vertex_indices

The reader follows the header's element list for any layout (``ascii``, ``binary_little_endian``,
``binary_big_endian``; scalar and list properties; elements in any order), so the faces that
follow the vertices are parsed — and checked for truncation — rather than guessed at.
Every error is a :class:`~twist_lib.data.io.DataFormatError` whose message names the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.io import DataFormatError

# PLY scalar type names (both spellings of the spec) -> numpy type codes without byte order.
PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}


@dataclass(frozen=True)
class PlyProperty:
    """One property of an element: a scalar (``count_type`` None) or a list."""
    name: str
    value_type: str              # numpy type code, e.g. "f4"
    count_type: str | None = None


@dataclass(frozen=True)
class PlyElement:
    name: str
    count: int
    properties: tuple[PlyProperty, ...]

    @property
    def has_lists(self) -> bool:
        return any(p.count_type for p in self.properties)


# --------------------------------------------------------------------------------------- header
def _split_header(data: bytes, path) -> tuple[list[str], int]:
    """Return the header lines and the byte offset of the body."""
    if not data.startswith(b"ply"):
        raise DataFormatError(f"{path}: bad PLY header: the file does not start with 'ply'")
    end = data.find(b"end_header")
    if end < 0:
        raise DataFormatError(f"{path}: bad PLY header: no 'end_header' line")
    newline = data.find(b"\n", end)
    body = len(data) if newline < 0 else newline + 1
    try:
        text = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: bad PLY header: non-ASCII bytes in the header") from None
    return text.splitlines()[1:], body


def _parse_property(words: list[str], path, line: str) -> PlyProperty:
    def ply_type(name):
        if name not in PLY_TYPES:
            raise DataFormatError(f"{path}: bad PLY header: unknown property type '{name}' in '{line}'")
        return PLY_TYPES[name]

    if len(words) == 3 and words[1] != "list":
        return PlyProperty(words[2], ply_type(words[1]))
    if len(words) == 5 and words[1] == "list":
        count_type = ply_type(words[2])
        if count_type.startswith("f"):
            raise DataFormatError(f"{path}: bad PLY header: list count type must be an integer in '{line}'")
        return PlyProperty(words[4], ply_type(words[3]), count_type)
    raise DataFormatError(f"{path}: bad PLY header: malformed property line '{line}'")


def read_ply_header(data: bytes, path="<bytes>") -> tuple[str, list[PlyElement], int]:
    """Parse the header of PLY file contents.

    Returns
    -------
    format : str
        ``"ascii"``, ``"binary_little_endian"`` or ``"binary_big_endian"``.
    elements : list of PlyElement
        In file order.
    body_offset : int
        Byte offset where the element data starts.
    """
    lines, body = _split_header(data, path)
    fmt, elements = None, []
    for line in lines:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) != 3 or words[1] not in FORMATS or words[2] != "1.0":
                raise DataFormatError(f"{path}: unsupported PLY format '{line.strip()}' "
                                      f"(supported: {', '.join(FORMATS)}, version 1.0)")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise DataFormatError(f"{path}: bad PLY header: malformed element line '{line}'")
            elements.append(PlyElement(words[1], int(words[2]), ()))
        elif words[0] == "property":
            if not elements:
                raise DataFormatError(f"{path}: bad PLY header: property before any element: '{line}'")
            prop = _parse_property(words, path, line)
            last = elements[-1]
            if prop.name in {p.name for p in last.properties}:
                raise DataFormatError(f"{path}: bad PLY header: element '{last.name}' repeats "
                                      f"property '{prop.name}'")
            elements[-1] = PlyElement(last.name, last.count, last.properties + (prop,))
        else:
            raise DataFormatError(f"{path}: bad PLY header: unknown keyword in '{line}'")
    if fmt is None:
        raise DataFormatError(f"{path}: bad PLY header: no 'format' line")
    return fmt, elements, body


# ----------------------------------------------------------------------------- element bodies
def _truncated(path, el: PlyElement) -> DataFormatError:
    return DataFormatError(f"{path}: truncated PLY data: the file ends inside element '{el.name}' "
                           f"({el.count} rows declared)")


def _list_length(count, path, el: PlyElement) -> int:
    if count < 0:
        raise DataFormatError(f"{path}: negative list length in element '{el.name}'")
    return int(count)


def _pack_list(rows: list) -> np.ndarray:
    """Lists of one property: (rows, k) when all have length k, else an object array of 1-D arrays."""
    if rows and all(len(r) == len(rows[0]) for r in rows):
        return np.stack(rows)
    out = np.empty(len(rows), dtype=object)
    out[:] = rows
    return out


def _read_binary_element(data: bytes, offset: int, el: PlyElement, order: str, path):
    """Read one element of a binary body; returns (properties, offset after the element)."""
    if not el.has_lists:
        dtype = np.dtype([(p.name, order + p.value_type) for p in el.properties])
        end = offset + dtype.itemsize * el.count
        if end > len(data):
            raise _truncated(path, el)
        rows = np.frombuffer(data, dtype, count=el.count, offset=offset)
        return {p.name: rows[p.name].astype(p.value_type) for p in el.properties}, end
    fast = _read_binary_uniform_lists(data, offset, el, order, path)
    return fast if fast is not None else _read_binary_rows(data, offset, el, order, path)


def _read_binary_uniform_lists(data, offset, el, order, path):
    """Fast path for list elements: assume every list has the first row's length, then verify.

    The check is exact: the first row whose count differs from the assumed one lies at its true
    offset (every row before it had the assumed size), so a wrong assumption is always caught
    and the caller falls back to :func:`_read_binary_rows`. Returns None on fallback.
    """
    fields, pos = [], offset
    for p in el.properties:
        if not p.count_type:
            fields.append((p.name, order + p.value_type))
            pos += np.dtype(p.value_type).itemsize
            continue
        if el.count == 0 or pos + np.dtype(p.count_type).itemsize > len(data):
            return None
        k = _list_length(np.frombuffer(data, order + p.count_type, count=1, offset=pos)[0], path, el)
        fields += [(p.name + ":count", order + p.count_type), (p.name, order + p.value_type, (k,))]
        pos += np.dtype(p.count_type).itemsize + k * np.dtype(p.value_type).itemsize
    dtype = np.dtype(fields)
    end = offset + dtype.itemsize * el.count
    if end > len(data):
        return None
    rows = np.frombuffer(data, dtype, count=el.count, offset=offset)
    for p in el.properties:
        if p.count_type and (rows[p.name + ":count"] != dtype[p.name].shape[0]).any():
            return None
    return {p.name: rows[p.name].astype(p.value_type) for p in el.properties}, end


def _read_rows(el: PlyElement, take, path) -> dict:
    """General path, one row at a time (lists of varying length); ``take(code, count)`` reads
    the next ``count`` values of numpy type ``code`` from the body."""
    values = {p.name: [] for p in el.properties}
    for _ in range(el.count):
        for p in el.properties:
            if p.count_type:
                values[p.name].append(take(p.value_type, _list_length(take(p.count_type, 1)[0], path, el)))
            else:
                values[p.name].append(take(p.value_type, 1)[0])
    return {p.name: _pack_list(values[p.name]) if p.count_type
            else np.asarray(values[p.name], p.value_type) for p in el.properties}


def _read_binary_rows(data, offset, el, order, path):
    pos = [offset]

    def take(code, count):
        size = np.dtype(code).itemsize * count
        if pos[0] + size > len(data):
            raise _truncated(path, el)
        arr = np.frombuffer(data, order + code, count=count, offset=pos[0]).astype(code)
        pos[0] += size
        return arr

    return _read_rows(el, take, path), pos[0]


def _ascii_numbers(tokens: np.ndarray, code: str, path, el: PlyElement) -> np.ndarray:
    try:
        values = tokens.astype(np.float64)
    except ValueError:
        raise DataFormatError(f"{path}: non-numeric value in the ascii data of element '{el.name}'") from None
    if code[0] in "iu" and (values != np.round(values)).any():
        raise DataFormatError(f"{path}: non-integer value for an integer property of element '{el.name}'")
    return values.astype(code)


def _read_ascii_element(tokens: np.ndarray, pos: int, el: PlyElement, path):
    """Read one element from the whitespace-separated tokens of an ascii body.

    Rows are read as one (rows, width) table when every list has the first row's length (the
    same exact check as :func:`_read_binary_uniform_lists`), else one row at a time.
    """
    layout, width = [], 0  # (property, column of its count or None, first value column, length)
    for p in el.properties:
        if p.count_type:
            if el.count == 0 or pos + width >= len(tokens):
                return _read_ascii_rows(tokens, pos, el, path)
            k = _list_length(_ascii_numbers(tokens[pos + width:pos + width + 1], p.count_type, path, el)[0],
                             path, el)
            layout.append((p, width, width + 1, k))
            width += 1 + k
        else:
            layout.append((p, None, width, 1))
            width += 1
    end = pos + width * el.count
    if end > len(tokens):
        return _read_ascii_rows(tokens, pos, el, path)
    table = tokens[pos:end].reshape(el.count, width)
    for p, count_col, _, k in layout:
        if count_col is not None and not _all_equal(table[:, count_col], k):
            return _read_ascii_rows(tokens, pos, el, path)
    out = {}
    for p, count_col, col, k in layout:
        values = _ascii_numbers(table[:, col:col + k], p.value_type, path, el)
        out[p.name] = values if count_col is not None else values[:, 0]
    return out, end


def _all_equal(tokens: np.ndarray, k: int) -> bool:
    try:
        return bool((tokens.astype(np.float64) == k).all())
    except ValueError:  # a misaligned guess; the row-by-row reader reports real errors
        return False


def _read_ascii_rows(tokens, pos, el, path):
    pos = [pos]

    def take(code, count):
        if pos[0] + count > len(tokens):
            raise _truncated(path, el)
        arr = _ascii_numbers(tokens[pos[0]:pos[0] + count], code, path, el)
        pos[0] += count
        return arr

    return _read_rows(el, take, path), pos[0]


# ------------------------------------------------------------------------------------ public API
def read_ply(path) -> dict[str, dict[str, np.ndarray]]:
    """Read every element of a PLY file.

    Returns
    -------
    dict
        ``{element name: {property name: array}}``. A scalar property is a 1-D array of its
        declared type. A list property (e.g. ``face/vertex_indices``) is a ``(rows, k)`` array
        when every list has length k (triangle meshes), else a 1-D object array of 1-D arrays.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DataFormatError
        Bad header, unsupported format, truncated or non-numeric data; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: PLY file not found")
    data = path.read_bytes()
    fmt, elements, offset = read_ply_header(data, path)
    out = {}
    if fmt == "ascii":
        tokens, pos = np.array(data[offset:].split(), dtype=bytes), 0
        for el in elements:
            out[el.name], pos = _read_ascii_element(tokens, pos, el, path)
    else:
        for el in elements:
            out[el.name], offset = _read_binary_element(data, offset, el, FORMATS[fmt], path)
    return out


def read_coloured_vertices(path) -> tuple[np.ndarray, np.ndarray]:
    """The vertex positions and colours of a coloured point cloud or mesh (e.g. ScanNet's).

    Returns
    -------
    xyz : float32 (N, 3)
    rgb : uint8 (N, 3), from the ``red``, ``green``, ``blue`` properties (``alpha`` is ignored).

    Raises
    ------
    DataFormatError
        No ``vertex`` element, no x/y/z, a "colourless PLY" (no red/green/blue), or colours that
        are not integers in 0..255; the message names the file.
    """
    elements = read_ply(path)
    if "vertex" not in elements:
        raise DataFormatError(f"{path}: the PLY file has no 'vertex' element")
    vertex = elements["vertex"]
    missing = [k for k in ("x", "y", "z") if k not in vertex]
    if missing:
        raise DataFormatError(f"{path}: the PLY vertices have no {'/'.join(missing)} coordinates")
    if not all(k in vertex for k in ("red", "green", "blue")):
        raise DataFormatError(f"{path}: colourless PLY: the vertices have no red/green/blue "
                              f"properties (found {', '.join(vertex)})")
    rgb = np.stack([vertex[k] for k in ("red", "green", "blue")], axis=1)
    if rgb.dtype.kind not in "iu" or (rgb.size and (rgb.min() < 0 or rgb.max() > 255)):
        raise DataFormatError(f"{path}: PLY colours must be integers in 0..255 (type {rgb.dtype})")
    xyz = np.stack([vertex[k] for k in ("x", "y", "z")], axis=1).astype(np.float32)
    return xyz, rgb.astype(np.uint8)


def write_ply(path, xyz, rgb, faces=None, alpha=None) -> Path:
    """Write a binary little-endian PLY laid out like ScanNet's ``*_vh_clean_2.ply``.

    Vertices carry x, y, z (float32) and red, green, blue, alpha (uchar; alpha defaults to 255);
    ``faces`` (F, 3) int become a ``face`` element with ``list uchar int vertex_indices``.
    """
    xyz = np.asarray(xyz, dtype="<f4").reshape(-1, 3)
    rgb = np.asarray(rgb).reshape(-1, 3)
    n = len(xyz)
    alpha = np.full(n, 255) if alpha is None else np.asarray(alpha)
    vertex = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                ("green", "u1"), ("blue", "u1"), ("alpha", "u1")])
    for i, k in enumerate("xyz"):
        vertex[k] = xyz[:, i]
    for i, k in enumerate(("red", "green", "blue")):
        vertex[k] = rgb[:, i]
    vertex["alpha"] = alpha
    header = ["ply", "format binary_little_endian 1.0", "comment VCGLIB generated",
              f"element vertex {n}"]
    header += [f"property float {k}" for k in "xyz"]
    header += [f"property uchar {k}" for k in ("red", "green", "blue", "alpha")]
    body = vertex.tobytes()
    if faces is not None:
        faces = np.asarray(faces).reshape(-1, 3)
        face = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
        face["n"], face["v"] = 3, faces
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        body += face.tobytes()
    header.append("end_header")
    path = Path(path)
    path.write_bytes(("\n".join(header) + "\n").encode("ascii") + body)
    return path
