"""NMEA 0183: GGA/RMC logs parsed (by pynmea2, with our field checks) into fixes, and the sentences we
write for GPS consumers, parsed back by pynmea2 against known values."""

from __future__ import annotations

import datetime as dt
import functools

import pynmea2
import pytest

from localization.nmea import (
    KNOTS_PER_MPS,
    NmeaError,
    format_gga,
    format_hdt,
    format_rmc,
    parse_gga,
    parse_nmea_fixes,
    parse_rmc,
    parse_sentence,
    read_nmea_track,
)

# Classic examples from the NMEA literature (checksums verified by hand against the XOR rule).
GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
STAMP_1994 = int(dt.datetime(1994, 3, 23, 12, 35, 19, tzinfo=dt.UTC).timestamp()) * 10**9


def checksum(body: str) -> str:
    """The XOR of the bytes between ``$`` and ``*``, by hand: an independent check of pynmea2's."""
    return f"{functools.reduce(lambda a, b: a ^ b, body.encode()):02X}"


def sentence(body: str) -> str:
    return f"${body}*{checksum(body)}"


def test_checksum_of_known_sentences():
    assert checksum(GGA[1 : GGA.index("*")]) == "47"
    assert checksum(RMC[1 : RMC.index("*")]) == "6A"


def test_parse_gga_fields():
    fix = parse_gga(parse_sentence(GGA))
    assert fix.lat_deg == pytest.approx(48 + 7.038 / 60)
    assert fix.lon_deg == pytest.approx(11 + 31.0 / 60)
    assert fix.quality == 1 and fix.num_satellites == 8 and fix.hdop == 0.9
    assert fix.alt_msl_m == 545.4 and fix.alt_ellipsoid_m == pytest.approx(545.4 + 46.9)
    assert fix.time_of_day_ns == (12 * 3600 + 35 * 60 + 19) * 10**9


def test_parse_rmc_fields():
    fix = parse_rmc(parse_sentence(RMC))
    assert fix.valid
    assert fix.stamp_ns == STAMP_1994
    assert fix.speed_mps == pytest.approx(22.4 / KNOTS_PER_MPS)
    assert fix.course_deg == 84.4


def test_southern_western_hemispheres_are_negative():
    body = "GPGGA,000000,3352.128,S,15112.558,W,1,05,1.0,10.0,M,,M,,"
    fix = parse_gga(parse_sentence(sentence(body)))
    assert fix.lat_deg < 0 and fix.lon_deg < 0


def test_bad_checksum_names_file_and_line(tmp_path):
    log = tmp_path / "drive.nmea"
    log.write_text(f"{RMC}\n{GGA}\n{GGA[:-2]}00\n")
    with pytest.raises(NmeaError, match=r"drive\.nmea:3: NMEA checksum mismatch"):
        read_nmea_track(log)


def test_unparseable_checksum_names_file_and_line(tmp_path):
    log = tmp_path / "drive.nmea"
    log.write_text(f"{RMC}\n{GGA[:-2]}ZZ\n")
    with pytest.raises(NmeaError, match=r"drive\.nmea:2: unparseable NMEA checksum 'ZZ'"):
        read_nmea_track(log)


def test_missing_checksum_rejected_unless_allowed():
    with pytest.raises(NmeaError, match="no '\\*hh' checksum"):
        parse_sentence(GGA[: GGA.index("*")])
    assert parse_sentence(GGA[: GGA.index("*")], require_checksum=False).sentence_type == "GGA"


def test_bad_field_names_file_line_and_field(tmp_path):
    body = "GPGGA,123519,48x7.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    log = tmp_path / "bad.nmea"
    log.write_text(f"{RMC}\n{sentence(body)}\n")
    with pytest.raises(NmeaError, match=r"bad\.nmea:2: .*GGA latitude"):
        read_nmea_track(log)


@pytest.mark.parametrize("body, error", [
    # pynmea2 alone reads these as 0 degrees east, 49.1 degrees, a time given as text: we refuse them
    ("GPGGA,123519,4807.038,N,01131.000,Q,1,08,0.9,545.4,M,46.9,M,,", "GGA longitude hemisphere 'Q'"),
    ("GPGGA,123519,4867.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", "GGA latitude minutes in '4867.038'"),
    ("GPGGA,25xx19,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", "GGA time '25xx19'"),
    ("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,5x5.4,M,46.9,M,,", "GGA altitude '5x5.4'"),
    ("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,320394,003.1,W", "RMC date '320394'"),
    ("GPRMC,123519,A,4807.038,N,01131.000,E,fast,084.4,230394,003.1,W", "RMC speed 'fast'"),
])
def test_fields_pynmea2_would_pass_are_rejected_by_name(body, error):
    with pytest.raises(NmeaError, match=r"log\.nmea:1: " + error.replace("(", r"\(")):
        parse_nmea_fixes([sentence(body)], path="log.nmea", date=dt.date(1994, 3, 23))


def test_unknown_sentence_types_are_skipped_but_their_checksum_is_checked():
    assert len(parse_nmea_fixes([RMC, sentence("GPXYZ,1,2,3")])) == 1
    with pytest.raises(NmeaError, match="line 2: NMEA checksum mismatch"):
        parse_nmea_fixes([RMC, "$GPXYZ,1,2,3*00"])


