// Edge-MoE attention kernel (spec §4.5): Q·Kᵀ with per-block scale floor, staggered P-lane
// schedule, single-pass softmax statistics, score buffer in the §7 layout, softmax·V.
// Numerics are plain ap_fixed semantics (spec §3.2): every `fm_t = expr` floors and wraps.
#include "attention.h"
#include "moevit_exp.h"

static const int P = ATTN_PARALLEL;
static const int T = NUM_TOKENS;
static const int NFB = NUM_FEATURE_BLOCKS;
static const int FBW = FEATURE_BLOCK;
static const int HL = HEAD_LANES;
static const int E = SCORE_ENTRY_WORDS;  // words per score entry (b, key): P x HEAD_LANES
static_assert(E % FEATURE_BLOCK == 0 || FEATURE_BLOCK % E == 0, "entry words and beat words are powers of two");
static_assert(E / FEATURE_BLOCK <= NUM_FEATURE_BLOCKS, "a score entry must drain within one key");
static_assert(2 * NUM_HEADS <= FEATURE_BLOCK, "one softmax-info beat per row");

static fm_t word(const beat_t& beat, int j) {
#pragma HLS INLINE
    fm_t r;
    r.range(31, 0) = beat.range(32 * j + 31, 32 * j);
    return r;
}

static void set_word(beat_t& beat, int j, fm_t x) {
#pragma HLS INLINE
    beat.range(32 * j + 31, 32 * j) = x.range(31, 0);
}

// hls::recip on fm_t: 0 for 0, else fm_t(1) / x (ap_fixed division, trunc toward zero, wrap).
static fm_t recip(fm_t x) {
#pragma HLS INLINE
    if (x == 0) return fm_t(0);
    fm_t one = 1;
    return fm_t(one / x);
}

// One online-softmax update (spec §4.5.3) of (sum, bias) with score s.
static void softmax_update(fm_t& sum, fm_t& bias, fm_t s) {
#pragma HLS INLINE
    ap_fixed<FM_W + 1, FM_I + 1> d = bias - s;  // exact
    if (d < 0) {
        fm_t e = moevit_exp(fm_t(d));
        sum = sum * e;
        sum = sum + fm_t(1);
        bias = s;
    } else {
        fm_t e = moevit_exp(fm_t(-d));
        sum = sum + e;
    }
}

