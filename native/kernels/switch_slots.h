// Slot assignment and the dispatch plan of the Switch layer (SPEC §1.4-1.5, 1.14).
// T = tokens, E = experts, k = choices per token, G = tokens per group, C = expert capacity,
// R = rows of the expert-major dispatch buffer.
//
// A choice's slot is its position among the group's choices of the same expert: an exclusive
// cumulative count in token order, all first choices before any second choice. It is kept where
// the slot is < C. Groups are independent (one task each), so any thread count gives the same.
#pragma once

#include <cstdint>

namespace st {

// slot: position of each wanted choice in its expert (kept where < C), -1 where dropped or not
// wanted. counts: kept choices per (group, expert). With no_token_left_behind (k = 1 only),
// dropped tokens then try their 2nd, 3rd, 4th best experts in rounds (all dropped tokens of a
// round in token order), taking a free slot of that expert; a rerouted token's expert_index and
// gate become that expert and its raw probability (Appendix B).
void switch_slots_forward(int32_t* slot,           // (T, k)
                          int32_t* counts,         // (T/G, E)
                          int32_t* expert_index,   // (T, k) rewritten by rerouting only
                          float* gate,             // (T, k) rewritten by rerouting only
                          const uint8_t* want,     // (T, k)
                          const float* probs,      // (T, E) for rerouting, else unused
                          int T, int k, int G, int E, int C, bool no_token_left_behind);

// The expert-major dispatch order. compact: experts' rows back to back, offsets[e] = Σ kept
// choices of experts < e, inside an expert by group then slot. padded (the mesh's all-to-all
// buffer): expert e, group g, slot s at row (e · T/G + g) · C + s, offsets[e] = e · (T/G) · C, and
// rows no choice fills get row_token = row_choice = -1.
// row: each choice's row, -1 where dropped. row_token / row_choice: the token t and the choice
// t·k + j of each row.
void switch_rows_forward(int32_t* row,              // (T, k)
                         int32_t* offsets,          // (E + 1)
                         int32_t* row_token,        // (R)
                         int32_t* row_choice,       // (R)
                         const int32_t* expert_index,  // (T, k)
                         const int32_t* slot,       // (T, k)
                         const int32_t* counts,     // (T/G, E)
                         int T, int k, int G, int E, int C, bool padded);

// Rows of the plan: Σ counts (compact) or E · (T/G) · C (padded).
int64_t switch_rows_count(const int32_t* counts, int T, int G, int E, int C, bool padded);

}  // namespace st
