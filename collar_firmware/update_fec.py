"""Forward error correction of fragmented updates, in the manner of LoRa Alliance TS004.

A file of M fragments of equal size travels as the M data fragments (n = 1..M) and then parity
fragments (n > M): parity fragment n is the XOR of the data fragments that `parity_row(n - M, M)`
picks with the TS004 pseudo-random generator (PRBS-23 seeded 1 + 1001 * index, M // 2 draws, a
power-of-two M drawn modulo M + 1). The bridge encodes with the same function
(lora_bridge/updates/fec.py), so a collar that missed a few fragments rebuilds them.

`FecDecoder` rebuilds in bounded memory: data fragments and parity rows go straight to flash (the
store). As LoRa Alliance reference decoders do, the data fragments still missing when the first parity
fragment comes become the matrix's columns (their indices kept, 2 bytes each); a parity row XORs in the
fragments already held at once and keeps a bit set over the columns only (a bytearray: no big
integers). RAM: 2 * M / 8 + 2 * C + rows * (C / 8 + _ROW_BYTES) bytes for C columns (C <= M), the rows'
part at most _MATRIX_BYTES, plus one fragment being XORed; flash: one record per fragment and per row.
docs/updates.md has figures.
Runs on MicroPython and CPython.
"""

from array import array

from collar_firmware.compat import const

MAX_FRAGMENTS = const(1024)  # a 48 KB image in 48-byte fragments; the setup is refused beyond
MAX_FRAG_SIZE = const(240)
# the parity rows' RAM (their bit sets, the data in flash) is bounded as a wake-up's garbage is: the collar's heap
# holds at most the matrix and one wake-up's allocations; a row beyond is dropped and FragSessionStatusAns says
# NotEnoughMatrixMemory (the session then needs data fragments: each frees a column)
_MATRIX_BYTES = const(24 * 1024)  # compat.GC_BUDGET_BYTES (const() folds only a literal: a test pins it)
_ROW_BYTES = const(48)  # a row's RAM besides its bit set: the bytearray's object, its blocks' rounding, its dict slot
_SOLVE_XORS_PER_STEP = const(512)  # fragment XORs a stepped solve() spends per call (the collar: per wake-up)


def prbs23(x):
    """Return the next state of TS004's 23-bit pseudo-random binary sequence."""
    b0 = x & 1
    b1 = (x & 32) >> 5
    return (x >> 1) + ((b0 ^ b1) << 22)


def parity_row(index, m):
    """Return the sorted data-fragment indices (0-based) that parity fragment index (1-based, the
    fragment counter less m) XORs together, as TS004's matrix line does."""
    m_temp = 1 if m & (m - 1) == 0 else 0
    x = 1 + 1001 * index
    picked = bytearray(m)
    draws = 0
    while draws < m // 2:
        r = 1 << 16
        while r >= m:
            x = prbs23(x)
            r = x % (m + m_temp)
        picked[r] = 1
        draws += 1
    out = []
    for i in range(m):
        if picked[i]:
            out.append(i)
    return out


def xor_into(dst, src):
    """dst[i] ^= src[i] for every byte of src (dst a bytearray at least as long)."""
    for i in range(len(src)):
        dst[i] ^= src[i]


def _lowest(mask):
    """Return the index of the lowest set bit of a bytearray bit set, or -1 when it is empty."""
    for k in range(len(mask)):
        b = mask[k]
        if b:
            i = 0
            while not b & 1:
                b >>= 1
                i += 1
            return 8 * k + i
    return -1


