"""Recordings: the file format (:mod:`.format`), the writer and the recorder's loop
(:mod:`.writer`), and the indexed reader that replay uses (:mod:`.reader`)."""

from .format import PREFIX, RecordingError, encode_snapshot, is_gzip_name, rotated_name, rotated_siblings
from .reader import Recording, open_recording
from .writer import LineFile, RecordError, Recorder, RecordingWriter

__all__ = ["PREFIX", "LineFile", "RecordError", "Recorder", "Recording", "RecordingError", "RecordingWriter",
           "encode_snapshot", "is_gzip_name", "open_recording", "rotated_name", "rotated_siblings"]
