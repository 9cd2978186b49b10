"""ESP32 buffer layouts against the ESP-IDF table ("Channel State Information", Wi-Fi guide)."""

import numpy as np
import pytest

from rfedge.io.subcarriers import (
    ALL_BUFFER_LENGTHS, BUFFER_LENGTHS, INTEL5300_SUBCARRIERS_20, INTEL5300_SUBCARRIERS_40, decode_esp32_buffer,
    encode_esp32_buffer, encode_esp32_buffers, esp32_buffer_layout, first_word_affects, used_subcarriers)

R = lambda a, b: list(range(a, b + 1))  # noqa: E731  inclusive, as the table writes "0~31"

# (length, secondary channel) -> [(part, table indices in buffer order)], typed in from the table
TABLE = {
    (128, 0): [("lltf", R(0, 31) + R(-32, -1))],
    (256, 0): [("lltf", R(0, 31) + R(-32, -1)), ("ht-ltf", R(0, 31) + R(-32, -1))],
    (384, 0): [("lltf", R(0, 31) + R(-32, -1)), ("ht-ltf", R(0, 31) + R(-32, -1)),
               ("stbc-ht-ltf", R(0, 31) + R(-32, -1))],
    (128, 2): [("lltf", R(0, 63))],
    (256, 2): [("lltf", R(0, 63)), ("ht-ltf", R(0, 63))],
    (380, 2): [("lltf", R(0, 63)), ("ht-ltf", R(0, 62)), ("stbc-ht-ltf", R(0, 62))],
    (384, 2): [("lltf", R(0, 63)), ("ht-ltf", R(0, 63) + R(-64, -1))],
    (612, 2): [("lltf", R(0, 63)), ("ht-ltf", R(0, 60) + R(-60, -1)), ("stbc-ht-ltf", R(0, 60) + R(-60, -1))],
    (128, 1): [("lltf", R(-64, -1))],
    (256, 1): [("lltf", R(-64, -1)), ("ht-ltf", R(-64, -1))],
    (376, 1): [("lltf", R(-64, -1)), ("ht-ltf", R(-62, -1)), ("stbc-ht-ltf", R(-62, -1))],
    (384, 1): [("lltf", R(-64, -1)), ("ht-ltf", R(0, 63) + R(-64, -1))],
    (612, 1): [("lltf", R(-64, -1)), ("ht-ltf", R(0, 60) + R(-60, -1)), ("stbc-ht-ltf", R(0, 60) + R(-60, -1))],
}


def test_every_table_entry_and_no_other():
    assert set(TABLE) == {(L, sc) for sc, Ls in BUFFER_LENGTHS.items() for L in Ls}
    assert BUFFER_LENGTHS == {0: [128, 256, 384], 1: [128, 256, 376, 384, 612], 2: [128, 256, 380, 384, 612]}
    assert ALL_BUFFER_LENGTHS == [128, 256, 376, 380, 384, 612]


@pytest.mark.parametrize("key", sorted(TABLE))
def test_layout_matches_table(key):
    L, sc = key
    parts = esp32_buffer_layout(L, sc)
    assert [p.name for p in parts] == [name for name, _ in TABLE[key]]
    off = 0
    for p, (_, ix) in zip(parts, TABLE[key]):
        assert p.offset == off, "parts follow each other: LLTF, HT-LTF, STBC-HT-LTF"
        assert p.indices.tolist() == ix
        off += 2 * len(ix)
    assert off == L, "the byte counts add up to the table's total"


def test_no_secondary_order_is_0_to_31_then_minus_32_to_minus_1():
    for L in (128, 256, 384):
        for p in esp32_buffer_layout(L, 0):
            assert p.indices[:32].tolist() == list(range(32))
            assert p.indices[32:].tolist() == list(range(-32, 0))


def test_20mhz_fields_beside_a_secondary_channel_are_renumbered_from_their_own_centre():
    # below: the primary is the upper half (bins 0..63), its centre is bin 32; above: bin -32
    below = esp32_buffer_layout(256, 2)[1]
    above = esp32_buffer_layout(256, 1)[1]
    assert below.bandwidth_mhz == above.bandwidth_mhz == 20
    assert below.subcarriers.tolist() == list(range(-32, 32))
    assert above.subcarriers.tolist() == list(range(-32, 32))
    ht40 = esp32_buffer_layout(384, 2)[1]
    assert ht40.bandwidth_mhz == 40 and ht40.subcarriers.tolist() == ht40.indices.tolist()


def test_used_subcarrier_sets():
    legacy = used_subcarriers("lltf", 20)
    ht20 = used_subcarriers("ht-ltf", 20)
    ht40 = used_subcarriers("ht-ltf", 40, 1)
    assert len(legacy) == 52 and legacy.tolist() == [k for k in range(-26, 27) if k != 0]
    assert len(ht20) == 56 and ht20.tolist() == [k for k in range(-28, 29) if k != 0]
    assert len(ht40) == 114 and ht40.tolist() == [k for k in range(-58, 59) if k not in (-1, 0, 1)]
    for pilot in (-21, -7, 7, 21):
        assert pilot in legacy and pilot in ht20
    for pilot in (-53, -25, -11, 11, 25, 53):
        assert pilot in ht40
    assert used_subcarriers("lltf", 40, 1).tolist() == legacy.tolist(), "LLTF is always a legacy 20 MHz field"
    with pytest.raises(ValueError):
        used_subcarriers("ht-ltf", 40, 0)
    with pytest.raises(ValueError):
        used_subcarriers("bogus", 20)


