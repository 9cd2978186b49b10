"""int8 .npz clips: key choice, width -> subcarriers, metadata, and one clear error for bad files."""

import numpy as np
import pytest

from rfedge.errors import RfedgeError
from rfedge.io.detect import parse_file
from rfedge.io.npz import read_npz
from rfedge.io.subcarriers import decode_esp32_buffer, encode_esp32_buffers, used_subcarriers


def buffers(n=10, L=256, sc=0, seed=0):
    return np.random.default_rng(seed).integers(-128, 128, (n, L)).astype(np.int8)


def test_device_buffers_decode_like_the_log_reader(tmp_path):
    raw = buffers()
    np.savez(tmp_path / "a.npz", csi_data=raw, label=np.arange(10), timestamps_us=np.arange(10) * 1e4,
             chip=np.array("esp32c3"), fs=np.array(100.0), per_clip=np.zeros(3))
    cap = parse_file(tmp_path / "a.npz")
    want, k = decode_esp32_buffer(raw, 0)
    assert cap.format == "npz" and cap.part == "ht-ltf" and np.array_equal(cap.csi[:, 0], want)
    assert np.array_equal(cap.subcarriers, k) and np.array_equal(cap.raw, raw)
    assert cap.rate_hz == pytest.approx(100.0)
    assert set(cap.meta) == {"label", "timestamps_us"}, "only per-packet arrays become metadata"
    assert len(read_npz(tmp_path / "a.npz", part="lltf").subcarriers) == 52


def test_key_csi_and_the_only_2d_integer_array(tmp_path):
    raw = buffers(5, 128)
    np.savez(tmp_path / "b.npz", csi=raw.astype(np.int16))
    np.savez(tmp_path / "c.npz", whatever=raw, t=np.arange(5))
    assert parse_file(tmp_path / "b.npz").packets == 5
    c = parse_file(tmp_path / "c.npz", format="npz")
    assert c.packets == 5 and len(c.subcarriers) == 52 and "t" in c.meta


def test_selected_subcarriers_width(tmp_path):
    rng = np.random.default_rng(2)
    for s, bw, sc in ((52, 20, 0), (56, 20, 0), (114, 40, 1)):
        pairs = rng.integers(-100, 100, (4, 2 * s)).astype(np.int8)
        np.savez(tmp_path / f"s{s}.npz", csi_data=pairs, secondary_channel=np.full(4, sc))
        cap = read_npz(tmp_path / f"s{s}.npz")
        assert len(cap.subcarriers) == s and cap.bandwidth_mhz == bw and cap.raw is None
        # [imag, real] pairs, subcarriers ascending
        assert cap.csi[1, 0, 3] == pairs[1, 7] + 1j * pairs[1, 6]
        assert cap.subcarriers.tolist() == used_subcarriers("lltf" if s == 52 else "ht-ltf", bw, sc).tolist()


def test_secondary_channel_and_first_word_are_honoured(tmp_path):
    used = used_subcarriers("ht-ltf", 40, 2)
    vals = np.ones((3, len(used))) * (2 - 3j)
    raw = encode_esp32_buffers(384, 2, {"ht-ltf": (used, vals)})
    np.savez(tmp_path / "h.npz", csi_data=raw, secondary_channel=np.int64(2))
    cap = read_npz(tmp_path / "h.npz")
    assert len(cap.subcarriers) == 114 and np.all(cap.csi == 2 - 3j)
    raw = np.full((2, 128), 5, np.int8)
    np.savez(tmp_path / "f.npz", csi_data=raw, first_word_invalid=np.array([1, 0]))
    cap = read_npz(tmp_path / "f.npz")
    col = cap.subcarriers.tolist().index(1)
    assert cap.csi[0, 0, col] == 0 and cap.csi[1, 0, col] == 5 + 5j


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"this is not a zip"), "not a readable .npz"),
    (lambda p: p.write_bytes(b"PK\x03\x04broken zip"), "not a readable .npz"),
    (lambda p: np.savez(p, csi=np.array([{"a": 1}], dtype=object)), "pickle"),
    (lambda p: np.savez(p, csi=np.zeros((4, 128))), "2-D integer"),
    (lambda p: np.savez(p, a=np.zeros((4, 128), np.int8), b=np.zeros((4, 128), np.int8)), "2 2-D integer"),
    (lambda p: np.savez(p, label=np.arange(3)), "no 2-D integer"),
    (lambda p: np.savez(p, csi=np.zeros((4, 100), np.int8)), "neither a known ESP32 buffer"),
    (lambda p: np.savez(p, csi=np.full((4, 128), 300)), "int8 range"),
    (lambda p: np.savez(p, csi=np.zeros((0, 128), np.int8)), "no usable CSI packet"),
    (lambda p: np.save(p, np.zeros((4, 128), np.int8)), "not an .npz"),
])
def test_bad_npz_is_one_clear_error(tmp_path, make, message):
    p = tmp_path / "bad.npz"
    make(p)
    if not p.exists():          # np.save adds .npy
        p = tmp_path / "bad.npz.npy"
    with pytest.raises(RfedgeError, match=message):
        read_npz(p)
    with pytest.raises(RfedgeError):
        parse_file(p, format="npz")


def test_missing_file(tmp_path):
    with pytest.raises(RfedgeError, match="not found"):
        read_npz(tmp_path / "nope.npz")
