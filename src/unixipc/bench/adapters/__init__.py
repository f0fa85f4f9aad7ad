"""Benchmark adapters: one small class per transport (see unixipc.bench.transport)."""
