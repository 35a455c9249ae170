"""Video input and output: raw YUV, Y4M, PyAV containers, image folders.

Readers stream frames (never a whole video in memory) as :class:`Frame` objects
whose ``rgb`` is a ``3 x H x W`` float tensor in [0, 1] and whose ``yuv`` /
``yuv_u8`` keep the original 4:2:0 planes of Y'CbCr sources, so metrics can use
them. Writers are atomic (temporary name, then rename). The colour conversion
(matrix, range, chroma up-sampling) is explicit everywhere; see
:mod:`dvc_ext.color`.
"""

from .frame import Frame, VideoInfo, VideoReader, chroma_size, yuv420_frame_bytes
from .naming import YUVName, parse_yuv_name
from .readers import (
    ImageFolderReader,
    PyAVReader,
    RawYUVReader,
    Y4MReader,
    open_video,
)
from .writers import (
    LosslessVideoWriter,
    PNGFolderWriter,
    RawYUVWriter,
    VideoWriter,
    Y4MWriter,
    open_writer,
)

__all__ = [
    "Frame",
    "ImageFolderReader",
    "LosslessVideoWriter",
    "PNGFolderWriter",
    "PyAVReader",
    "RawYUVReader",
    "RawYUVWriter",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "Y4MReader",
    "Y4MWriter",
    "YUVName",
    "chroma_size",
    "open_video",
    "open_writer",
    "parse_yuv_name",
    "yuv420_frame_bytes",
]