// ---------------------------------------------------------------------------- Q·Kᵀ
void attention_qk(hls::stream<beat_t>& q, hls::stream<beat_t>& k,
                  hls::stream<beat_t>& scores_out, hls::stream<beat_t>& info_out) {
    // static: zero-initialised state (only the never-valid block-0 tail lanes read it before
    // writing it, and their results are discarded)
    static fm_t qbuf[P][NFB][FBW];
#pragma HLS ARRAY_PARTITION variable = qbuf dim = 1 complete
#pragma HLS ARRAY_PARTITION variable = qbuf dim = 3 complete
    static fm_t acc[P], sc[P][HL], sum[P][HL], bias[P][HL], rcp[HL];
#pragma HLS ARRAY_PARTITION variable = sc complete dim = 0
#pragma HLS ARRAY_PARTITION variable = sum complete dim = 0
#pragma HLS ARRAY_PARTITION variable = bias complete dim = 0
    const fm_t scale = fm_t(1.0 / (1 << ATTN_SCALE_SHIFT));
    // score packer: a pending entry drains one beat per step (E >= 8), or entries gather
    // into one beat (E < 8)
    fm_t pend[E];
#pragma HLS ARRAY_PARTITION variable = pend complete
    int pend_beats = 0, pend_idx = 0;
    beat_t gather = 0;
    int gather_n = 0;
    int entry = 0;

qk_blocks:
    for (int b = 0; b < QUERY_BLOCKS; b++) {
    qk_keys:
        for (int key = 0; key < T; key++) {
        qk_feature_blocks:
            for (int db = 0; db < NFB; db++) {
#pragma HLS PIPELINE II = 1
                if (E >= FBW && pend_beats > 0) {  // drain one beat of the previous entry
                    beat_t ob = 0;
                    for (int j = 0; j < FBW; j++) set_word(ob, j, pend[pend_idx * FBW + j]);
                    scores_out.write(ob);
                    pend_idx++;
                    pend_beats--;
                }
                beat_t kb = k.read();
                bool load = key < P && P * b + key < T;
                beat_t qb = 0;
                if (load) qb = q.read();
                int h = db / BLOCKS_PER_HEAD;
                bool head_first = db % BLOCKS_PER_HEAD == 0;
                bool head_last = db % BLOCKS_PER_HEAD == BLOCKS_PER_HEAD - 1;
                // the lane finishing its row at this key (at most one)
                int emit_lane = key == T - 1 ? 0 : (key + 1 < P ? key + 1 : -1);
                for (int o = 0; o < P; o++) {
#pragma HLS UNROLL
                    fm_t blk = 0;
                    for (int j = 0; j < FBW; j++) {
#pragma HLS UNROLL
                        fm_t qv = (load && key == o) ? word(qb, j) : qbuf[o][db][j];
                        if (load && key == o) qbuf[o][db][j] = qv;
                        blk += qv * word(kb, j);  // product floored to fm_t, sum wraps
                    }
                    fm_t scaled = blk * scale;  // per-block x2^-shift, floor
                    fm_t a = (head_first ? fm_t(0) : acc[o]) + scaled;
                    acc[o] = a;
                    if (head_last) {
                        int row = key >= o ? P * b + o : P * (b - 1) + o;
                        bool valid = row >= 0 && row < T;
                        sc[o][h] = valid ? a : fm_t(0);
                        if (key == o) {  // first key of the row's cyclic order
                            sum[o][h] = 0;
                            bias[o][h] = -(1 << (FM_I - 1));
                        }
                        softmax_update(sum[o][h], bias[o][h], a);
                        if (o == emit_lane) rcp[h] = recip(sum[o][h]);
                    }
                }
                if (db == NFB - 1) {
                    // the score entry (b, key) is complete: hand it to the packer
                    for (int o = 0; o < P; o++)
                        for (int hh = 0; hh < HL; hh++) {
                            fm_t w = hh < NUM_HEADS ? sc[o][hh] : fm_t(0);
                            if (E >= FBW) pend[o * HL + hh] = w;
                            else set_word(gather, (gather_n * E + o * HL + hh) % FBW, w);
                        }
                    if (E >= FBW) {
                        pend_beats = E / FBW;
                        pend_idx = 0;
                    } else {
                        gather_n++;
                        if (gather_n * E == FBW || entry == SCORE_ENTRIES - 1) {
                            scores_out.write(gather);
                            gather = 0;
                            gather_n = 0;
                        }
                    }
                    entry++;
                    if (emit_lane >= 0) {
                        int row = emit_lane == 0 ? P * b : P * (b - 1) + emit_lane;
                        if (row >= 0 && row < T) {
                            beat_t ib = 0;
                            for (int hh = 0; hh < NUM_HEADS; hh++) {
                                set_word(ib, 2 * hh, rcp[hh]);
                                set_word(ib, 2 * hh + 1, bias[emit_lane][hh]);
                            }
                            info_out.write(ib);
                        }
                    }
                }
            }
        }
    }
qk_drain:
    for (; E >= FBW && pend_beats > 0; pend_beats--, pend_idx++) {
        beat_t ob = 0;
        for (int j = 0; j < FBW; j++) set_word(ob, j, pend[pend_idx * FBW + j]);
        scores_out.write(ob);
    }
}

