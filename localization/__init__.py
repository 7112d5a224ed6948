"""Pure localization code: geodesy, the filter, measurement models, NMEA, accuracy metrics.

Never imports zmq: everything here is testable without sockets.
"""
