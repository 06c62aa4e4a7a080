"""The service's parts that need no broker: job validation (the security boundary), in-order offsets, HTTP endpoints."""

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kafka.structs import TopicPartition

from stream_iqa.service.app import idempotency_key
from stream_iqa.service.jobs import clip_id_hint, headers_of, parse_job
from stream_iqa.service.metrics import HealthServer, ServiceMetrics
from stream_iqa.service.offsets import OffsetTracker
from stream_iqa.settings import Settings
from stream_iqa.video.errors import InputError

JSON = {"content-type": "application/json"}


@pytest.fixture()
def roots(tmp_path):
    allowed, outside = tmp_path / "clips", tmp_path / "secret"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "a.mp4").write_bytes(b"x")
    (outside / "b.mp4").write_bytes(b"x")
    os.symlink(outside / "b.mp4", allowed / "link.mp4")
    settings = Settings.load(service={"allowed_roots": [allowed]}, kafka={"max_message_bytes": 1000})
    return settings, allowed, outside


def _job(settings, uri=None, doc=None, headers=JSON, value=None, key=b"s1"):
    if value is None:
        value = json.dumps(doc if doc is not None else {"clip_id": "c1", "stream_id": "s1", "uri": uri}).encode()
    return parse_job(value, headers, key, settings, "t/0@7")


def _code(fn, *args, **kw) -> str:
    with pytest.raises(InputError) as err:  # a refused job: a bad message (InvalidMessageError) or video
        fn(*args, **kw)
    assert "\n" not in err.value.message
    return err.value.code


def test_file_job_under_an_allowed_root_resolves_to_its_real_path(roots):
    settings, allowed, _ = roots
    job = _job(settings, (allowed / "a.mp4").as_uri())
    assert job.input == (allowed / "a.mp4").resolve() and (job.clip_id, job.stream_id) == ("c1", "s1")


