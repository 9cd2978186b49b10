"""esp-csi and ESP32-CSI-Tool logs: real files, golden values by hand, dirty logs, the writer."""

import numpy as np
import pytest

from rfedge.errors import RfedgeError
from rfedge.io import esp_csi
from rfedge.io.detect import parse_file
from rfedge.io.esp_csi import (
    ESP_CSI_COLUMNS, format_csi_data_line, parse_esp_csi_bytes, read_esp_csi, write_esp_csi_log)
from rfedge.io.subcarriers import encode_esp32_buffers, used_subcarriers

TOOL = "esp32-csi-tool_example_csi.csv"
ESPCSI = "esp-csi_csi_data_with_head.csv"


# Every test twice: with the C text parser and with the numpy fallback (conftest.text_converter).
pytestmark = pytest.mark.usefixtures("text_converter")


def parse(text, **kw):
    data = text.encode() if isinstance(text, str) else text
    return parse_esp_csi_bytes(data, source="t", **kw)


def payload_tokens(line: str) -> list[int]:
    """The numbers between the brackets of one line, read the plain way."""
    inner = line[line.index("[") + 1:line.index("]")]
    return [int(t) for t in inner.replace(",", " ").split()]


def rng_raw(n=6, L=256, seed=0):
    return np.random.default_rng(seed).integers(-60, 60, (n, L)).astype(np.int8)


def esp_lines(raw, **fields):
    return [format_csi_data_line(r, {"local_timestamp": 1000 * (i + 1), **fields}) for i, r in enumerate(raw)]


def tool_line(raw_row, ts=80272146, sc=1, len_field=384, real_ts="80.363225", extra=""):
    head = (f"CSI_DATA,AP,3C:71:BF:6D:2A:78,-73,11,1,0,1,1,1,0,0,0,0,-93,0,1,{sc},{ts},0,101,0,0,{real_ts},"
            f"{len_field},")
    return head + "[" + "".join(f"{v} " for v in raw_row) + "]" + extra


# ---- real files --------------------------------------------------------------------------------

def test_real_esp32_csi_tool_example(real_data):
    path = real_data / TOOL
    cap = parse_file(path)
    assert cap.format == "esp32-csi-tool" and cap.packets == 13 and cap.part == "lltf"
    assert cap.raw.shape == (13, 128) and cap.secondary_channel == 1 and cap.bandwidth_mhz == 20
    assert len(cap.subcarriers) == 52 and cap.csi.shape == (13, 1, 52)
    assert sum(cap.skipped.values()) == 0
    # len says 384 on 12 lines, but 128 values follow: the payload is the truth, noted not skipped
    assert cap.notes["len field differs from payload (payload kept)"] == 12
    assert cap.meta["len"].tolist().count(384) == 12
    assert cap.meta["mac"][0] == "3C:71:BF:6D:2A:78" and cap.meta["role"][0] == "AP"
    assert cap.meta["real_timestamp"][0] == 80.363225
    lines = path.read_text().splitlines()
    first = payload_tokens(lines[0])
    assert cap.raw[0].tolist() == first
    assert cap.timestamps_us[0] == 80272146.0
    # golden by hand: secondary channel above, 128 bytes = LLTF over bins -64..-1, so subcarrier k
    # of the 20 MHz channel is bin k-32, slot (k-32)+64 = k+32; each slot is (imag, real)
    for k in (-26, -21, -7, -1, 1, 7, 21, 26):
        slot = k + 32
        want = first[2 * slot + 1] + 1j * first[2 * slot]
        assert cap.csi[0, 0, cap.subcarriers.tolist().index(k)] == want
    assert cap.csi[0, 0, cap.subcarriers.tolist().index(-26)] == 12 + 23j   # "... 23 12 ..." in the text


def test_real_esp_csi_with_header(real_data):
    path = real_data / ESPCSI
    cap = parse_file(path)
    assert cap.format == "esp-csi" and cap.packets == 116 and cap.part == "ht-ltf"
    assert cap.raw.shape == (116, 384) and len(cap.subcarriers) == 56 and cap.secondary_channel == 0
    assert cap.meta["first_word"][0] == 1 and cap.meta["id"][:3].tolist() == [56, 57, 58]
    line = path.read_text().splitlines()[1]
    tok = payload_tokens(line)
    assert cap.raw[0].tolist() == tok
    # HT-LTF is bytes 128..255; subcarrier k >= 0 at slot k, k < 0 at slot 64 + k
    for k in (-28, -21, -7, -1, 1, 7, 21, 28):
        slot = k if k >= 0 else 64 + k
        want = tok[128 + 2 * slot + 1] + 1j * tok[128 + 2 * slot]
        assert cap.csi[0, 0, cap.subcarriers.tolist().index(k)] == want
    assert 8 < cap.rate_hz < 12 and 12 < cap.duration_s < 14


