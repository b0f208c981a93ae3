"""Test scaffolding shared by tests and benchmarks: real directories, real servers."""