@pytest.mark.parametrize("case, code", [
    ("traversal", "uri_not_allowed"), ("outside", "uri_not_allowed"), ("symlink", "uri_not_allowed"),
    ("scheme", "uri_not_allowed"), ("http_off", "uri_not_allowed"), ("host", "uri_not_allowed"),
    ("not_json", "invalid_message"), ("missing_field", "invalid_message"), ("extra_field", "invalid_message"),
    ("no_content_type", "invalid_message"), ("odd_content_type", "invalid_message"),
    ("bytes_without_ids", "invalid_message"), ("oversized", "too_large"), ("json_array", "invalid_message"),
    ("deep_json", "invalid_message"), ("deep_metadata", "invalid_message"), ("lone_surrogate", "invalid_message"),
    ("bad_port", "uri_not_allowed"), ("unclosed_ipv6", "uri_not_allowed"),
])
def test_poison_jobs_are_refused_with_their_contract_code(roots, case, code):
    settings, allowed, outside = roots
    cases = {
        "traversal": lambda: _job(settings, f"file://{allowed}/../secret/b.mp4"),
        "outside": lambda: _job(settings, (outside / "b.mp4").as_uri()),
        "symlink": lambda: _job(settings, (allowed / "link.mp4").as_uri()),
        "scheme": lambda: _job(settings, "ftp://example.com/a.mp4"),
        "http_off": lambda: _job(settings, "https://cdn.example.com/a.mp4"),
        "host": lambda: _job(Settings.load(video={"allow_urls": True}, service={"allowed_hosts": ["cdn.example.com"]}),
                             "https://evil.example.com/a.mp4"),
        "not_json": lambda: _job(settings, value=b"{not json"),
        "missing_field": lambda: _job(settings, doc={"clip_id": "c1", "uri": "file:///x"}),
        "extra_field": lambda: _job(settings, doc={"clip_id": "c1", "stream_id": "s", "uri": "file:///x", "url": 1}),
        "no_content_type": lambda: _job(settings, (allowed / "a.mp4").as_uri(), headers={}),
        "odd_content_type": lambda: _job(settings, (allowed / "a.mp4").as_uri(), headers={"content-type": "text/html"}),
        "bytes_without_ids": lambda: _job(settings, value=b"\x00\x00", headers={"content-type": "video/mp4"}, key=None),
        "oversized": lambda: _job(settings, value=b"\x00" * 1001, headers={"content-type": "video/mp4"}),
        "json_array": lambda: _job(settings, value=b"[1, 2]"),
        "deep_json": lambda: _job(Settings.load(), value=b"[" * 100_000),
        "deep_metadata": lambda: _job(Settings.load(), value=b'{"clip_id": "c", "stream_id": "s", "uri": "file:///x", '
                                      b'"metadata": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001),
        "lone_surrogate": lambda: _job(settings, value=b'{"clip_id": "\\ud800", "stream_id": "s", "uri": "file:///x"}'),
        "bad_port": lambda: _job(Settings.load(video={"allow_urls": True}), "http://cdn.example.com:99999/a.mp4"),
        "unclosed_ipv6": lambda: _job(Settings.load(video={"allow_urls": True}), "http://[::1/a.mp4"),
    }
    assert _code(cases[case]) == code


def test_allowed_url_and_raw_bytes_jobs(roots):
    settings = Settings.load(video={"allow_urls": True}, service={"allowed_hosts": ["cdn.example.com"]})
    assert _job(settings, "https://CDN.example.com/a.mp4").input == "https://CDN.example.com/a.mp4"
    job = parse_job(b"\x00\x01", {"content-type": "video/mp2t", "clip_id": "c9"}, b"cam", settings, "t/0@1")
    assert (job.clip_id, job.stream_id, job.input) == ("c9", "cam", b"\x00\x01")  # stream_id falls back to the key


def test_headers_and_clip_id_hint_survive_garbage():
    h = headers_of([("Content-Type", b"application/json"), ("clip_id", b"\xff\xfe")])
    assert h["content-type"] == "application/json" and clip_id_hint(h, None)
    assert clip_id_hint({}, b'{"clip_id": "c3"}') == "c3"
    assert clip_id_hint({}, b"\xff not json") is None
    assert clip_id_hint({}, b"[" * 5000) is None and clip_id_hint({}, b'{"a":' * 5000) is None  # RecursionError
    assert clip_id_hint({}, b'{"clip_id": "\\ud800x"}') == "?x"  # a lone surrogate cannot be written out


def test_a_json_jobs_error_names_the_jobs_own_clip_id_not_a_header():
    """A JSON job refused for its URI, sent with a clip_id header too: the record's clip_id was the header's while
    its message named the JSON's. Raw bytes keep theirs in the header."""
    both = {"content-type": "application/json; charset=utf-8", "clip_id": "header-id"}
    assert clip_id_hint(both, b'{"clip_id": "job-42", "uri": "file:///etc/passwd"}') == "job-42"
    assert clip_id_hint(both, b'{"clip_id": "", "uri": 3}') == "header-id"  # nothing usable in the JSON
    assert clip_id_hint(both, b"not json") == "header-id"
    assert clip_id_hint({"content-type": "video/mp4", "clip_id": "header-id"}, b'{"clip_id": "x"}') == "header-id"


@pytest.mark.parametrize("form", ["json", "bytes"])
def test_a_clip_id_with_newlines_or_nul_cannot_forge_a_second_line(roots, form: str):
    """The id is the client's, and the message embeds it: replay prints the message as its one stderr line."""
    settings, _, _ = roots
    forged = "cam1-0007\nstream-iqa: clip cam1-0008 analysed OK\x00\u2028x"
    with pytest.raises(InputError) as err:
        if form == "json":
            _job(settings, doc={"clip_id": forged, "stream_id": "s1", "uri": "ftp://h/a.mp4"})
        else:
            _job(settings, headers={"content-type": "video/mp4", "clip_id": forged, "stream_id": "s1"}, value=b"")
    message = err.value.message
    assert "\n" not in message and "\x00" not in message and "\u2028" not in message
    assert "cam1-0007 stream-iqa: clip cam1-0008 analysed OK\\x00 x" in message


def test_offsets_commit_in_order_when_clips_finish_out_of_order():
    t, a, b = OffsetTracker(), TopicPartition("in", 0), TopicPartition("in", 1)
    for off in (5, 6, 7):
        t.start(a, off)
    t.start(b, 0)
    t.finish(a, 6)
    t.finish(b, 0)
    assert t.committable() == {b: 1}  # offset 5 still running: nothing of partition 0 may be committed
    t.committed(b, 1)
    t.finish(a, 5)
    assert t.committable() == {a: 7}
    assert t.committable() == {a: 7}  # not acknowledged yet: offered again
    t.committed(a, 7)
    assert t.committable() == {} and t.in_flight(a) == 1 and t.in_flight() == 1
    t.drop([a])  # revoked: its unfinished offset 7 is never committed here
    t.finish(a, 7)
    assert t.committable() == {}
    with pytest.raises(ValueError):
        t.start(b, 0)


def test_idempotency_key_is_stable_per_input_message():
    assert idempotency_key("in", 0, 42) == idempotency_key("in", 0, 42) != idempotency_key("in", 1, 42)


def test_http_endpoints_report_liveness_readiness_and_metrics():
    metrics = ServiceMetrics()
    metrics.observe_clip(frames=10, depth_computed=2, timings={"decode": 0.1, "depth": 0.01, "model": 0.2}, seconds=0.5)
    state = {"ready": False}
    server = HealthServer(metrics, "127.0.0.1", 0, alive=lambda: True, ready=lambda: state["ready"]).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=5) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        assert get("/healthz")[0] == 200
        assert get("/readyz")[0] == 503
        state["ready"] = True
        assert get("/readyz")[0] == 200
        code, text = get("/metrics")
        assert code == 200 and "stream_iqa_frames_analyzed_total 10.0" in text
        assert 'stream_iqa_depth_maps_total{origin="reused"} 8.0' in text and "stream_iqa_depth_reuse_ratio 0.8" in text
        assert 'stream_iqa_stage_seconds_count{stage="model"} 1.0' in text
        assert get("/nope")[0] == 404
    finally:
        server.stop()


