"""Pure localization code: geodesy (WGS84 <-> local ENU) and NMEA 0183.

Never imports zmq or ``nodes``: everything here is testable without sockets.
"""
