// ap_fixed reference harness: evaluates batches of ap_fixed operations with the real Xilinx
// headers (as shipped by hls4ml) so the Python fixed-point core can be checked bit for bit.
//
// usage: apfixed_harness OP IN OUT
//   IN  : little-endian records, one per case: doubles (q_* ops) or int64 raw operands
//   OUT : one int64 per case, the raw two's-complement result (sign-extended)
// Operand counts per op are listed in OPS below (and mirrored by tests/golden/test_apfixed.py).
#include <ap_fixed.h>
#include <ap_int.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

typedef ap_fixed<32, 10> fm_t;
typedef ap_fixed<16, 2> lin_t;      // wt_linear_t
typedef ap_fixed<16, 7> abias_t;    // wt_attn_bias_t
typedef ap_fixed<16, 5> bias_t;     // wt_bias_t / wt_norm_t
typedef ap_fixed<16, 0> patch_t;    // wt_patch_embed_t
typedef ap_ufixed<8, 0> pixel_t;
typedef ap_fixed<18, 7> wbias_t;
typedef ap_ufixed<22, 0> frac_t;    // fm_frac_t

// raw integer -> fixed value (bit pattern), and back (sign-extended for signed types)
template <typename T>
static T from_raw(int64_t r) {
    T x;
    x.range(T::width - 1, 0) = ap_uint<T::width>((unsigned long long)r);
    return x;
}
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
static int64_t to_raw(const ap_fixed<W, I, Q, O, N>& x) {
    ap_int<W> r = x.range(W - 1, 0);
    return (int64_t)r.to_int64();
}
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N>
static int64_t to_raw(const ap_ufixed<W, I, Q, O, N>& x) {
    ap_uint<W> r = x.range(W - 1, 0);
    return (int64_t)r.to_uint64();
}
template <int W>
static int64_t to_raw(const ap_uint<W>& x) { return (int64_t)x.to_uint64(); }
template <int W>
static int64_t to_raw(const ap_int<W>& x) { return (int64_t)x.to_int64(); }

struct Op {
    const char* name;
    int nargs;          // operands per case
    bool doubles;       // operands are doubles (else int64 raw)
    int64_t (*fn)(const void* rec);
};

#define D(i) (((const double*)rec)[i])
#define R(i) (((const int64_t*)rec)[i])

// double -> format (rule 1)
#define QOP(NAME, T) {NAME, 1, true, [](const void* rec) -> int64_t { T x = D(0); return to_raw(x); }}
// fm_t -> narrower format / ap_uint<8> (rules 5, 8)
#define CVOP(NAME, T) {NAME, 1, false, [](const void* rec) -> int64_t { \
        fm_t a = from_raw<fm_t>(R(0)); T x = a; return to_raw(x); }}
// binary op: result assigned into fm_t
#define BINOP(NAME, TA, TB, EXPR) {NAME, 2, false, [](const void* rec) -> int64_t { \
        TA a = from_raw<TA>(R(0)); TB b = from_raw<TB>(R(1)); fm_t r = (EXPR); return to_raw(r); }}
// binary op: exact result kept in its own (auto) type
#define XBINOP(NAME, TA, TB, EXPR) {NAME, 2, false, [](const void* rec) -> int64_t { \
        TA a = from_raw<TA>(R(0)); TB b = from_raw<TB>(R(1)); auto r = (EXPR); return to_raw(r); }}
// compound assignment into an fm_t accumulator: acc OP= expr(b, c)
#define ACCOP(NAME, TB, TC, STMT) {NAME, 3, false, [](const void* rec) -> int64_t { \
        fm_t acc = from_raw<fm_t>(R(0)); TB b = from_raw<TB>(R(1)); TC c = from_raw<TC>(R(2)); \
        (void)c; STMT; return to_raw(acc); }}