def test_kafka_security_options_reach_kafka_python_and_stay_masked():
    s = Settings.load(kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u",
                             "sasl_password": "hunter2", "ssl_cafile": "/etc/ca.pem", "bootstrap_servers": "a:1, b:2"})
    opts = s.kafka.client_options()
    assert opts["bootstrap_servers"] == ["a:1", "b:2"] and opts["sasl_plain_password"] == "hunter2"
    assert opts["ssl_cafile"] == "/etc/ca.pem" and opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "hunter2" not in json.dumps(s.masked(), default=str)


def test_env_variables_configure_the_service(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAM_IQA_KAFKA__INPUT_TOPIC", "jobs")
    monkeypatch.setenv("STREAM_IQA_SERVICE__ALLOWED_ROOTS", json.dumps([str(tmp_path)]))
    s = Settings.load()
    assert s.kafka.input_topic == "jobs" and s.service.allowed_roots == [Path(tmp_path)]


def test_serve_with_its_metrics_port_taken_is_one_clear_line(capsys, monkeypatch):
    import socket

    from stream_iqa.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("STREAM_IQA_SERVICE__METRICS_HOST", "127.0.0.1")
        monkeypatch.setenv("STREAM_IQA_SERVICE__METRICS_PORT", str(taken.getsockname()[1]))
        monkeypatch.setenv("STREAM_IQA_DEPTH__SOURCE", "prior")
        assert main(["serve", "--device", "cpu"]) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("stream-iqa serve: cannot serve /metrics") and "STREAM_IQA_SERVICE__METRICS_PORT" in err


def test_serve_with_a_missing_model_names_the_setting(capsys, tmp_path):
    from stream_iqa.cli import main

    assert main(["serve", "--checkpoint", str(tmp_path / "none.safetensors")]) == 3
    assert "STREAM_IQA_MODEL__CHECKPOINT" in capsys.readouterr().err


def test_a_service_is_built_from_the_pipeline_it_is_given():
    from stream_iqa.pipeline import Pipeline
    from stream_iqa.service.app import Service
    from stream_iqa.settings import Settings

    settings = Settings.load(model={"device": "cpu"}, depth={"source": "prior"})
    pipe = Pipeline(settings)
    service = Service(settings, pipeline=pipe)
    assert service.pipeline is pipe
    with pytest.raises(ValueError, match="a pipeline or a scorer"):
        Service(settings, pipeline=pipe, scorer=pipe.scorer)
