// Adafactor (Shazeer & Stern 2018), the optimizer the Switch Transformer paper trains with, in two
// passes over one parameter tensor: the statistics (second moments, Σ u²), then the update, which
// recomputes u = g / sqrt(v̂) rather than storing it. Between the two the caller turns Σ u² and Σ w²
// into the step's scale (update clipping by RMS(u), relative step by RMS(w)); with expert
// parallelism those sums are first added over the devices that hold slices of the tensor.
// Factored: mats matrices of rows × cols (the last two dimensions); R: (mats, rows) and
// C: (mats, cols) running means of g² + ε1 over columns and rows; v̂_rc = R_r C_c / mean(R).
// Unfactored: v (n) the running mean of g² + ε1. Arithmetic in double, state stored in float.
#pragma once

#include <cstdint>

namespace st {

// R, C updated in place  g: (mats, rows, cols). Returns Σ u².
double adafactor_factored_statistics(float* R, float* C, const float* g, int64_t mats, int64_t rows, int64_t cols,
                                     double beta2, double eps1);
// v: (n) updated in place  g: (n). Returns Σ u².
double adafactor_vector_statistics(float* v, const float* g, int64_t n, double beta2, double eps1);

// w ← w·decay − scale·u, or with momentum (m not null): m ← β1 m + (1 − β1) scale·u, w ← w·decay − m.
// w, m, g: (mats, rows, cols)  R: (mats, rows)  C: (mats, cols)
void adafactor_factored_update(float* w, float* m, const float* g, const float* R, const float* C, int64_t mats,
                               int64_t rows, int64_t cols, double scale, double decay, double beta1);
// w, m, g, v: (n)
void adafactor_vector_update(float* w, float* m, const float* g, const float* v, int64_t n, double scale, double decay,
                             double beta1);

// Plain single-loop definitions, one matrix after another (the tests compare against them).
double adafactor_factored_statistics_reference(float* R, float* C, const float* g, int64_t mats, int64_t rows,
                                               int64_t cols, double beta2, double eps1);
void adafactor_factored_update_reference(float* w, float* m, const float* g, const float* R, const float* C,
                                         int64_t mats, int64_t rows, int64_t cols, double scale, double decay,
                                         double beta1);

}  // namespace st