def test_real_parts_and_first_word(real_data):
    path = real_data / ESPCSI
    lltf = read_esp_csi(path, part="lltf")
    assert len(lltf.subcarriers) == 52 and lltf.part == "lltf"
    col = lltf.subcarriers.tolist().index(1)
    assert np.all(lltf.csi[:, 0, col] == 0), "first_word=1: bytes 2,3 (subcarrier 1) are not trusted"
    assert lltf.raw[0, 2:4].tolist() == payload_tokens(path.read_text().splitlines()[1])[2:4], "raw kept as is"
    assert lltf.notes["first word invalid (its subcarriers set to 0 in csi)"] == 116
    stbc = read_esp_csi(path, part="stbc-ht-ltf")
    tok = payload_tokens(path.read_text().splitlines()[1])
    assert stbc.csi[0, 0, stbc.subcarriers.tolist().index(2)] == tok[256 + 5] + 1j * tok[256 + 4]
    with pytest.raises(RfedgeError, match="no ht-ltf field"):
        read_esp_csi(real_data / TOOL, part="ht-ltf")


def test_forced_format_must_match(real_data):
    with pytest.raises(RfedgeError, match="unexpected field count"):
        parse_file(real_data / TOOL, format="esp-csi")
    assert parse_file(real_data / TOOL, format="esp32-csi-tool").packets == 13


# ---- dirty logs --------------------------------------------------------------------------------

def test_log_lines_ansi_and_line_endings():
    raw = rng_raw(4)
    lines = esp_lines(raw)
    text = ("\x1b[0;32mI (312) wifi: wifi driver task: 3ffc1e4c\x1b[0m\r\n"
            + lines[0] + "\r\n"
            + "\x1b[0;33mW (400) csi: something\x1b[0m\r\r\n"
            + "\x1b[0m" + lines[1] + "\x1b[0m\r\r\n"
            + "ets Jun  8 2016 00:22:57\n\n"
            + lines[2] + "\r" + lines[3])
    cap = parse(text)
    assert cap.packets == 4 and np.array_equal(cap.raw, raw)
    assert sum(cap.skipped.values()) == 0, "ordinary log lines are not counted as skipped"


def test_merged_and_cut_records():
    raw = rng_raw(5)
    lines = esp_lines(raw)
    cut = lines[2][: lines[2].index("[") + 40]
    text = "\n".join([
        lines[0] + lines[1],                        # two records on one line
        cut + "I (55) wifi: log output cut the record",
        cut,                                        # cut at the end of the line
        lines[3][:30],                              # cut before the payload
        "junk" + lines[3],                          # output glued before a record
        lines[4] + "I (56) wifi: glued after",
    ])
    cap = parse(text)
    assert np.array_equal(cap.raw, raw[[0, 1, 3, 4]])
    assert cap.skipped == {"payload truncated": 2, "record truncated before payload": 1}


def test_record_cut_then_next_record_on_same_line():
    raw = rng_raw(2)
    a, b = esp_lines(raw)
    cap = parse(a[:-30] + b + "\n")
    assert cap.packets == 1 and np.array_equal(cap.raw[0], raw[1])
    assert cap.skipped["payload truncated"] == 1


def test_garbled_records_are_counted_by_reason():
    raw = rng_raw(8)
    lines = esp_lines(raw, rssi=-40)
    bad = list(lines)
    bad[1] = bad[1].replace(",-40,", ",-4x0,", 1)                            # bad head number
    bad[2] = bad[2].replace("[", "[12a,", 1)                                  # bad payload number
    bad[3] = bad[3].replace("[", "[1,", 1)                                    # odd length
    bad[4] = bad[4].replace("[", "[1,2,", 1)                                  # 258: unknown length
    bad[5] = bad[5].replace("[", "[1000,", 1).replace("]", ",1]", 1)          # out of int8
    bad[6] = bad[6].replace("CSI_DATA,", "CSI_DATA,7,", 1)                    # 26 fields: the mac lands
    cap = parse("\n".join(bad))                                              # in an integer column
    assert np.array_equal(cap.raw, raw[[0, 7]])
    assert cap.skipped == {"bad number": 3, "odd payload length": 1, "unknown buffer length": 1,
                           "value out of int8 range": 1}


