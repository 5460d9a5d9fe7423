"""Media files for tests of what the service must refuse to open: an MPEG-TS copy of a video
(a file that must stay private) and an HLS playlist that names a file by URL."""

from __future__ import annotations

from pathlib import Path

import av


def mpegts_copy(src: Path, dst: Path) -> Path:
    """``src``'s video remuxed into MPEG-TS (an allowed container, and an HLS segment)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as i, av.open(str(dst), "w", format="mpegts") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        for pkt in i.demux(i.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = out
                o.mux(pkt)
    return dst


def hls_playlist(segment: str) -> str:
    """An HLS playlist (m3u8) with one segment, ``segment`` (e.g. ``file:///private.ts``)."""
    return ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
            f"#EXTINF:10.0,\n{segment}\n#EXT-X-ENDLIST\n")