// ---------------------------------------------------------------------------- softmax x V
void attention_av(hls::stream<beat_t>& v, hls::stream<beat_t>& scores_in,
                  hls::stream<beat_t>& info_in, hls::stream<beat_t>& out) {
    static fm_t accrow[P][NFB][FBW];
#pragma HLS ARRAY_PARTITION variable = accrow dim = 1 complete
#pragma HLS ARRAY_PARTITION variable = accrow dim = 3 complete
    static fm_t rc[P][HL], mx[P][HL], aw[P];
#pragma HLS ARRAY_PARTITION variable = rc complete dim = 0
#pragma HLS ARRAY_PARTITION variable = mx complete dim = 0
    fm_t cur[E], nxt[E];
#pragma HLS ARRAY_PARTITION variable = cur complete
#pragma HLS ARRAY_PARTITION variable = nxt complete
    beat_t sbeat = 0;
    int entry = 0;
    // E >= 8: entry e+1 is prefetched one beat per step while entry e is in use; the
    // first entry is read before the loop (E/8 beats).
    if (E >= FBW) {
    av_prologue:
        for (int i = 0; i < E / FBW; i++) {
            beat_t sb = scores_in.read();
            for (int j = 0; j < FBW; j++) nxt[i * FBW + j] = word(sb, j);
        }
    }

av_blocks:
    for (int b = 0; b < QUERY_BLOCKS; b++) {
    av_keys:
        for (int key = 0; key < T; key++) {
        av_feature_blocks:
            for (int db = 0; db < NFB; db++) {
#pragma HLS PIPELINE II = 1
                if (db == 0) {  // take score entry (b, key)
                    if (E >= FBW) {
                        for (int i = 0; i < E; i++) cur[i] = nxt[i];
                    } else {
                        if ((entry * E) % FBW == 0) sbeat = scores_in.read();
                        for (int i = 0; i < E; i++) cur[i] = word(sbeat, (entry * E + i) % FBW);
                    }
                    entry++;
                }
                if (E >= FBW && db < E / FBW && entry < SCORE_ENTRIES) {  // prefetch next entry
                    beat_t sb = scores_in.read();
                    for (int j = 0; j < FBW; j++) nxt[db * FBW + j] = word(sb, j);
                }
                beat_t vb = v.read();
                bool info = db == 0 && key < P && P * b + key < T;
                beat_t ib = 0;
                if (info) ib = info_in.read();
                int h = db / BLOCKS_PER_HEAD;
                bool head_first = db % BLOCKS_PER_HEAD == 0;
                int out_lane = key == T - 1 ? 0 : (key + 1 < P ? key + 1 : -1);
                for (int o = 0; o < P; o++) {
#pragma HLS UNROLL
                    if (info && key == o)
                        for (int hh = 0; hh < NUM_HEADS; hh++) {
                            rc[o][hh] = word(ib, 2 * hh);
                            mx[o][hh] = word(ib, 2 * hh + 1);
                        }
                    if (head_first) {
                        fm_t e = moevit_exp(fm_t(cur[o * HL + h] - mx[o][h]));
                        aw[o] = e * rc[o][h];
                    }
                    for (int j = 0; j < FBW; j++) {
#pragma HLS UNROLL
                        fm_t base = key == o ? fm_t(0) : accrow[o][db][j];
                        accrow[o][db][j] = base + word(vb, j) * aw[o];
                    }
                }
                if (out_lane >= 0) {
                    int row = out_lane == 0 ? P * b : P * (b - 1) + out_lane;
                    if (row >= 0 && row < T) {
                        beat_t ob = 0;
                        for (int j = 0; j < FBW; j++) set_word(ob, j, accrow[out_lane][db][j]);
                        out.write(ob);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------- top
void moevit_attention(int mode, hls::stream<beat_t>& q, hls::stream<beat_t>& k,
                      hls::stream<beat_t>& scores_out, hls::stream<beat_t>& info_out,
                      hls::stream<beat_t>& v, hls::stream<beat_t>& scores_in,
                      hls::stream<beat_t>& info_in, hls::stream<beat_t>& out) {
#pragma HLS INTERFACE axis port = q
#pragma HLS INTERFACE axis port = k
#pragma HLS INTERFACE axis port = scores_out
#pragma HLS INTERFACE axis port = info_out
#pragma HLS INTERFACE axis port = v
#pragma HLS INTERFACE axis port = scores_in
#pragma HLS INTERFACE axis port = info_in
#pragma HLS INTERFACE axis port = out
#pragma HLS INTERFACE ap_none port = mode
#pragma HLS INTERFACE ap_ctrl_hs port = return
    if (mode == 0)
        attention_qk(q, k, scores_out, info_out);
    else
        attention_av(v, scores_in, info_in, out);
}
