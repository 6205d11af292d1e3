"""Which checkpoint counts, and which one is the run's last step (pure file checks, no model)."""

import json

from golora_trainer.checkpoints import is_final, latest_checkpoint


def _ckpt(root, step, max_steps, weights=True, state=True):
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if state:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": max_steps}))
    if weights:
        (path / "adapter_model.safetensors").write_bytes(b"x")
    return path


def test_the_last_step_is_final_and_earlier_ones_are_not(tmp_path):
    assert is_final(_ckpt(tmp_path, 30, 30))
    assert not is_final(_ckpt(tmp_path, 20, 30))
    assert not is_final(_ckpt(tmp_path, 5, 0))  # no step budget recorded: keep training
    assert not is_final(_ckpt(tmp_path, 7, 7, state=False))  # unreadable state is never final


def test_latest_checkpoint_skips_and_removes_a_half_written_newer_one(tmp_path):
    good = _ckpt(tmp_path, 10, 30)
    half = _ckpt(tmp_path, 20, 30, weights=False)
    assert latest_checkpoint(tmp_path) == good
    assert not half.exists()
