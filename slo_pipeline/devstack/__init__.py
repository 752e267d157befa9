"""The dev stack: real processes on loopback for `make demo`, the tests and the benchmarks."""