def test_dominant_layout_is_kept():
    a = esp_lines(rng_raw(5, 256, 1))
    b = esp_lines(rng_raw(2, 128, 2))
    c = esp_lines(rng_raw(1, 384, 3), secondary_channel=1)   # 384 above: HT40
    cap = parse("\n".join(b[:1] + a[:3] + c + b[1:] + a[3:]))
    assert cap.packets == 5 and cap.raw.shape[1] == 256
    assert cap.skipped == {"layout differs from dominant": 3}
    assert cap.timestamps_us.tolist() == [1000, 2000, 3000, 4000, 5000]


def test_header_located_by_name_with_reordered_and_extra_columns():
    raw = rng_raw(3)
    cols = list(ESP_CSI_COLUMNS)
    order = [0, 2, 1] + list(range(3, 24))        # mac before id
    header = ",".join(cols[i] for i in order) + ",note,data,label,host_us"
    rows = []
    for i, r in enumerate(raw):
        vals = {c: 0 for c in cols[1:-1]}
        vals.update(id=40 + i, mac="aa:bb:cc:00:11:22", rssi=-50 - i, local_timestamp=777 + i, len=256,
                    first_word=0)
        head = ["CSI_DATA"] + [str(vals[cols[j]]) for j in order[1:]]
        rows.append(",".join(head) + f",n{i}," + '"[' + ",".join(map(str, r)) + f']",{"up" if i else "down"},{9.5 + i}')
    cap = parse(header + "\r\n" + "\r\n".join(rows) + "\r\n")
    assert cap.packets == 3 and np.array_equal(cap.raw, raw)
    assert cap.meta["id"].tolist() == [40, 41, 42] and cap.meta["rssi"].tolist() == [-50, -51, -52]
    assert cap.meta["mac"][1] == "aa:bb:cc:00:11:22" and cap.meta["note"].tolist() == ["n0", "n1", "n2"]
    assert cap.meta["label"].tolist() == ["down", "up", "up"] and cap.meta["host_us"].tolist() == [9.5, 10.5, 11.5]
    assert cap.timestamps_us.tolist() == [777, 778, 779]


def test_records_not_matching_the_header():
    raw = rng_raw(3)
    header = ",".join(ESP_CSI_COLUMNS) + ",label"
    lines = esp_lines(raw)
    # a record cut before its label still has the positional layout: kept, label unknown
    cap = parse("\n".join([header, lines[0] + ",x", lines[1], "CSI_DATA,1,2,[1,2]", lines[2] + ",z"]))
    assert np.array_equal(cap.raw, raw) and cap.meta["label"].tolist() == ["x", "", "z"]
    assert cap.skipped == {"field count differs from header": 1}
    # a garbled header costs nothing: records fall back to the positional layout
    cap = parse("\n".join([header.replace(",mac,", ",mac,,"), *lines]))
    assert np.array_equal(cap.raw, raw) and "label" not in cap.meta


def test_extra_trailing_columns_without_header():
    raw = rng_raw(3)
    lines = [ln + f",lbl{i},{i * 0.5}" for i, ln in enumerate(esp_lines(raw))]
    cap = parse("\n".join(lines))
    assert cap.meta["extra0"].tolist() == ["lbl0", "lbl1", "lbl2"] and cap.meta["extra1"].tolist() == [0, 0.5, 1.0]


def test_esp32_csi_tool_variants():
    raw = rng_raw(3, 128)
    text = "\n".join(tool_line(r, ts=5_000 + i, len_field=999) for i, r in enumerate(raw))
    cap = parse(text)
    assert cap.format == "esp32-csi-tool" and np.array_equal(cap.raw, raw)
    assert cap.notes["len field differs from payload (payload kept)"] == 3
    assert cap.meta["real_timestamp"].tolist() == [80.363225] * 3 and cap.timestamps_us[0] == 5000


def test_esp32_csi_tool_header_and_a_header_glued_to_a_record():
    from rfedge.io.esp_csi import CSI_TOOL_COLUMNS
    raw = rng_raw(3, 128)
    header = ",".join(CSI_TOOL_COLUMNS)            # its payload column is called CSI_DATA
    lines = [tool_line(r, ts=10 + i) for i, r in enumerate(raw)]
    cap = parse("\n".join([header, *lines]))
    assert cap.format == "esp32-csi-tool" and np.array_equal(cap.raw, raw) and sum(cap.skipped.values()) == 0
    glued = parse("\n".join([header + lines[0], *lines[1:]]))
    assert np.array_equal(glued.raw, raw)


