// Table GELU of spec §4.4 written with ap_fixed types (this project's rendering of the prose:
// the index and fraction come from the fm_t quotient |x| / 0.03125, the interpolation is done
// in ap_ufixed<22,0>), to check golden/kernels.py's integer formula against real ap_fixed.
//
// usage: gelu_harness TABLE IN OUT
//   TABLE: int64 raw table entries (GELU_ENTRIES of them, ap_ufixed<22,0>)
//   IN   : int64 raw fm_t inputs;  OUT: int64 raw fm_t results
#include <ap_fixed.h>
#include <ap_int.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#ifndef GELU_ENTRIES
#define GELU_ENTRIES 177
#endif
#ifndef GELU_STEP
#define GELU_STEP 0.03125
#endif

typedef ap_fixed<32, 10> fm_t;
typedef ap_ufixed<22, 0> fm_frac_t;
typedef ap_uint<8> idx_t;

static std::vector<int64_t> read_all(const char* path) {
    std::vector<int64_t> v;
    FILE* f = std::fopen(path, "rb");
    if (!f) { std::perror(path); return v; }
    int64_t x;
    while (std::fread(&x, 8, 1, f) == 1) v.push_back(x);
    std::fclose(f);
    return v;
}

int main(int argc, char** argv) {
    if (argc != 4) { std::fprintf(stderr, "usage: %s TABLE IN OUT\n", argv[0]); return 2; }
    std::vector<int64_t> traw = read_all(argv[1]), in = read_all(argv[2]);
    if ((int)traw.size() != GELU_ENTRIES) { std::fprintf(stderr, "table has %zu entries\n", traw.size()); return 1; }
    std::vector<fm_frac_t> table(GELU_ENTRIES);
    for (int i = 0; i < GELU_ENTRIES; ++i) table[i].range(21, 0) = ap_uint<22>((unsigned long long)traw[i]);
    const fm_t step = GELU_STEP, cutoff = (GELU_ENTRIES - 1) * GELU_STEP;
    std::vector<int64_t> out(in.size());
    for (size_t n = 0; n < in.size(); ++n) {
        fm_t x;
        x.range(31, 0) = ap_uint<32>((unsigned long long)in[n]);
        fm_t relu = x < 0 ? fm_t(0) : x;
        fm_t xa = x < 0 ? fm_t(-x) : x;
        fm_t y;
        if (xa >= cutoff) {
            y = relu;
        } else {
            fm_t q = xa / step;                 // exact: a shift by 5
            idx_t idx = q;                      // integer part
            fm_frac_t t = q;                    // fractional part (integer bits dropped)
            fm_frac_t a = table[idx], b = table[idx + 1];
            fm_frac_t delta = a + t * (b - a);  // floor to 22 bits, wrap into [0, 1)
            y = relu - delta;
        }
        ap_int<32> r = y.range(31, 0);
        out[n] = r.to_int64();
    }
    FILE* g = std::fopen(argv[3], "wb");
    if (!g) { std::perror(argv[3]); return 1; }
    std::fwrite(out.data(), 8, out.size(), g);
    std::fclose(g);
    return 0;
}
