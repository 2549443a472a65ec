// C-simulation driver for the HLS attention kernel: feeds the streams in schedule order from
// raw int32 arrays (DRAM layouts of spec §7) and collects the outputs. Called from Python
// through ctypes (moevit.hw.hls_attention). Not part of the synthesized design.
#include <stdint.h>
#include "attention.h"
#include "moevit_exp.h"

static const int P = ATTN_PARALLEL, T = NUM_TOKENS, NFB = NUM_FEATURE_BLOCKS, FBW = FEATURE_BLOCK;

static beat_t pack(const int32_t* w) {
    beat_t b = 0;
    for (int j = 0; j < FBW; j++) b.range(32 * j + 31, 32 * j) = (uint32_t)w[j];
    return b;
}

static void unpack(const beat_t& b, int32_t* w, int n) {
    for (int j = 0; j < n; j++) w[j] = (int32_t)(uint32_t)b.range(32 * j + 31, 32 * j).to_uint();
}

extern "C" {

// q, k, v: [T][FEATURE_DIM]; scores: [SCORE_BEATS*8] words; info: [T][SOFTMAX_INFO_WIDTH];
// out: [T][FEATURE_DIM]. Returns 0, or a negative code when a stream count is wrong.
int moevit_attention_run(const int32_t* q, const int32_t* k, const int32_t* v, int32_t* scores,
                         int32_t* info, int32_t* out) {
    hls::stream<beat_t> qs("q"), ks("k"), so("scores_out"), io("info_out"), vs("v"),
        si("scores_in"), ii("info_in"), os("out");
    for (int b = 0; b < QUERY_BLOCKS; b++)
        for (int key = 0; key < T; key++)
            for (int db = 0; db < NFB; db++) {
                ks.write(pack(k + (key * NFB + db) * FBW));
                vs.write(pack(v + (key * NFB + db) * FBW));
                if (key < P && P * b + key < T) qs.write(pack(q + ((P * b + key) * NFB + db) * FBW));
            }
    moevit_attention(0, qs, ks, so, io, vs, si, ii, os);
    if (!qs.empty() || !ks.empty()) return -1;
    if ((int)so.size() != SCORE_BEATS) return -2;
    if ((int)io.size() != T) return -3;
    for (int i = 0; i < SCORE_BEATS; i++) {
        beat_t b = so.read();
        unpack(b, scores + i * FBW, FBW);
        si.write(b);
    }
    for (int r = 0; r < T; r++) {
        beat_t b = io.read();
        unpack(b, info + r * SOFTMAX_INFO_WIDTH, SOFTMAX_INFO_WIDTH);
        ii.write(b);
    }
    moevit_attention(1, qs, ks, so, io, vs, si, ii, os);
    if (!vs.empty() || !si.empty() || !ii.empty()) return -4;
    if ((int)os.size() != T * NFB) return -5;
    for (int i = 0; i < T * NFB; i++) unpack(os.read(), out + i * FBW, FBW);
    return 0;
}

// fm_t exp of n raw inputs (for exhaustive checks against the golden hls_exp).
int moevit_exp_raw(const int32_t* x, int32_t* y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        fm_t a;
        a.range(31, 0) = (uint32_t)x[i];
        fm_t r = moevit_exp(a);
        y[i] = (int32_t)(uint32_t)r.range(31, 0).to_uint();
    }
    return 0;
}
}
