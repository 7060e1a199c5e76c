"""Code that runs inside the LiteLLM proxy process (loaded through its callbacks).

Nothing here is imported by the CLI: :mod:`hook` and :mod:`reload` import LiteLLM.
:mod:`counters` and :mod:`table` do not, so they stay cheap to test and to read from `status`.
"""
