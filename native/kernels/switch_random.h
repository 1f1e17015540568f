// Counter-based random numbers for the Switch layer: jitter, the random second-expert policy,
// expert dropout and weight initialisation. n = elements.
//
// Every value is a pure function of (key, index), so any thread can draw any element and the
// result does not depend on the thread count or on the order in which work is split.
#pragma once

#include <cstdint>

namespace st {

// The splitmix64 finaliser: a bijection of 64-bit words with good avalanche.
inline uint64_t random_mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// One independent stream per (seed, stream): the layer uses stream = call · 16 + purpose.
inline uint64_t random_key(uint64_t seed, uint64_t stream) {
  return random_mix(random_mix(seed) ^ (stream * 0xd1b54a32d192ed03ull));
}

// Uniform in [0, 1) with 24 bits, exactly representable in float32.
inline float random_uniform(uint64_t key, uint64_t index) {
  return static_cast<float>(random_mix(key ^ random_mix(index)) >> 40) * (1.0f / 16777216.0f);
}

// §2.4: truncated normal, mean 0, standard deviation sigma, values beyond 2·sigma redrawn.
void truncated_normal_fill(float* dst, int64_t n, float sigma, uint64_t key);  // dst: (n)

}  // namespace st
