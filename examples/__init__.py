"""Example workflows built on jetloom."""
