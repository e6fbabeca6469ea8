"""numba kernels over Arrow columns (offsets, UTF-8 bytes, validity) for what a revision needs per row.

Arrow has no JSON writer and counts words only for ASCII; these loops do the per-row work that used to go through
Python objects, in one pass over the bytes, without the GIL:

- canonical JSON lines, byte for byte what `records.canonical_bytes` writes (sorted keys, compact, UTF-8, the
  escapes of `json.dumps(ensure_ascii=False)`), built a column at a time into one buffer;
- words as `len(text.split())` counts them (Python's whitespace, Unicode included) and characters;
- the normal form of ASCII text (`records.normalise_text`: lower case, whitespace collapsed), and its hash;
- for the filter rules' candidates: the rows holding given characters, or given literal substrings;
- exact dedup's table of kept keys.

The callers (`store.encode`) turn Arrow arrays into the numpy views these take.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


# Bytes `json.dumps` adds to escape each byte of UTF-8 text: \" \\ and \b \t \n \f \r take one more, the other
# control characters five more (\u00XX); every other byte is written as it is.
_EXTRA = np.zeros(256, dtype=np.int64)
_EXTRA[:0x20] = 5
_EXTRA[[0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x22, 0x5C]] = 1
_SHORT = np.zeros(256, dtype=np.uint8)  # the letter of a one-letter escape
_SHORT[[0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x22, 0x5C]] = np.frombuffer(b'btnfr"\\', dtype=np.uint8)


@njit(cache=True, nogil=True)
def add_string_sizes(offsets, data, valid, key_size, omit_null, quoted, sizes, fields):
    """Add each row's `"key":"value"` size to `sizes` (a null: omitted, or `null`) and count its fields.
    quoted: False for a value already written as JSON (a number, true, false), which needs no escape."""
    extra = _EXTRA
    for row in range(len(valid)):
        if valid[row]:
            start, end = offsets[row], offsets[row + 1]
            size = key_size + (2 if quoted else 0) + end - start
            for i in range(start, end):
                size += extra[data[i]]
            sizes[row] += size
            fields[row] += 1
        elif not omit_null:
            sizes[row] += key_size + 4
            fields[row] += 1


@njit(cache=True, nogil=True, inline="always")
def _start_field(out, cursor, written, row, key):
    position = cursor[row]
    if written[row]:
        out[position] = 44  # ,
        position += 1
    for i in range(len(key)):
        out[position + i] = key[i]
    written[row] += 1
    return position + len(key)


@njit(cache=True, nogil=True, inline="always")
def _write_null(out, position):
    out[position] = 110  # null
    out[position + 1] = 117
    out[position + 2] = 108
    out[position + 3] = 108
    return position + 4


@njit(cache=True, nogil=True)
def write_strings(offsets, data, valid, key, omit_null, quoted, out, cursor, written):
    hexdigits, extra, short = _HEX, _EXTRA, _SHORT
    for row in range(len(valid)):
        if not valid[row] and omit_null:
            continue
        position = _start_field(out, cursor, written, row, key)
        if not valid[row]:
            cursor[row] = _write_null(out, position)
            continue
        if quoted:
            out[position] = 34
            position += 1
        for i in range(offsets[row], offsets[row + 1]):
            byte = data[i]
            more = extra[byte]
            if more == 0:
                out[position] = byte
                position += 1
            elif more == 1:
                out[position] = 92
                out[position + 1] = short[byte]
                position += 2
            else:
                out[position] = 92
                out[position + 1] = 117  # u
                out[position + 2] = 48
                out[position + 3] = 48
                out[position + 4] = hexdigits[byte >> 4]
                out[position + 5] = hexdigits[byte & 15]
                position += 6
        if quoted:
            out[position] = 34
            position += 1
        cursor[row] = position


@njit(cache=True, nogil=True)
def open_lines(out, starts, cursor):
    for row in range(len(starts)):
        out[starts[row]] = 123  # {
        cursor[row] = starts[row] + 1


@njit(cache=True, nogil=True)
def close_lines(out, cursor):
    for row in range(len(cursor)):
        out[cursor[row]] = 125  # }
        out[cursor[row] + 1] = 10  # newline


# ------------------------------------------------------------------------------------------------------------
# words and characters


_ASCII_SPACE = np.zeros(128, dtype=np.bool_)
_ASCII_SPACE[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20]] = True  # what str.split() splits on
_ASCII_LOWER = np.arange(128, dtype=np.uint8)
_ASCII_LOWER[65:91] += 32


@njit(cache=True, nogil=True, inline="always")
def _is_wide_space(code: int) -> bool:
    """Whether Python's str.split() splits on this non-ASCII code point (`chr(code).isspace()`)."""
    return (code == 0x85 or code == 0xA0 or code == 0x1680 or 0x2000 <= code <= 0x200A or code == 0x2028
            or code == 0x2029 or code == 0x202F or code == 0x205F or code == 0x3000)


