"""Impinj ItemTest CSV: golden values by hand, timestamps, units, damaged input, round trip."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfedge.errors import RfedgeError
from rfedge.io.impinj import (RfidReads, parse_timestamp, read_itemtest_csv, sniff_itemtest, to_series,
                              write_itemtest_csv)

EPC1 = "E2003412DC03011800000001"
EPC2 = "E2003412DC03011800000002"

# Reordered columns, spaces around names, an extra column (CRHandle), decimal commas in quotes,
# a second timestamp style, CRLF line ends, and five damaged rows.
HAND = (
    "// 3/5/2024 2:22:01 PM\r\n"
    "// ReaderName=SpeedwayR-11-22-33, AntennaIDs=1,2, ModeIndex=1002\r\n"
    "Antenna , EPC ,Timestamp,  RSSI ,TID,Frequency,Hostname,PhaseAngle,DopplerFrequency,CRHandle\r\n"
    f'1,{EPC1},2024-03-05T14:22:01.123456,"-69,5",,"866,9",SpeedwayR-11-22-33,"3,1416","-1,25",AB12\r\n'
    f"2,{EPC1},2024-03-05T14:22:01.223456,-70.0,,866.9,SpeedwayR-11-22-33,1.5,0.5,AB13\r\n"
    f'1,{EPC2},"2024/03/05 14:22:01.323456",-61,,866.9,SpeedwayR-11-22-33,6.2,,AB14\r\n'
    "1,NOT-HEX!,2024-03-05T14:22:01.4,-60,,866.9,SpeedwayR-11-22-33,1.0,0,AB15\r\n"
    f"x,{EPC1},2024-03-05T14:22:01.5,-60,,866.9,SpeedwayR-11-22-33,1.0,0,AB16\r\n"
    f"1,{EPC1},yesterday,-60,,866.9,SpeedwayR-11-22-33,1.0,0,AB17\r\n"
    f'1,{EPC1},2024-03-05T14:22:01.6,"-6,0,5",,866.9,SpeedwayR-11-22-33,1.0,0,AB18\r\n'
    f"1,{EPC2},2024-03\r\n"
    "\r\n"
    f"2,{EPC2},2024-03-05T16:22:02.123456+02:00,-65.5,,866.9,SpeedwayR-11-22-33,0.25,-2.0625,AB19\r\n"
)


@pytest.fixture
def hand_file(tmp_path):
    p = tmp_path / "hand.csv"
    p.write_bytes(HAND.encode())
    return p


def test_hand_written_file_golden_values(hand_file):
    r = read_itemtest_csv(hand_file)
    # Times by hand: stamps without an offset count as UTC; 16:22:02.123456+02:00 is 14:22:02.123456
    # UTC, one second after the first read.
    assert len(r) == 4
    assert r.t_s.tolist() == pytest.approx([0.0, 0.1, 0.2, 1.0], abs=1e-9)
    assert r.epc.tolist() == [EPC1, EPC1, EPC2, EPC2]
    assert r.antenna.tolist() == [1, 2, 1, 2]
    assert r.rss_dbm.tolist() == [-69.5, -70.0, -61.0, -65.5]
    assert r.frequency_mhz.tolist() == [866.9] * 4
    assert r.phase_unit == "rad"                       # largest phase 6.2 < 2π
    assert r.phase_rad.tolist() == pytest.approx([3.1416, 1.5, 6.2, 0.25])
    assert r.doppler_hz[[0, 1, 3]].tolist() == [-1.25, 0.5, -2.0625]
    assert math.isnan(r.doppler_hz[2])
    assert r.missing == {"doppler": 1}
    assert r.extra["CRHandle"].tolist() == ["AB12", "AB13", "AB14", "AB19"]
    assert r.hostname.tolist() == ["SpeedwayR-11-22-33"] * 4
    assert r.line.tolist() == [4, 5, 6, 13]
    assert dict(r.skipped) == {"bad_epc": 1, "bad_antenna": 1, "bad_timestamp": 1, "bad_rss": 1,
                               "too_few_fields": 1}
    assert r.comments == ["3/5/2024 2:22:01 PM", "ReaderName=SpeedwayR-11-22-33, AntennaIDs=1,2, ModeIndex=1002"]
    assert r.meta == {"ReaderName": "SpeedwayR-11-22-33", "AntennaIDs": "1,2", "ModeIndex": "1002"}
    assert r.columns[:3] == ["Antenna", "EPC", "Timestamp"]
    # 2024-03-05T14:22:01.123456 in ns since the epoch: 19787 days from 1970-01-01 to 2024-03-05.
    assert r.t0_ns == (19787 * 86400 + 14 * 3600 + 22 * 60 + 1) * 10**9 + 123456000
    s = r.summary()
    assert s["reads"] == 4 and s["skipped"] == 5 and s["antennas"] == [1, 2]


def test_series_per_tag_and_antenna(hand_file):
    ser = to_series(read_itemtest_csv(hand_file))
    assert sorted(ser) == [(EPC1, 1), (EPC1, 2), (EPC2, 1), (EPC2, 2)]
    assert ser[(EPC1, 1)]["rss_dbm"].tolist() == [-69.5]
    assert ser[(EPC2, 2)]["t_s"].tolist() == [1.0]
    assert set(ser[(EPC1, 2)]) == {"t_s", "rss_dbm", "phase_rad", "doppler_hz", "frequency_mhz"}


def test_commented_header_as_itemtest_writes_it(tmp_path):
    p = tmp_path / "it.csv"
    p.write_text("// ReaderName=R, AntennaIDs=1\n"
                 "// Timestamp, EPC, TID, Antenna, RSSI, Frequency, Hostname, PhaseAngle, DopplerFrequency, CRHandle\n"
                 f"2025-07-10T16:57:37.3355920+03:00,{EPC1},,1,-58.5,865.7,R,180,0,\n"
                 f"2025-07-10T16:57:37.3855920+03:00,{EPC1},,1,-58.0,865.7,R,90,0,\n")
    r = read_itemtest_csv(p)
    assert r.phase_unit == "deg"                        # 180 > 2π
    assert r.phase_rad.tolist() == pytest.approx([math.pi, math.pi / 2])
    assert r.t_s.tolist() == pytest.approx([0.0, 0.05], abs=1e-12)
    assert r.comments == ["ReaderName=R, AntennaIDs=1"]
    assert sniff_itemtest(p.read_text())


def test_phase_counts_negative_radians_and_khz(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("Timestamp,EPC,Antenna,RSSI,Frequency,PhaseAngle\n"
                 f"1000,{EPC1},1,-60,866900,4000\n"
                 f"2000,{EPC1},1,-60,866900,1024\n")
    r = read_itemtest_csv(p)
    assert r.time_kind == "us" and r.t_s.tolist() == pytest.approx([0.0, 0.001])
    assert r.phase_unit == "counts"
    assert r.phase_rad.tolist() == pytest.approx([4000 * 2 * math.pi / 4096, math.pi / 2])
    assert r.frequency_mhz.tolist() == [866.9, 866.9]
    p.write_text("Timestamp,EPC,Antenna,RSSI,PhaseAngle\n"
                 f"1,{EPC1},1,-60,-1.5707963267948966\n")
    assert read_itemtest_csv(p).phase_rad.tolist() == pytest.approx([1.5 * math.pi])


@pytest.mark.parametrize("text, want", [
    ("1970-01-01T00:00:01.5", ("datetime", 1_500_000_000)),
    ("1970-01-02 00:00:00Z", ("datetime", 86400 * 10**9)),
    ("1970-01-01T02:00:00.0000001+02:00", ("datetime", 100)),
    ("1970-01-01T00:00:00-0130", ("datetime", 5400 * 10**9)),
    ("1970/01/01 00:01:00.25", ("datetime", 60_250_000_000)),
    ("1/2/1970 12:00:00 AM", ("datetime", 86400 * 10**9)),          # month first, midnight
    ("1/1/1970 1:00:00.5 PM", ("datetime", 13 * 3600 * 10**9 + 500_000_000)),
    ("1709648521123456", ("us", 1709648521123456000)),
    (" 12,5 ", ("us", 12500)),
    ("2024-02-30T00:00:00", None),
    ("2024-03-05T25:00:00", None),
    ("1/1/1970 13:00:00 PM", None),
    ("2024-03-05", None),
    ("", None),
    ("-5", None),
])
def test_timestamp_formats(text, want):
    assert parse_timestamp(text) == want


def test_kind_mismatch_rows_are_skipped(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("Timestamp,EPC,Antenna,RSSI\n"
                 f"2024-03-05T14:22:01,{EPC1},1,-60\n"
                 f"123456,{EPC1},1,-60\n")
    r = read_itemtest_csv(p)
    assert len(r) == 1 and r.skipped == {"timestamp_kind_mismatch": 1}


def test_glued_rows_and_repeated_header_are_skipped(tmp_path):
    row = f"2024-03-05T14:22:01,{EPC1},,1,-60,866.9,R,1.0,0"
    p = tmp_path / "g.csv"
    p.write_text("Timestamp,EPC,TID,Antenna,RSSI,Frequency,Hostname,PhaseAngle,DopplerFrequency\n"
                 f"{row}\n{row}{row}\n"
                 "Timestamp,EPC,TID,Antenna,RSSI,Frequency,Hostname,PhaseAngle,DopplerFrequency\n"
                 f"{row}\n")
    r = read_itemtest_csv(p)
    assert len(r) == 2
    assert r.skipped == {"too_many_fields": 1, "repeated_header": 1}


def test_errors_are_one_clear_line(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(RfedgeError, match=r"empty\.csv: no ItemTest header"):
        read_itemtest_csv(empty)
    nohead = tmp_path / "nohead.csv"
    nohead.write_text(f"2024-03-05T14:22:01,{EPC1},,1,-60\n")
    with pytest.raises(RfedgeError, match="no ItemTest header"):
        read_itemtest_csv(nohead)
    norss = tmp_path / "norss.csv"
    norss.write_text("// c\nTimestamp,EPC,Antenna,Frequency\n")
    with pytest.raises(RfedgeError, match=r"norss\.csv:2: field 'RSSI': header has no RSSI column") as e:
        read_itemtest_csv(norss)
    assert "\n" not in str(e.value)
    onlybad = tmp_path / "onlybad.csv"
    onlybad.write_text(f"Timestamp,EPC,Antenna,RSSI\nnope,{EPC1},1,-60\n")
    with pytest.raises(RfedgeError, match=r"onlybad\.csv:1: no usable tag read .*bad_timestamp 1"):
        read_itemtest_csv(onlybad)
    with pytest.raises(RfedgeError, match="cannot read file"):
        read_itemtest_csv(tmp_path / "missing.csv")
    with pytest.raises(RfedgeError, match="cannot read file"):
        read_itemtest_csv(tmp_path)


# ---- damaged and random input -----------------------------------------------------------------

def _good_file_bytes(n=30):
    lines = ["// ReaderName=R, AntennaIDs=1,2",
             "// Timestamp, EPC, TID, Antenna, RSSI, Frequency, Hostname, PhaseAngle, DopplerFrequency"]
    for i in range(n):
        lines.append(f"2024-03-05T14:22:{i // 10:02d}.{i % 10}000000+02:00,{EPC1 if i % 3 else EPC2},,{1 + i % 2},"
                     f"\"-{60 + i % 7},5\",866.9,R,{(0.2 * i) % 6.28:.4f},{i % 5 - 2}")
    return ("\r\n".join(lines) + "\r\n").encode()


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=2000))
def test_random_bytes_only_raise_rfedge_error(tmp_path, data):
    p = tmp_path / "rnd.csv"
    p.write_bytes(data)
    try:
        read_itemtest_csv(p)
    except RfedgeError:
        pass


@FUZZ
@given(body=st.text(alphabet=st.sampled_from(list('0123456789,.-:/T "\r\nEPCAZ')), max_size=1500))
def test_random_csvish_text_after_header_only_raises_rfedge_error(tmp_path, body):
    p = tmp_path / "rnd.csv"
    p.write_text("Timestamp,EPC,Antenna,RSSI,PhaseAngle\n" + body)
    try:
        r = read_itemtest_csv(p)
    except RfedgeError:
        return
    assert len(r) >= 1 and np.all(np.isfinite(r.t_s)) and np.all(r.t_s >= 0)
    assert np.all((r.phase_rad[np.isfinite(r.phase_rad)] >= 0) & (r.phase_rad[np.isfinite(r.phase_rad)] < 2 * np.pi))


@FUZZ
@given(cut=st.integers(0, 10_000))
def test_truncated_file_recovers_every_complete_row(tmp_path, cut):
    full = _good_file_bytes()
    ref_p = tmp_path / "full.csv"
    ref_p.write_bytes(full)
    ref = read_itemtest_csv(ref_p)
    cut = cut % (len(full) + 1)
    p = tmp_path / "cut.csv"
    p.write_bytes(full[:cut])
    complete = full[:cut].count(b"\n") - 2                 # data rows ended before the cut
    try:
        r = read_itemtest_csv(p)
    except RfedgeError:
        assert complete <= 0
        return
    assert complete <= len(r) <= complete + 1
    k = max(complete, 0)
    assert r.rss_dbm[:k].tolist() == ref.rss_dbm[:k].tolist()
    assert r.epc[:k].tolist() == ref.epc[:k].tolist()


@FUZZ
@given(junk=st.lists(st.text(max_size=80), min_size=1, max_size=8),
       where=st.lists(st.integers(0, 40), min_size=8, max_size=8),
       flips=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255)), max_size=5))
def test_junk_lines_and_flipped_bytes_keep_the_good_rows(tmp_path, junk, where, flips):
    lines = _good_file_bytes().decode().split("\r\n")
    for j, w in zip(junk, where):
        lines.insert(2 + w % (len(lines) - 2), j.replace("\n", " ").replace("\r", " "))
    data = bytearray("\r\n".join(lines).encode())
    for pos, val in flips:
        data[pos % len(data)] = val
    p = tmp_path / "junk.csv"
    p.write_bytes(bytes(data))
    try:
        r = read_itemtest_csv(p)
    except RfedgeError:
        assert flips                                       # only damage to the header may cost the file
        return
    if not flips:
        ref = read_itemtest_csv(_write(tmp_path / "ref.csv", _good_file_bytes()))
        assert r.rss_dbm.tolist() == ref.rss_dbm.tolist()
        assert r.t_s.tolist() == ref.t_s.tolist()


def _write(p, data):
    p.write_bytes(data)
    return p


# ---- writing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("comma", [False, True])
def test_write_read_round_trip(tmp_path, comma):
    rng = np.random.default_rng(4)
    n = 200
    t = np.sort(rng.integers(0, 40_000_000, n)) * 1e-7          # 100 ns resolution as written
    reads = RfidReads.from_arrays(
        t_s=t - t.min(), epc=rng.choice([EPC1, EPC2], n), antenna=rng.integers(1, 3, n),
        rss_dbm=np.round(rng.uniform(-80, -40, n) * 2) / 2, phase_rad=np.round(rng.uniform(0, 2 * np.pi, n), 6),
        doppler_hz=np.round(rng.normal(0, 5, n) * 16) / 16, frequency_mhz=rng.choice([865.7, 866.3, 866.9], n),
        extra={"CRHandle": [f"{i:04X}" for i in range(n)]})
    reads.phase_rad[5] = np.nan
    p = write_itemtest_csv(tmp_path / "rt.csv", reads, decimal_comma=comma)
    text = p.read_text()
    assert text.startswith("// 3/5/2024 2:00:00 PM\n") or text.startswith("// 3/5/2024 2:00:00 PM\r\n")
    assert ('"-' in text) == comma
    back = read_itemtest_csv(p)
    assert len(back) == n
    assert back.t_s.tolist() == pytest.approx(reads.t_s.tolist(), abs=1e-9)
    assert back.epc.tolist() == reads.epc.tolist()
    assert back.antenna.tolist() == reads.antenna.tolist()
    assert back.rss_dbm.tolist() == reads.rss_dbm.tolist()
    np.testing.assert_allclose(back.phase_rad, reads.phase_rad, atol=1e-12)
    assert back.doppler_hz.tolist() == reads.doppler_hz.tolist()
    assert back.frequency_mhz.tolist() == reads.frequency_mhz.tolist()
    assert back.extra["CRHandle"].tolist() == reads.extra["CRHandle"].tolist()
    # 2024-03-05T14:00:00+02:00 is 12:00 UTC.
    assert back.t0_ns == (19787 * 86400 + 12 * 3600) * 10**9
    # A second round trip of a parsed file keeps its absolute time.
    p2 = write_itemtest_csv(tmp_path / "rt2.csv", back)
    assert read_itemtest_csv(p2).t0_ns == back.t0_ns
