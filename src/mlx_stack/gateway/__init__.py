"""Code that runs inside the LiteLLM proxy process (loaded through its callbacks).

Nothing here is imported by the CLI: :mod:`mlx_stack.gateway.hook` imports LiteLLM.
:mod:`counters` and :mod:`table` do not, so they stay cheap to test.
"""
