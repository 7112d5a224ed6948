"""Importers: other people's recordings into drives.

| importer        | input                                                     | GPS                                          |
|-----------------|-----------------------------------------------------------|----------------------------------------------|
| `import_photos` | a folder of geotagged JPEGs                               | EXIF GPS per photo; heading from the track when EXIF has none |
| `import_video`  | a video + a GPX, NMEA or CSV track                        | interpolated to frame times; aligned by the video's creation time or an offset |
| `import_kitti`  | a KITTI raw drive (``image_02`` + ``oxts``)               | oxts fixes; odometry from vf and wu          |

Each rejects bad input with a ValueError (or OSError for missing files) naming the file and line.
"""

from ._common import ImportResult
from .kitti import import_kitti
from .photos import import_photos, read_photo_exif
from .video import import_video, mp4_creation_time_ns

__all__ = ["ImportResult", "import_kitti", "import_photos", "import_video", "mp4_creation_time_ns", "read_photo_exif"]