@njit(cache=True, nogil=True, inline="always")
def _code_at(data, i):
    """The code point of the multi-byte UTF-8 character starting at data[i] (valid UTF-8, as Arrow's)."""
    lead = data[i]
    if lead < 0xE0:
        return ((lead & 0x1F) << 6) | (data[i + 1] & 0x3F)
    if lead < 0xF0:
        return ((lead & 0x0F) << 12) | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F)
    return ((lead & 0x07) << 18) | ((data[i + 1] & 0x3F) << 12) | ((data[i + 2] & 0x3F) << 6) | (data[i + 3] & 0x3F)


# What each byte of UTF-8 is to `str.split()`: an ASCII non-space, an ASCII space, a continuation byte, or the lead
# byte of a wider character (a space or not: decoded when met)
_BYTE_CLASS = np.zeros(256, dtype=np.uint8)
_BYTE_CLASS[:128][_ASCII_SPACE] = 1
_BYTE_CLASS[0x80:0xC0] = 2
_BYTE_CLASS[0xC0:] = 3


@njit(cache=True, nogil=True)
def text_counts(offsets, data, valid, words, chars):
    """Per row: words (`len(text.split())`) and characters (a null: 0, 0). Branch-light: a word starts where a
    non-space follows a space; a continuation byte keeps what its character was."""
    classes = _BYTE_CLASS
    for row in range(len(valid)):
        count = 0
        characters = 0
        if valid[row]:
            after_space = 1
            for i in range(offsets[row], offsets[row + 1]):
                kind = classes[data[i]]
                if kind == 3 and _is_wide_space(_code_at(data, i)):
                    kind = 1
                count += ((kind == 0) | (kind == 3)) & after_space
                characters += kind != 2
                after_space = (kind == 1) | (after_space & (kind == 2))
        words[row] = count
        chars[row] = characters


@njit(cache=True, nogil=True)
def write_normalised_ascii(offsets, data, valid, out, ends, odd):
    """`normalise_text` of each row's ASCII text (lower case, words joined by one space) from `ends[row]` on
    (moved to where it stops). A row with a non-ASCII character is marked `odd` (its bytes here are then
    meaningless: the caller normalises it in Python)."""
    space, lower = _ASCII_SPACE, _ASCII_LOWER
    for row in range(len(valid)):
        position = ends[row]
        if valid[row]:
            in_word = False
            first = True
            for i in range(offsets[row], offsets[row + 1]):
                byte = data[i]
                if byte >= 0x80:
                    odd[row] = True
                    break
                if space[byte]:
                    in_word = False
                    continue
                if not in_word:
                    if not first:
                        out[position] = 0x20
                        position += 1
                    first = False
                    in_word = True
                out[position] = lower[byte]
                position += 1
        ends[row] = position


_M = np.uint64(0xC6A4A7935BD1E995)
_SEED = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True, inline="always")
def _mix(k):
    k *= _M
    k ^= k >> np.uint64(47)
    return k * _M