static const Op OPS[] = {
    QOP("q_fm", fm_t), QOP("q_lin", lin_t), QOP("q_abias", abias_t), QOP("q_bias", bias_t),
    QOP("q_patch", patch_t), QOP("q_pixel", pixel_t), QOP("q_wbias", wbias_t),
    QOP("q_frac", frac_t),
    // fm_t -> narrower formats (floor extra fraction bits, wrap) and ap_uint<8>
    CVOP("cv_lin", lin_t), CVOP("cv_abias", abias_t), CVOP("cv_bias", bias_t),
    CVOP("cv_patch", patch_t), CVOP("cv_pixel", pixel_t), CVOP("cv_wbias", wbias_t),
    CVOP("cv_frac", frac_t), CVOP("cv_u8", ap_uint<8>), CVOP("cv_i12", ap_int<12>),
    // exact products (the full result type) and products floored into fm_t
    XBINOP("mulx_fm_fm", fm_t, fm_t, a * b), XBINOP("mulx_fm_lin", fm_t, lin_t, a * b),
    XBINOP("mulx_pix_patch", pixel_t, patch_t, a * b),
    BINOP("mul_fm_fm", fm_t, fm_t, a * b), BINOP("mul_fm_lin", fm_t, lin_t, a * b),
    BINOP("mul_fm_norm", fm_t, bias_t, a * b), BINOP("mul_pix_patch", pixel_t, patch_t, a * b),
    // exact sums/differences, and sums wrapped into fm_t
    XBINOP("addx_fm_fm", fm_t, fm_t, a + b), XBINOP("subx_fm_fm", fm_t, fm_t, a - b),
    BINOP("add_fm_fm", fm_t, fm_t, a + b), BINOP("sub_fm_fm", fm_t, fm_t, a - b),
    BINOP("add_fm_bias", fm_t, bias_t, a + b), BINOP("add_fm_wbias", fm_t, wbias_t, a + b),
    // compound assignments
    ACCOP("iadd_mul_lin", fm_t, lin_t, acc += b * c), ACCOP("iadd_mul_fm", fm_t, fm_t, acc += b * c),
    ACCOP("isub_mul_fm", fm_t, fm_t, acc -= b * c), ACCOP("imul_fm", fm_t, fm_t, acc *= b),
    ACCOP("imul_lin", lin_t, fm_t, acc *= b), ACCOP("iadd_fm", fm_t, fm_t, acc += b),
    ACCOP("isub_fm", fm_t, fm_t, acc -= b), ACCOP("iadd_bias", bias_t, fm_t, acc += b),
    // division (rule 4) and the reciprocal fm_t(1)/x
    BINOP("div_fm", fm_t, fm_t, a / b),
    {"recip_fm", 1, false, [](const void* rec) -> int64_t {
        fm_t x = from_raw<fm_t>(R(0)); fm_t one = 1; fm_t r = one / x; return to_raw(r); }},
};

int main(int argc, char** argv) {
    if (argc == 2 && std::string(argv[1]) == "--list") {
        for (const Op& op : OPS) std::printf("%s %d %d\n", op.name, op.nargs, op.doubles ? 1 : 0);
        return 0;
    }
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s OP IN OUT | --list\n", argv[0]);
        return 2;
    }
    const Op* op = nullptr;
    for (const Op& o : OPS) if (std::string(o.name) == argv[1]) op = &o;
    if (!op) { std::fprintf(stderr, "unknown op %s\n", argv[1]); return 2; }
    FILE* f = std::fopen(argv[2], "rb");
    if (!f) { std::perror(argv[2]); return 1; }
    std::vector<char> buf;
    char tmp[1 << 16];
    size_t n;
    while ((n = std::fread(tmp, 1, sizeof tmp, f)) > 0) buf.insert(buf.end(), tmp, tmp + n);
    std::fclose(f);
    const size_t rec = 8 * (size_t)op->nargs;
    if (buf.size() % rec) { std::fprintf(stderr, "input size %zu not a multiple of %zu\n", buf.size(), rec); return 1; }
    const size_t cases = buf.size() / rec;
    std::vector<int64_t> out(cases);
    for (size_t i = 0; i < cases; ++i) out[i] = op->fn(buf.data() + i * rec);
    FILE* g = std::fopen(argv[3], "wb");
    if (!g) { std::perror(argv[3]); return 1; }
    std::fwrite(out.data(), 8, cases, g);
    std::fclose(g);
    return 0;
}
