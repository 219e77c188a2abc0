"""The ingest role: publishers (OBS, vMix, encoders, ffmpeg) go live over RTMP or SRT.

Each protocol front-end (:mod:`.rtmp`, :mod:`.srt`) authenticates a publisher by its stream
key and hands its media, as a byte stream, to a :class:`~.publication.Publication`, which
cuts it into MPEG-TS chunks at keyframes without re-encoding (:mod:`.cutter`) and stores and
reports each one through the streams service, like the broadcaster's chunks.
"""