@njit(cache=True, nogil=True)
def hash_segments(data, starts, ends, out):
    """MurmurHash64A of each segment data[starts[i]:ends[i]] (64 bits, for grouping equal texts)."""
    for row in range(len(starts)):
        start, end = starts[row], ends[row]
        h = _SEED ^ (np.uint64(end - start) * _M)
        i = start
        while i + 8 <= end:
            k = np.uint64(0)
            for j in range(8):
                k |= np.uint64(data[i + j]) << np.uint64(8 * j)
            h = (h ^ _mix(k)) * _M
            i += 8
        if i < end:
            k = np.uint64(0)
            for j in range(end - i):
                k |= np.uint64(data[i + j]) << np.uint64(8 * j)
            h = (h ^ k) * _M
        h ^= h >> np.uint64(47)
        h *= _M
        out[row] = h ^ (h >> np.uint64(47))


@njit(cache=True, nogil=True)
def mark_rows_holding(offsets, data, valid, leads, points, marked):
    """Mark the rows holding one of `points` (sorted code points). `leads[b]` is true for each first byte of
    their UTF-8 forms, so a byte costs one table look-up and only those bytes are decoded. In valid UTF-8 a
    first byte is never a continuation byte, so scanning byte by byte finds each character once."""
    for row in range(len(valid)):
        if not valid[row] or marked[row]:
            continue
        for i in range(offsets[row], offsets[row + 1]):
            byte = data[i]
            if not leads[byte]:
                continue
            point = np.int64(byte) if byte < 0x80 else np.int64(_code_at(data, i))
            at = np.searchsorted(points, point)
            if at < len(points) and points[at] == point:
                marked[row] = True
                break


@njit(cache=True, nogil=True)
def mark_literals(offsets, data, valid, pairs, heads, order, needles, starts, blind, marked):
    """marked[k, row] = True where the row holds needle k: the bytes needles[starts[k]:starts[k + 1]], ASCII
    letters compared case-blind where blind[k]. pairs[256 * a + b] is true where some needle can start with the
    bytes a, b (a one-byte needle: with a and any b); the needles that can start with byte a are
    order[heads[a]:heads[a + 1]] (both cases of a case-blind letter). Most bytes cost one look-up of the pair
    they start (common letters start a needle, common pairs seldom), and one pass finds every needle."""
    count = len(starts) - 1
    size_of_data = len(data)
    for row in range(len(valid)):
        if not valid[row]:
            continue
        end = offsets[row + 1]
        left = 0
        for k in range(count):
            if not marked[k, row]:
                left += 1
        for i in range(offsets[row], end):
            if left == 0:
                break
            byte = data[i]
            after = data[i + 1] if i + 1 < size_of_data else 0  # past the row's end: a look-up, not a match
            if not pairs[byte * 256 + after]:
                continue
            for slot in range(heads[byte], heads[byte + 1]):
                k = order[slot]
                if marked[k, row]:
                    continue
                first, size = starts[k], starts[k + 1] - starts[k]
                if i + size > end:
                    continue
                same = True
                for j in range(1, size):
                    got, want = data[i + j], needles[first + j]
                    if blind[k] and 0x41 <= got <= 0x5A:
                        got += 0x20
                    if got != want:
                        same = False
                        break
                if same:
                    marked[k, row] = True
                    left -= 1


# ------------------------------------------------------------------------------------------------------------
# a set of 64-bit keys, each with a slot: exact dedup's memory of the keys it kept


@njit(cache=True, nogil=True)
def claim_keys(table_keys, table_slots, used, keys, slots, found):
    """For each key in order: found[i] = the slot held for it, or -1 after it is stored with slots[i] (it is
    the first of its key). An open-addressing table (linear probing; a power-of-two size, at most half full:
    the caller grows it); the keys are already well-mixed hashes, so their low bits place them. Returns how
    many keys were stored."""
    mask = np.uint64(len(table_keys) - 1)
    stored = 0
    for i in range(len(keys)):
        key = keys[i]
        at = np.int64(key & mask)
        while used[at] and table_keys[at] != key:
            at = np.int64((np.uint64(at) + np.uint64(1)) & mask)
        if used[at]:
            found[i] = table_slots[at]
        else:
            used[at] = True
            table_keys[at] = key
            table_slots[at] = slots[i]
            found[i] = -1
            stored += 1
    return stored
