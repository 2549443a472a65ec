"""moevit.golden: fixed-point core, approximation kernels, bit-exact integer model, float reference."""
