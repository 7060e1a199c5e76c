from __future__ import annotations

from pathlib import Path

from mlx_stack.core.server_cmd import gateway_command, litellm_command, render_dry_run, tier_command
from mlx_stack.core.stack import Gateway, Stack, Tier
from mlx_stack.system.secrets import mask

BIN = Path("/venv/bin")


def test_tier_command_binds_localhost_and_serves_the_tier_name() -> None:
    cmd = tier_command(Tier("fast", "org/small", "/m/small", 8002), BIN)
    argv = list(cmd.argv)
    assert argv[:3] == ["/venv/bin/vllm-mlx", "serve", "/m/small"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "8002"
    assert argv[argv.index("--served-model-name") + 1] == "fast"
    assert "--continuous-batching" in argv and "--use-paged-cache" in argv
    assert "--enable-auto-tool-choice" not in argv and "--reasoning-parser" not in argv
    assert cmd.env["HF_HUB_OFFLINE"] == "1"


def test_capabilities_switch_on_parsers() -> None:
    tier = Tier("standard", "org/q", "/m/q", 8001, tool_call_parser="qwen3_coder",
                reasoning_parser="qwen3", extra_args=("--max-num-seqs", "8"))
    argv = list(tier_command(tier, BIN).argv)
    assert argv[argv.index("--tool-call-parser") + 1] == "qwen3_coder"
    assert "--enable-auto-tool-choice" in argv
    assert argv[argv.index("--reasoning-parser") + 1] == "qwen3"
    assert argv[-2:] == ["--max-num-seqs", "8"]


def _stack() -> Stack:
    return Stack((Tier("fast", "org/small", "/m/small", 8002),), ("fast",), Gateway("127.0.0.1", 4100))


def test_front_door_runs_with_the_same_python_and_its_key_in_the_environment() -> None:
    cmd = gateway_command(_stack(), Path("/h/generated/front-door.json"), Path("/venv/bin/python3"),
                          "sk-secret-gateway-1234")
    assert list(cmd.argv[:3]) == ["/venv/bin/python3", "-m", "mlx_stack.gateway"]
    assert "sk-secret-gateway-1234" not in " ".join(cmd.argv)
    assert cmd.env["MLX_STACK_GATEWAY_KEY"] == "sk-secret-gateway-1234"
    assert cmd.argv[cmd.argv.index("--port") + 1] == "4100"
    assert cmd.argv[cmd.argv.index("--routes") + 1] == "/h/generated/front-door.json"


def test_litellm_binds_localhost_on_its_internal_port() -> None:
    cmd = litellm_command(Path("/h/litellm.yaml"), BIN, 45123, "sk-secret-gateway-1234", "sk-or-cloud-5678")
    assert cmd.argv[cmd.argv.index("--host") + 1] == "127.0.0.1"
    assert cmd.argv[cmd.argv.index("--port") + 1] == "45123"
    assert cmd.env["MLX_STACK_OPENROUTER_KEY"] == "sk-or-cloud-5678"
    assert cmd.env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert "sk-or-cloud-5678" not in " ".join(cmd.argv)


def test_dry_run_masks_every_secret() -> None:
    cmds = [
        tier_command(_stack().tiers[0], BIN),
        litellm_command(Path("/h/litellm.yaml"), BIN, None, "sk-secret-gateway-1234", "sk-or-cloud-5678"),
        gateway_command(_stack(), Path("/h/front-door.json"), BIN / "python", "sk-secret-gateway-1234"),
    ]
    text = render_dry_run(cmds, mask)
    assert "sk-secret-gateway-1234" not in text and "sk-or-cloud-5678" not in text
    assert "MLX_STACK_GATEWAY_KEY='sk-…1234'" in text
    assert "# fast\n" in text and "# gateway\n" in text and "# litellm\n" in text
    assert "--served-model-name fast" in text