def test_space_separated_esp_csi_payload():
    raw = rng_raw(3)
    lines = []
    for ln in esp_lines(raw):
        head, payload = ln.split('"[')
        lines.append(head + "[ " + payload[:-2].replace(",", " ") + "]")
    cap = parse("\n".join(lines))
    assert np.array_equal(cap.raw, raw)


def test_secondary_channel_layouts_decode():
    rng = np.random.default_rng(3)
    used = used_subcarriers("ht-ltf", 40, 2)
    vals = rng.integers(-50, 50, (4, len(used))) + 1j * rng.integers(-50, 50, (4, len(used)))
    raw = encode_esp32_buffers(384, 2, {"ht-ltf": (used, vals)})
    cap = parse("\n".join(esp_lines(raw, secondary_channel=2, bandwidth=1)))
    assert cap.bandwidth_mhz == 40 and len(cap.subcarriers) == 114 and cap.secondary_channel == 2
    assert np.array_equal(cap.csi[:, 0], vals.astype(np.complex64))


def test_timestamps_unwrap_the_32_bit_device_clock():
    raw = rng_raw(3)
    lines = [format_csi_data_line(r, {"local_timestamp": t}) for r, t in zip(raw, [2**32 - 100, 2**32 - 10, 5])]
    cap = parse("\n".join(lines))
    assert cap.timestamps_us.tolist() == [2**32 - 100, 2**32 - 10, 2**32 + 5]


def test_no_usable_packet_is_one_clear_error():
    with pytest.raises(RfedgeError, match="no usable CSI packet"):
        parse("I (1) boot: hello\nnothing here\n")
    with pytest.raises(RfedgeError, match="payload truncated"):
        parse("CSI_DATA,1,aa:bb:cc:dd:ee:ff,1,2,3,4,5,6,7,8,9,1,2,3,4,5,6,7,8,9,1,128,0,\"[1,2,3")
    assert parse(b"", require=False).packets == 0


def test_clean_files_take_the_bulk_path(real_data, monkeypatch, text_converter):
    def no_strict(*a):
        raise AssertionError("a clean record went the slow way")

    monkeypatch.setattr(esp_csi, "_strict", no_strict)
    if text_converter == "c":   # and the C conversions take all of it: numpy's reader is not needed
        monkeypatch.setattr(esp_csi, "_loadtxt", no_strict)
        monkeypatch.setattr(np, "fromstring", no_strict)
    for name in (TOOL, ESPCSI):
        assert parse_file(real_data / name).packets > 0
    raw = rng_raw(300)
    monkeypatch.setattr(esp_csi, "_SMALL", 0)       # and through the vectorised line framer
    assert np.array_equal(parse("\n".join(esp_lines(raw, rssi=-3))).raw, raw)


def _all_fields(cap):
    return (cap.format, cap.packets, cap.raw.tobytes(), cap.csi.tobytes(), cap.timestamps_us.tobytes(), cap.part,
            cap.subcarriers.tolist(), cap.bandwidth_mhz, cap.secondary_channel, cap.seq.tolist(),
            dict(cap.skipped), dict(cap.notes), {k: (v.dtype.str, v.tolist()) for k, v in cap.meta.items()})


def test_plain_files_are_framed_whole_with_the_same_result(real_data, monkeypatch):
    from rfedge.io import esp_csi
    raw = rng_raw(5)
    texts = {name: (real_data / name).read_bytes() for name in (TOOL, ESPCSI)}
    texts["quoted"] = ("\r\n".join([",".join(ESP_CSI_COLUMNS)] + esp_lines(raw)) + "\r\n").encode()
    texts["one record"] = (esp_lines(raw)[0] + "\n").encode()
    texts["one bad number"] = "\n".join(esp_lines(raw)).replace(",-5", ",-5x", 1).replace("[", "[1000,", 1).encode()
    monkeypatch.setattr(esp_csi, "_FAST_MAX", -1)                    # line by line
    general = {k: _all_fields(parse(v, require=False)) for k, v in texts.items()}
    monkeypatch.setattr(esp_csi, "_FAST_MAX", 1 << 18)

    def no_line_framing(*a):
        raise AssertionError("a plain log was framed line by line")
    monkeypatch.setattr(esp_csi, "feed_text", no_line_framing)
    for k, v in texts.items():
        assert _all_fields(parse(v, require=False)) == general[k], k


