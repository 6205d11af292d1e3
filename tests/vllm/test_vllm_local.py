"""golora_dev.vllm_local without a server: command lines, path mapping, log lines."""

from __future__ import annotations

import json

from golora_dev import vllm_local as vl


def test_local_command_maps_each_way_people_start_vllm():
    cmd, kind = vl.local_command(None, ["--model", "/m", "--port", "8000"])
    assert kind == vl.SERVE and cmd == [str(vl.vllm_executable()), "serve", "--model", "/m", "--port", "8000"]
    cmd, kind = vl.local_command(["vllm", "serve"], ["/m", "--port", "8200"])
    assert kind == vl.SERVE and cmd[1:] == ["serve", "/m", "--port", "8200"]
    cmd, kind = vl.local_command(["python3", "-m", "vllm.entrypoints.openai.api_server"], ["--model", "/m"])
    assert kind == vl.API_SERVER
    assert cmd == [str(vl.vllm_python()), "-m", "vllm.entrypoints.openai.api_server", "--model", "/m"]


def test_map_paths_rewrites_plain_and_json_values_only_under_the_mount():
    mod = json.dumps({"name": "a", "path": "/golora-store/adapters/ns/a", "base_model_name": "b"})
    out = vl.map_paths(["--model", "/golora-store/models/m", "--lora-modules", mod, "/golora-storex"],
                       {"/golora-store": "/tmp/s"})
    assert out[1] == "/tmp/s/models/m" and out[4] == "/golora-storex"
    assert json.loads(out[3]) == {"name": "a", "path": "/tmp/s/adapters/ns/a", "base_model_name": "b"}


def test_set_flag_edits_in_place_or_appends():
    assert vl.set_flag(["--port", "8000", "--x"], "--port", "9") == ["--port", "9", "--x"]
    assert vl.set_flag(["--port=8000"], "--port", "9") == ["--port=9"]
    assert vl.set_flag(["--x"], "--host", "h") == ["--x", "--host", "h"]


def test_cpu_env_sets_the_cpu_settings_and_keeps_the_callers():
    env = vl.cpu_env({"PATH": "/bin", "VLLM_CPU_KVCACHE_SPACE": "2"})
    assert env["VLLM_TARGET_DEVICE"] == "cpu" and env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["PATH"].startswith(str(vl.vllm_venv() / "bin"))


def test_last_meaningful_line_prefers_the_specific_exception():
    log = "\n".join([
        "(APIServer pid=1) INFO 12-01 20:30:00 [api_server.py:1] vLLM API server version 0.32.0",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "    raise ValueError('bad')",
        "ValueError: LoRA rank 16 is greater than max_lora_rank 8.",
        "(APIServer pid=1) ERROR 12-01 20:30:01 [core.py:2] RuntimeError: Engine core initialization failed. "
        "See root cause above. Failed core proc(s): {}",
        "/usr/lib/python3.11/multiprocessing/resource_tracker.py:254: UserWarning: leaked semaphore",
        "  warnings.warn(",
    ])
    assert vl.last_meaningful_line(log) == "ValueError: LoRA rank 16 is greater than max_lora_rank 8."
    assert vl.last_meaningful_line("a\nINFO 12-01 20:30:00 [x.py:1] the end\n\n") == "the end"