@pytest.mark.parametrize("L, sc, part, expect", [
    (128, 0, "auto", 52), (256, 0, "auto", 56), (256, 0, "lltf", 52), (384, 0, "stbc-ht-ltf", 56),
    (384, 1, "auto", 114), (612, 2, "stbc-ht-ltf", 114), (380, 2, "ht-ltf", 56), (376, 1, "auto", 56),
    (128, 1, "auto", 52),
])
def test_every_used_subcarrier_has_a_slot(L, sc, part, expect):
    raw = np.zeros((1, L), np.int8)
    csi, k = decode_esp32_buffer(raw, sc, part)
    assert csi.shape == (1, expect) and len(k) == expect and np.all(np.diff(k) > 0)


def test_decode_golden_by_hand():
    # 256-byte HT20 buffer, no secondary channel: HT-LTF starts at byte 128; subcarrier k >= 0 is
    # slot k, k < 0 is slot 64 + k; each slot is (imag, real)
    raw = np.zeros(256, np.int8)
    raw[128 + 2 * 1] = -3      # k=1 imag
    raw[128 + 2 * 1 + 1] = 7   # k=1 real
    raw[128 + 2 * (64 - 28)] = 5     # k=-28 imag
    raw[128 + 2 * (64 - 28) + 1] = -9
    raw[2 * 5 + 1] = 11        # LLTF k=5 real
    csi, k = decode_esp32_buffer(raw, 0)
    assert csi[k.tolist().index(1)] == 7 - 3j
    assert csi[k.tolist().index(-28)] == -9 + 5j
    lltf, k2 = decode_esp32_buffer(raw, 0, "lltf")
    assert lltf[k2.tolist().index(5)] == 11
    assert csi.dtype == np.complex64


def test_decode_is_vectorised_over_packets_and_keeps_raw():
    rng = np.random.default_rng(1)
    raw = rng.integers(-128, 128, (7, 384), dtype=np.int8)
    keep = raw.copy()
    many, k = decode_esp32_buffer(raw, 0)
    one = np.stack([decode_esp32_buffer(r, 0)[0] for r in raw])
    assert np.array_equal(many, one) and np.array_equal(raw, keep)


def test_first_word_invalid_zeroes_only_what_those_bytes_hold():
    raw = np.full((2, 128), 9, np.int8)
    csi, k = decode_esp32_buffer(raw, 0, first_word_invalid=np.array([True, False]))
    col = k.tolist().index(1)   # bytes 2, 3 hold subcarrier 1 (byte 0, 1: subcarrier 0, unused)
    assert csi[0, col] == 0 and csi[1, col] == 9 + 9j
    assert np.all(np.delete(csi[0], col) == 9 + 9j)
    assert first_word_affects(128, 0) and not first_word_affects(256, 0)   # HT-LTF is not at offset 0
    assert not first_word_affects(128, 1)   # bins -64, -63: guard band


@pytest.mark.parametrize("key", sorted(TABLE))
def test_encode_decode_round_trip(key):
    L, sc = key
    rng = np.random.default_rng(L + sc)
    values = {}
    for p in esp32_buffer_layout(L, sc):
        used = used_subcarriers(p.name, p.bandwidth_mhz, sc)
        values[p.name] = (used, rng.integers(-128, 128, (5, len(used))) + 1j * rng.integers(-128, 128, (5, len(used))))
    raw = encode_esp32_buffers(L, sc, values)
    assert raw.dtype == np.int8 and raw.shape == (5, L)
    for name, (used, v) in values.items():
        csi, k = decode_esp32_buffer(raw, sc, name)
        assert np.array_equal(k, used) and np.array_equal(csi, v.astype(np.complex64))


def test_encode_single_buffer_from_mapping_or_callable():
    a = encode_esp32_buffer(256, 0, {"ht-ltf": {1: 3 - 2j, -1: -4 + 1j}})
    assert (a[128 + 2], a[128 + 3]) == (-2, 3)
    assert (a[128 + 126], a[128 + 127]) == (1, -4)
    b = encode_esp32_buffer(256, 0, {"lltf": lambda k: complex(k, -k)})
    csi, k = decode_esp32_buffer(b, 0, "lltf")
    assert np.array_equal(csi, (k - 1j * k).astype(np.complex64))
    with pytest.raises(ValueError, match="int8"):
        encode_esp32_buffer(256, 0, {"lltf": {1: 200}})
    assert encode_esp32_buffer(256, 0, {"lltf": {1: 200}}, clip=True)[3] == 127
    with pytest.raises(ValueError):
        encode_esp32_buffer(128, 0, {"ht-ltf": {1: 1}})


def test_unknown_layouts_are_refused():
    for L, sc in [(200, 0), (376, 0), (380, 1), (612, 0), (128, 3)]:
        with pytest.raises(ValueError):
            esp32_buffer_layout(L, sc)


def test_intel5300_groups():
    k20 = INTEL5300_SUBCARRIERS_20.tolist()
    assert len(k20) == 30 and k20[:3] == [-28, -26, -24] and k20[13:17] == [-2, -1, 1, 3] and k20[-2:] == [27, 28]
    assert np.all(np.diff(k20) > 0) and 0 not in k20
    k40 = INTEL5300_SUBCARRIERS_40.tolist()
    assert len(k40) == 30 and k40[0] == -58 and k40[-1] == 58 and np.all(np.diff(k40) > 0)