def test_not_plain_logs_are_framed_line_by_line(monkeypatch):
    from rfedge.io import esp_csi
    raw = rng_raw(4)
    lines = esp_lines(raw)
    calls = []
    feed = esp_csi.feed_text
    monkeypatch.setattr(esp_csi, "feed_text", lambda col, data: (calls.append(1), feed(col, data)))
    for text in ["\n".join(lines[:2]) + "\n\n" + lines[2],                 # a blank line
                 "\n".join(lines) + ",label",                              # something after a payload
                 lines[0] + lines[1],                                      # two records on one line
                 "I (1) boot\n" + "\n".join(lines),                        # a log line
                 "\n".join(lines[:3]) + "\n" + lines[3].replace("CSI_DATA,", "CSI_DATA,7,", 1)]:  # field count
        calls.clear()
        parse(text, require=False)
        assert calls, text[:50]


def test_parse_is_deterministic(real_data):
    a = parse_file(real_data / ESPCSI)
    b = parse_file(real_data / ESPCSI)
    assert np.array_equal(a.csi, b.csi) and a.summary() == b.summary()
    assert all(np.array_equal(a.meta[k], b.meta[k]) for k in a.meta)


# ---- writer ------------------------------------------------------------------------------------

def test_writer_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    n = 40
    raw = rng.integers(-128, 128, (n, 256)).astype(np.int8)
    fields = {"rssi": rng.integers(-90, -30, n), "rate": 11, "sig_mode": 1, "mcs": 7, "bandwidth": 0,
              "channel": 6, "secondary_channel": 0, "local_timestamp": 123 + 10_000 * np.arange(n),
              "first_word": 0, "noise_floor": -92, "mac": "12:34:56:78:9a:bc"}
    extra = {"label": ["idle"] * 20 + ["swipe"] * 20, "host_time": np.arange(n) * 0.25}
    path = tmp_path / "log.csv"
    write_esp_csi_log(path, raw, fields, extra_columns=extra)
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"], "atomic: no temp file left behind"
    text = path.read_text()
    assert text.splitlines()[0] == ",".join(ESP_CSI_COLUMNS) + ",label,host_time"
    assert text.splitlines()[1].startswith("CSI_DATA,0,12:34:56:78:9a:bc,") and '"[' in text
    cap = parse_file(path)
    assert cap.format == "esp-csi" and np.array_equal(cap.raw, raw)
    assert cap.timestamps_us.tolist() == fields["local_timestamp"].tolist()
    assert cap.meta["rssi"].tolist() == fields["rssi"].tolist() and cap.meta["len"].tolist() == [256] * n
    assert cap.meta["id"].tolist() == list(range(n)) and cap.meta["mac"][0] == "12:34:56:78:9a:bc"
    assert cap.meta["label"].tolist() == extra["label"]
    assert cap.meta["host_time"].tolist() == extra["host_time"].tolist()
    for k in ("rate", "mcs", "channel", "noise_floor"):
        assert set(cap.meta[k].tolist()) == {fields[k]}
    write_esp_csi_log(tmp_path / "plain.csv", raw, fields, header=False)
    again = parse_file(tmp_path / "plain.csv")
    assert np.array_equal(again.raw, raw) and again.timestamps_us.tolist() == cap.timestamps_us.tolist()


def test_format_line_and_writer_errors(tmp_path):
    line = format_csi_data_line(np.array([1, -2, 3, -4], np.int8), {"rssi": -40, "local_timestamp": 9})
    assert line.startswith("CSI_DATA,0,00:00:00:00:00:00,-40,") and line.endswith(',4,0,"[1,-2,3,-4]"')
    assert line.count(",") == 24 + 3
    with pytest.raises(ValueError):
        write_esp_csi_log(tmp_path / "x", np.zeros((2, 128), np.int8), {"bogus": 1})
    with pytest.raises(ValueError):
        write_esp_csi_log(tmp_path / "x", np.zeros((2, 128), np.int8), {"rssi": [1, 2, 3]})
    with pytest.raises(ValueError):
        write_esp_csi_log(tmp_path / "x", np.full((1, 128), 300), {})
    with pytest.raises(ValueError):
        write_esp_csi_log(tmp_path / "x", np.zeros((1, 128), np.int8), {"mac": "a,b"})
    with pytest.raises(ValueError, match="integer column"):
        write_esp_csi_log(tmp_path / "x", np.zeros((1, 128), np.int8), {"local_timestamp": [1.5]})
    assert not (tmp_path / "x").exists()
