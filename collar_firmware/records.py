"""The collar's flash-record format: a body, then its CRC-16 little-endian, so a torn write fails.

Settings, fences and the alert counter are kept as such records (the queue keeps its own, see
queue.py). `sealed(body)` makes one, `unsealed(record)` returns the body or None.
"""

from collar_firmware.queue import crc16


def sealed(body):
    """Return the flash record of body: its bytes, then their CRC-16 little-endian."""
    data = bytearray(body)
    crc = crc16(data, len(data))
    data.append(crc & 0xFF)
    data.append(crc >> 8)
    return bytes(data)


def unsealed(record):
    """Return the body of a record made by sealed, or None when it is missing or its CRC fails."""
    if not record or len(record) < 2:
        return None
    n = len(record) - 2
    if crc16(record, n) != record[n] | (record[n + 1] << 8):
        return None
    return record[:n]


def kept(storage, key, size):
    """Return the body of the record under key when it is sealed whole and size bytes long, else None (missing,
    torn by a power cut, of another layout, or unreadable: OSError)."""
    try:
        body = unsealed(storage.read(key))
    except OSError:
        return None
    return body if body is not None and len(body) == size else None


def put_i32(data, v):
    """Append v as a little-endian 32-bit integer to bytearray data."""
    v &= 0xFFFFFFFF
    data.append(v & 0xFF)
    data.append((v >> 8) & 0xFF)
    data.append((v >> 16) & 0xFF)
    data.append((v >> 24) & 0xFF)


def get_i32(data, pos):
    """Return the signed little-endian 32-bit integer at data[pos:pos + 4]."""
    v = data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16) | (data[pos + 3] << 24)
    return v - 0x100000000 if v & 0x80000000 else v
