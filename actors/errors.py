"""Typed errors with actionable messages.

Each error says what was expected, what was found and what to do. Bad items become
data (an error on that item); structural misuse raises.
"""

from __future__ import annotations


class FramesiftError(Exception):
    """Base class of every error framesift raises on purpose."""

    code = "framesift_error"


class VideoError(FramesiftError):
    """A video could not be used. ``path`` names the file."""

    code = "video_error"

    def __init__(self, path: str, message: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


class VideoNotFoundError(VideoError):
    code = "video_not_found"

    def __init__(self, path: str) -> None:
        super().__init__(path, "no such file. Check the path (relative paths are resolved "
                               "from the current directory).")


class NotAVideoError(VideoError):
    code = "not_a_video"

    def __init__(self, path: str, detail: str = "") -> None:
        super().__init__(path, "not a readable media container"
                         + (f" ({detail})" if detail else "")
                         + ". Expected a video file such as MP4, MOV, MKV or WebM.")


class ContainerNotAllowedError(NotAVideoError):
    """A container format that may make FFmpeg read other files (playlists, concat lists,
    image sequences, ...) or that framesift does not open."""

    code = "container_not_allowed"

    def __init__(self, path: str, allowed: tuple[str, ...]) -> None:
        VideoError.__init__(
            self, path, f"container format not allowed: framesift opens {', '.join(allowed)} "
                        "only; playlists (HLS, DASH), concat lists and image sequences are "
                        "refused because they make FFmpeg read other files. Expected a video "
                        "file such as MP4, MOV, MKV or WebM.")


class NoVideoStreamError(VideoError):
    code = "no_video_stream"

    def __init__(self, path: str, found: str) -> None:
        super().__init__(path, f"the container has no video stream (found: {found or 'nothing'}). "
                               "Pass a file that contains video, not only audio or subtitles.")


class EmptyVideoError(VideoError):
    code = "empty_video"

    def __init__(self, path: str) -> None:
        super().__init__(path, "the video stream has zero frames. Re-export or re-upload the video.")


class UnsupportedCodecError(VideoError):
    code = "unsupported_codec"

    def __init__(self, path: str, codec: str) -> None:
        super().__init__(path, f"no decoder for video codec '{codec}'. Transcode it to H.264, "
                               "H.265, VP9 or AV1 (e.g. ffmpeg -i in -c:v libx264 out.mp4).")


class CorruptVideoError(VideoError):
    code = "corrupt_video"

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(path, f"truncated or corrupt video stream ({detail}). "
                               "Re-export or re-upload the complete file.")


class AbsurdDimensionsError(VideoError):
    code = "absurd_dimensions"

    def __init__(self, path: str, width: int, height: int, limits: str) -> None:
        super().__init__(path, f"frame size {width}x{height} is outside the supported range "
                               f"({limits}).")


class InvalidParameterError(FramesiftError, ValueError):
    """A parameter given by the user is out of range or malformed."""

    code = "invalid_parameter"


class SourceError(VideoError):
    """Reading a video from where it lives failed: the object store or server answered
    something other than the bytes asked for, or nothing in time. ``path`` is the source's
    display name (credentials and query strings removed). ``code`` may carry the code of the
    rule that refused it (``url_blocked``, ``download_too_large``, ...)."""

    code = "source_read_failed"

    def __init__(self, path: str, message: str, code: str | None = None) -> None:
        super().__init__(path, message)
        if code:
            self.code = code


class SourceGoneError(SourceError):
    """The object is not there (any more), or was replaced while the run read it."""

    code = "source_gone"


class SourceTimeoutError(SourceError):
    """The source answered nothing for too long, or the read went past its deadline."""

    code = "source_timeout"


class SourceAccessDeniedError(SourceError):
    """The source refused the read (missing or expired credentials or signature)."""

    code = "source_access_denied"


class RangeProtocolError(SourceError):
    """The server answered a range request with bytes other than the ones asked for."""

    code = "range_protocol_violation"
