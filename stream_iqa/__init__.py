"""stream-iqa: no-reference quality moderation of video streams with a distilled DGIQA."""

__version__ = "0.1.0"
