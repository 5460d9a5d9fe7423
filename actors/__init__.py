"""Compute units: plain Python, no Ray. Each unit loads what it needs once and maps batches."""