def test_gga_and_rmc_of_one_epoch_merge_into_one_fix():
    fixes = parse_nmea_fixes([RMC, GGA, "some logger text", "", "$GPGSV,1,1,00*79"])
    assert len(fixes) == 1
    fix = fixes[0]
    assert fix.stamp_ns == STAMP_1994
    assert fix.alt_m == pytest.approx(545.4 + 46.9)
    assert fix.speed_mps == pytest.approx(22.4 / KNOTS_PER_MPS)
    assert fix.course_deg == 84.4 and fix.hdop == 0.9


def test_gga_only_log_needs_a_date():
    with pytest.raises(NmeaError, match="without a date"):
        parse_nmea_fixes([GGA])
    fixes = parse_nmea_fixes([GGA], date=dt.date(1994, 3, 23))
    assert fixes[0].stamp_ns == STAMP_1994


def test_invalid_fixes_are_skipped():
    lines = [RMC, sentence("GPRMC,123520,V,,,,,,,230394,,,N"), sentence("GPGGA,123521,,,,,0,00,,,M,,M,,")]
    assert len(parse_nmea_fixes(lines)) == 1


def test_midnight_rollover_in_gga_only_log():
    a = "GPGGA,235959,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    b = "GPGGA,000001,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    fixes = parse_nmea_fixes([sentence(a), sentence(b)], date=dt.date(2024, 1, 1))
    assert fixes[1].stamp_ns - fixes[0].stamp_ns == 2 * 10**9


@pytest.mark.parametrize("lat_deg, lon_deg", [(55.6981667, 13.1953889), (-33.868820, -151.209296), (0.0, 0.0), (89.9999999, 179.9999999)])
def test_written_gga_and_rmc_parse_back(lat_deg, lon_deg):
    stamp_ns = STAMP_1994 + 250_000_000
    gga = format_gga(stamp_ns, lat_deg, lon_deg, alt_m=42.5, hdop=1.2, num_satellites=9)
    rmc = format_rmc(stamp_ns, lat_deg, lon_deg, speed_mps=3.0, course_deg=271.5)
    assert gga.endswith("\r\n") and rmc.endswith("\r\n")
    fixes = parse_nmea_fixes([rmc, gga])
    assert len(fixes) == 1
    fix = fixes[0]
    assert fix.stamp_ns == stamp_ns
    assert fix.lat_deg == pytest.approx(lat_deg, abs=1e-6)  # 5 decimals of minutes: ~2 cm
    assert fix.lon_deg == pytest.approx(lon_deg, abs=1e-6)
    assert fix.alt_m == pytest.approx(42.5)
    assert fix.speed_mps == pytest.approx(3.0, abs=0.01)
    assert fix.course_deg == pytest.approx(271.5)


def test_written_sentences_are_the_classic_ones_as_pynmea2_reads_them():
    lat_deg, lon_deg = 48 + 7.038 / 60, 11 + 31.0 / 60
    gga = format_gga(STAMP_1994, lat_deg, lon_deg, alt_m=545.4 + 46.9, geoid_separation_m=46.9, num_satellites=8,
                     hdop=0.9, decimals=3)
    assert gga == f"{sentence('GPGGA,123519.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,')}\r\n"
    msg = pynmea2.parse(gga.strip(), check=True)
    assert isinstance(msg, pynmea2.GGA) and msg.talker == "GP"
    assert msg.timestamp == dt.time(12, 35, 19, tzinfo=dt.UTC)
    assert msg.latitude == pytest.approx(48.1173) and msg.longitude == pytest.approx(11.516666667)
    assert (msg.gps_qual, msg.num_sats, msg.horizontal_dil, msg.altitude, msg.geo_sep) == (1, "08", "0.9", 545.4, "46.9")

    rmc = format_rmc(STAMP_1994, -lat_deg, -lon_deg, speed_mps=22.4 / KNOTS_PER_MPS, course_deg=84.4, decimals=3,
                     talker="GN")
    assert rmc == f"{sentence('GNRMC,123519.00,A,4807.038,S,01131.000,W,22.40,84.4,230394,,,A')}\r\n"
    msg = pynmea2.parse(rmc.strip(), check=True)
    assert isinstance(msg, pynmea2.RMC) and msg.talker == "GN"
    assert msg.datetime == dt.datetime(1994, 3, 23, 12, 35, 19, tzinfo=dt.UTC)
    assert msg.latitude == pytest.approx(-48.1173) and msg.longitude == pytest.approx(-11.516666667)
    assert (msg.status, msg.spd_over_grnd, msg.true_course, msg.mode_indicator) == ("A", 22.4, 84.4, "A")

    hdt = pynmea2.parse(format_hdt(-90.0).strip(), check=True)
    assert isinstance(hdt, pynmea2.HDT) and float(hdt.heading) == 270.0 and hdt.hdg_true == "T"


def test_minutes_never_print_sixty():
    # 59.9999999' rounds up into the next whole degree
    sentence = format_gga(STAMP_1994, 10.0 - 1e-9, 20.0 - 1e-9)
    assert ",1000.00000,N,02000.00000,E," in sentence


def test_invalid_rmc_and_hdt():
    rmc = format_rmc(STAMP_1994, 1.0, 2.0, valid=False)
    assert parse_rmc(parse_sentence(rmc)).valid is False
    assert parse_sentence(format_hdt(-90.0)).data == ["270.0", "T"]
    with pytest.raises(ValueError, match="lat_deg"):
        format_gga(STAMP_1994, 91.0, 0.0)
