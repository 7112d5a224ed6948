"""Damaged drives: cut off mid-write, killed with SIGKILL, corrupt frames, corrupt chunks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from mcap.reader import make_reader

from nodes.cli import main as cli_main
from perception.drives import CAMERA_TOPIC, DriveReader

T0_NS = 1_700_000_000_000_000_000  # the drive builder's first stamp (tests/perception/drives/conftest.py)


def _chunk_indexes(path):
    with open(path, "rb") as f:
        return make_reader(f).get_summary().chunk_indexes


@pytest.mark.parametrize("where", [0.13, 0.5, 0.77, "inside the last chunk"])
def test_cut_file_reads_up_to_its_last_complete_chunk(make_drive, tmp_path, where):
    intact = make_drive(frames=60, chunk_size_bytes=8 * 1024)
    chunks = _chunk_indexes(intact)
    assert len(chunks) > 5
    data = intact.read_bytes()
    cut = int(len(data) * where) if isinstance(where, float) else chunks[-1].chunk_start_offset + 100
    cut_path = tmp_path / "cut.mcap"
    cut_path.write_bytes(data[:cut])

    complete = [c for c in chunks if c.chunk_start_offset + c.chunk_length <= cut]
    # chunks are written in time order, so the complete ones hold exactly the messages up to this time
    last_complete_ns = max((c.message_end_time for c in complete), default=-1)
    # independent of the reader under test: the builder writes frame i at T0 + i * 100 ms
    expected = [s for s in (T0_NS + i * 100_000_000 for i in range(60)) if s <= last_complete_ns]

    with DriveReader(cut_path) as drive:
        assert drive.truncated and not drive.has_summary
        assert drive.metadata.source == "test"  # metadata is written first, outside chunks
        assert [f.header.stamp_ns for f in drive.images(decode=True)] == expected
        assert drive.channels[CAMERA_TOPIC].message_count == len(expected)
        assert drive.errors.total == 0


def test_file_without_summary_but_complete_data_is_not_truncated(make_drive, tmp_path):
    intact = make_drive(frames=10)
    data = intact.read_bytes()
    path = tmp_path / "nosummary.mcap"
    path.write_bytes(data[:-60])  # footer and part of the summary lost
    with DriveReader(path) as drive:
        assert not drive.truncated and not drive.has_summary
        assert len(list(drive.images())) == 10


def test_recorder_killed_with_sigkill(tmp_path):
    """A real recorder process killed mid-write leaves a readable, truncated drive."""
    path = tmp_path / "killed.mcap"
    script = textwrap.dedent(
        f"""
        import sys, time
        import numpy as np
        from perception.drives import DriveMetadata, DriveWriter
        w = DriveWriter({str(path)!r}, DriveMetadata(source="recorder"), chunk_size_bytes=16 * 1024, flush_interval_s=0.05)
        image = np.zeros((48, 64, 3), np.uint8)
        i = 0
        while True:
            image[:, :, 0] = i % 255
            w.add_image(1_700_000_000_000_000_000 + i * 33_000_000, image)
            w.add_gps(1_700_000_000_000_000_000 + i * 33_000_000, lat_deg=55.7, lon_deg=13.19)
            i += 1
            if i == 40:
                w.flush()
                print("flushed", flush=True)
            time.sleep(0.001)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert proc.stdout.readline().strip() == "flushed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with DriveReader(path) as drive:
        assert drive.truncated
        assert drive.metadata.source == "recorder"
        frames = list(drive.images(decode=True))
        assert len(frames) >= 40
        assert drive.errors.total == 0


def test_info_says_truncated(make_drive, tmp_path, capsys):
    intact = make_drive(frames=30, chunk_size_bytes=8 * 1024)
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(intact.read_bytes()[: intact.stat().st_size // 2])
    assert cli_main(["info", str(cut)]) == 0
    out = capsys.readouterr().out
    assert "TRUNCATED" in out and "camera/image" in out
    assert cli_main(["info", str(intact)]) == 0
    assert "complete" in capsys.readouterr().out


def test_corrupt_jpeg_frames_are_skipped_and_counted(make_drive):
    path = make_drive(frames=12, corrupt=(3, 7))
    with DriveReader(path) as drive:
        stamps = [f.stamp_ns for f in drive.frames()]
        assert len(stamps) == 10
        assert drive.errors.corrupt_frames == 2
        assert "stamp_ns=" in drive.errors.details[0]
        decoded = list(drive.images(decode=True))
        assert len(decoded) == 10 and all(f.encoding == "bgr8" and f.data.shape == (48, 64, 3) for f in decoded)
        assert drive.errors.corrupt_frames == 4  # counted again on the second pass


def test_jpeg_cut_short_is_caught_without_decoding(tmp_path, kit):
    from perception.drives import DriveMetadata, DriveWriter
    from perception.drives.jpeg import encode_jpeg

    jpeg = encode_jpeg(kit.frame_image(0))
    path = tmp_path / "short.mcap"
    with DriveWriter(path, DriveMetadata()) as w:
        w.add_image(1, jpeg=jpeg)
        w.add_image(2, jpeg=jpeg[: len(jpeg) // 2])  # camera driver handed over half a frame
        w.add_image(3, jpeg=jpeg)
    with DriveReader(path) as drive:
        assert [f.header.stamp_ns for f in drive.images()] == [1, 3]
        assert drive.errors.corrupt_frames == 1


def test_corrupt_chunk_is_skipped_and_counted(make_drive, tmp_path):
    intact = make_drive(frames=40, chunk_size_bytes=8 * 1024, compression="none")
    chunks = _chunk_indexes(intact)
    victim = chunks[2]
    data = bytearray(intact.read_bytes())
    data[victim.chunk_start_offset + victim.chunk_length // 2] ^= 0xFF  # one flipped bit-pattern on disk
    path = tmp_path / "flipped.mcap"
    path.write_bytes(bytes(data))
    with DriveReader(path) as drive:
        stamp_list = [f.header.stamp_ns for f in drive.images()]
        assert drive.errors.corrupt_chunks == 1
    assert stamp_list == sorted(set(stamp_list))  # the frames before the damage are not given twice
    stamps = set(stamp_list)
    written = {T0_NS + i * 100_000_000 for i in range(40)}  # what the builder wrote, not what a reader says
    missing = written - stamps
    # the frames of the damaged chunk are gone, every other frame is there
    assert missing and all(victim.message_start_time <= s <= victim.message_end_time for s in missing)
    assert len(missing) < len(written) / 2


def test_not_an_mcap_file(tmp_path):
    path = tmp_path / "photo.mcap"
    path.write_bytes(b"\xff\xd8\xff\xe0 not a drive")
    with pytest.raises(ValueError, match="not an MCAP drive"):
        DriveReader(path)
