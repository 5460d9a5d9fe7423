"""Media files for tests: what the service must refuse to open (an MPEG-TS copy of a video that
must stay private, an HLS playlist that names a file by URL), and short videos of random
frames in any container or raw stream PyAV writes."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


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


def random_video(path: Path, fmt: str, codec: str, frames: int, size: tuple[int, int],
                 rate: int = 25, pix_fmt: str = "yuv420p") -> Path:
    """``frames`` frames of random pixels encoded with ``codec`` into ``fmt`` (a container or
    a raw elementary stream such as ``mpeg1video``)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=rate)
        s.width, s.height = size
        s.pix_fmt = pix_fmt
        for _ in range(frames):
            img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode(None):
            out.mux(pkt)
    return path
