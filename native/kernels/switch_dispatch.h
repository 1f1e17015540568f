// Dispatch (tokens → the expert-major buffer) and combine (expert outputs → tokens) of the
// Switch layer (SPEC §1.5, 1.7, 1.12). T = tokens, D = d_model, k = choices per token,
// R = rows of the dispatch buffer (switch_slots.h describes the row order).
//
// The two are adjoint: dispatch's backward has combine's shape (a sum over a token's choices)
// and combine's backward has dispatch's shape (a gather of token rows, scaled by the gate).
// The single-device layer folds dispatch's gather into the expert matmul (switch_experts.h); the
// mesh layer materialises the buffer to send it through the all-to-all.
#pragma once

#include <cstdint>

namespace st {

// buffer row i = x[row_token[i]] (bf16-rounded when round_wire), zeros where row_token[i] < 0.
void switch_dispatch_forward(float* buffer,            // (R, D)
                             const float* x,           // (T, D)
                             const int32_t* row_token,  // (R)
                             int64_t R, int D, bool round_wire);

// dx[t] (+)= Σ_j dbuffer[row[t·k+j]] over kept choices, in choice order (bf16-rounded per row first
// when round_wire); accumulate adds to dx, else overwrites.
void switch_dispatch_backward(float* dx,               // (T, D)
                              const float* dbuffer,    // (R, D)
                              const int32_t* row,      // (T, k)
                              int T, int k, int D, bool round_wire, bool accumulate);

// y[t] = Σ_j gate[t·k+j] · expert_out[row[t·k+j]] over kept choices (zero for a token with none).
void switch_combine_forward(float* y,                  // (T, D)
                            const float* expert_out,   // (R, D)
                            const float* gate,         // (T, k)
                            const int32_t* row,        // (T, k)
                            int T, int k, int D);

// dgate[c] = dy[t] · expert_out[i] for the choice c of row i (0 for dropped choices);
// dexpert_out[i] = gate[c] · dy[t] (bf16-rounded when round_wire: the gradient sent to the expert),
// zeros for rows with no choice.
void switch_combine_backward(float* dgate,             // (T, k)
                             float* dexpert_out,       // (R, D)
                             const float* dy,          // (T, D)
                             const float* expert_out,  // (R, D)
                             const float* gate,        // (T, k)
                             const int32_t* row_choice,  // (R)
                             int T, int k, int64_t R, int D, bool round_wire);

}  // namespace st
