"""Self-instruct generation: prompt, response parsing, teachers, journal, the run loop.

Library entry point: `run_generation(build_config(GenerateConfig, {...}), store=...)` in `alpaca_data.generate.run`.
"""
from __future__ import annotations
