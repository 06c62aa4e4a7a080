import io
import json
import sys

from stream_iqa.log import configure_logging, get_logger


def test_logs_go_to_the_current_stderr_as_json(monkeypatch):
    configure_logging("INFO", "json")
    for _ in range(2):  # a second swap: the first stream is gone, logging must follow
        buf = io.StringIO()
        monkeypatch.setattr(sys, "stderr", buf)
        get_logger("t").info("hello", clip_id="c1")
        record = json.loads(buf.getvalue().strip().splitlines()[-1])
        assert record["event"] == "hello" and record["clip_id"] == "c1" and record["level"] == "info"
        buf.close()


def test_level_filters(monkeypatch):
    configure_logging("WARNING", "json")
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    get_logger().info("quiet")
    assert buf.getvalue() == ""
    configure_logging("INFO", "json")