class FecDecoder:
    """Rebuild nb_frag fragments of frag_size bytes into store, which has write(i, data),
    read(i) -> bytes for fragments and write_row(i, data), read_row(i) for parity rows (i: the row's pivot).

    The first parity fragment makes the fragments then missing the columns (`cols`, ascending);
    parity rows are kept in echelon form over them: each row's lowest unknown column is its pivot
    and no two rows share one; a row's data lives in flash (under its pivot's fragment index), its
    bit set in RAM. A column whose data fragment arrives later (a unicast repair) is taken out of rows
    lazily (its data is XORed in when a row is used), at once from the row it is the pivot of. When
    there are as many rows as missing fragments, back-substitution from the highest pivot down
    writes each missing fragment once: at once inside add(), or, for a stepped decoder (the
    collar's), in solve() calls of bounded work (`solving` is True until the last is written)."""

    def __init__(self, nb_frag, frag_size, store, stepped=False):
        if not 1 <= nb_frag <= MAX_FRAGMENTS or not 1 <= frag_size <= MAX_FRAG_SIZE:
            raise ValueError("%d fragments of %d bytes exceed the collar's %d of %d"
                             % (nb_frag, frag_size, MAX_FRAGMENTS, MAX_FRAG_SIZE))
        self.nb_frag = nb_frag
        self.frag_size = frag_size
        self.store = store
        self.have = bytearray((nb_frag + 7) // 8)
        self.missing = nb_frag
        self.cols = None  # the data fragments missing at the first parity fragment: the matrix's columns
        self.rows = {}  # pivot's fragment index -> bytearray bit set over the columns (data in flash)
        self.received = 0  # distinct fragments taken (TS004 NbFragReceived): a repeat of one is not counted
        self.parity_heard = bytearray((nb_frag + 7) // 8)  # parity fragments nb_frag+1 .. 2*nb_frag heard
        self.dropped_rows = 0
        self.stepped = stepped
        self.solving = False  # every missing fragment is a pivot; solve() writes them
        self.next_pivot = 0  # solve()'s cursor: no pivot column lies above it (set with the columns)

    def has(self, i):
        """Return True when fragment i (0-based) is in the store."""
        return (self.have[i >> 3] >> (i & 7)) & 1 == 1

    def complete(self):
        """Return True when every fragment is in the store."""
        return self.missing == 0

    def add(self, n, data):
        """Take fragment n (1-based; n > nb_frag: parity); return True once the file is complete."""
        m = self.nb_frag
        if len(data) != self.frag_size or n < 1 or self.missing == 0 or self.solving:
            return self.missing == 0
        if n <= m:
            i = n - 1
            if not self.has(i):
                self.received += 1
                self.store.write(i, data)
                self.have[i >> 3] |= 1 << (i & 7)
                self.missing -= 1
                mask = self.rows.pop(i, None)
                if mask is not None:  # that row lost its pivot: take i out and file it again
                    self._insert(mask, bytearray(self.store.read_row(i)))
        else:
            k = n - m - 1  # parity fragments 1..nb_frag are told apart (one bit each); later ones always count
            if k < m:
                if (self.parity_heard[k >> 3] >> (k & 7)) & 1:
                    return False
                self.parity_heard[k >> 3] |= 1 << (k & 7)
            self.received += 1
            self._insert(*self._row(n, data))
        if self.missing and len(self.rows) == self.missing:
            self.solving = True
            if not self.stepped:
                self.solve(0)
        return self.missing == 0

    def _row(self, n, data):
        """Return (bit set over the columns, data) of parity fragment n, the fragments held when the columns
        were made XORed in (the first parity fragment makes them: fragment j is column c when cols[c] == j)."""
        m = self.nb_frag
        cols = self.cols
        if cols is None:
            cols = self.cols = array("H")
            for i in range(m):
                if not self.has(i):
                    cols.append(i)
            self.next_pivot = len(cols) - 1
        last = len(cols) - 1
        mask = bytearray(last // 8 + 1)
        acc = bytearray(data)
        c = 0
        for j in parity_row(n - m, m):  # both ascending: one walk
            while c < last and cols[c] < j:
                c += 1
            if cols[c] == j:
                mask[c >> 3] |= 1 << (c & 7)
            else:
                xor_into(acc, self.store.read(j))
        return mask, acc

    def _insert(self, mask, acc):
        """Reduce a row by known fragments and held rows; keep it when a new pivot is left."""
        rows = self.rows
        cols = self.cols
        p = _lowest(mask)
        while p >= 0:
            i = cols[p]
            if self.has(i):
                xor_into(acc, self.store.read(i))
                mask[p >> 3] ^= 1 << (p & 7)
            elif i in rows:
                xor_into(acc, self.store.read_row(i))
                xor_into(mask, rows[i])
            else:
                break
            p = _lowest(mask)
        if p < 0:
            return
        if (len(rows) + 1) * (len(mask) + _ROW_BYTES) > _MATRIX_BYTES:
            self.dropped_rows += 1
            return
        self.store.write_row(i, acc)
        rows[i] = mask

    def solve(self, budget=_SOLVE_XORS_PER_STEP):
        """Back-substitute from the highest pivot column down, each missing fragment written once, until
        the pivot that spends `budget` fragment XORs (0: no bound); return True when the file is
        complete. The order, so the bytes, are those of a solve at once. The pivots are found by one
        walk down the columns over all calls (no rows are added while solving)."""
        rows = self.rows
        cols = self.cols
        spent = 0
        p = self.next_pivot
        while self.solving:
            while cols[p] not in rows:
                p -= 1
            i = cols[p]
            mask = rows.pop(i)
            acc = bytearray(self.store.read_row(i))
            for byte_index in range(len(mask)):
                b = mask[byte_index]
                q = 8 * byte_index
                while b:
                    if b & 1 and q != p:
                        xor_into(acc, self.store.read(cols[q]))
                        spent += 1
                    b >>= 1
                    q += 1
            self.store.write(i, acc)
            self.have[i >> 3] |= 1 << (i & 7)
            self.missing -= 1
            self.solving = self.missing > 0
            if budget and spent >= budget:
                break
        self.next_pivot = p
        return self.missing == 0
