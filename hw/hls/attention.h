// Edge-MoE multi-head self-attention (spec §4.5) as synthesizable Vitis HLS C++.
//
// Sizes and formats come from the generated moevit_config.h (moevit.hw.hls_config).
// Interfaces: AXI4-Stream, 256-bit beats = FEATURE_BLOCK fm_t words, word j in bits
// [32j+31 : 32j] (the little-endian DRAM layout of spec §7). One top function with a mode:
//   mode 0 (Q·Kᵀ):  q, k            -> scores (attn buffer, §7), info (softmax info rows)
//   mode 1 (A·V):   v, scores, info -> out (T rows x NUM_FEATURE_BLOCKS beats, row order)
// Stream orders follow the staggered schedule (moevit.hw.units.attention_schedule):
//   k / v : for b < QUERY_BLOCKS, key < NUM_TOKENS, db < NUM_FEATURE_BLOCKS: row `key`, block db
//   q     : for b, key < ATTN_PARALLEL with P*b+key < NUM_TOKENS, db: row P*b+key, block db
//   scores: the attn buffer [QB][T][P][HEAD_LANES] flattened, packed 8 words a beat
//   info  : row q = [recip_0, max_0, recip_1, max_1, ..., 0 pads], rows 0..T-1
#pragma once
#include <ap_fixed.h>
#include <ap_int.h>
#include <hls_stream.h>
#include "moevit_config.h"

typedef ap_fixed<FM_W, FM_I> fm_t;
typedef ap_uint<AXI_WIDTH> beat_t;

#define SCORE_ENTRIES (QUERY_BLOCKS * NUM_TOKENS)

void moevit_attention(int mode, hls::stream<beat_t>& q, hls::stream<beat_t>& k,
                      hls::stream<beat_t>& scores_out, hls::stream<beat_t>& info_out,
                      hls::stream<beat_t>& v, hls::stream<beat_t>& scores_in,
                      hls::stream<beat_t>& info_in, hls::stream<beat_t>& out);

void attention_qk(hls::stream<beat_t>& q, hls::stream<beat_t>& k,
                  hls::stream<beat_t>& scores_out, hls::stream<beat_t>& info_out);
void attention_av(hls::stream<beat_t>& v, hls::stream<beat_t>& scores_in,
                  hls::stream<beat_t>& info_in, hls::stream<beat_t>& out);
