"""Just enough ISO-BMFF reading to name the codecs of an init segment (RFC 6381)."""


def codecs_of_init(data: bytes) -> str:
    """``avc1.PPCCLL`` from the avcC box, plus ``mp4a.40.2`` when an AAC track is present."""
    codecs = []
    at = data.find(b"avcC")
    if at >= 0 and len(data) >= at + 8:
        profile, compat, level = data[at + 5], data[at + 6], data[at + 7]
        codecs.append(f"avc1.{profile:02x}{compat:02x}{level:02x}")
    if b"mp4a" in data:
        codecs.append("mp4a.40.2")
    return ",".join(codecs)
