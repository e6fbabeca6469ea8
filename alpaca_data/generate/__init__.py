"""Self-instruct generation: prompt, response parsing, teachers, journal, the run loop.

Library entry point: `run_generation(GenerateConfig(...))` in `alpaca_data.generate.engine`.
"""
from __future__ import annotations
