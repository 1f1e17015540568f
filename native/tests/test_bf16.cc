// bf16 (SPEC §2): every one of the 2^32 float32 bit patterns through both ISA paths against the
// scalar rule (conversion and round), every bf16 back to float32, the scalar rule itself against an
// independent nearest-even oracle in double precision, and the threaded, streaming dispatcher.
// ST_TEST_QUICK=1 (the sanitizer run) takes a strided subset of the 2^32 patterns.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "kernels/bf16.h"
#include "kernels/cpu.h"
#include "kernels/threadpool.h"

namespace {

float from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
uint32_t bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

// The rule as the SPEC words it, by value: the nearer of the two bf16 neighbours of |x| (in double,
// where the values are exact), ties to the even one, a neighbour past the largest finite bf16
// being 2^128 (→ Inf); NaN a quiet NaN with its sign.
bool oracle_agrees(uint32_t u, uint16_t out) {
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000);
  if ((out & 0x8000) != sign) return false;
  const float x = from_bits(u);
  if (std::isnan(x)) return (out & 0x7f80) == 0x7f80 && (out & 0x0040) != 0;
  const uint32_t magnitude = u & 0x7fffffff;
  const uint16_t lower = static_cast<uint16_t>(magnitude >> 16);
  const uint16_t upper = static_cast<uint16_t>(lower + 1);
  const double value = std::fabs(static_cast<double>(x));
  const double lo = static_cast<double>(from_bits(static_cast<uint32_t>(lower) << 16));
  const double hi = upper == 0x7f80 ? std::ldexp(1.0, 128) : static_cast<double>(from_bits(static_cast<uint32_t>(upper) << 16));
  uint16_t want;
  if (std::isinf(x)) want = 0x7f80;
  else if (value - lo < hi - value) want = lower;
  else if (value - lo > hi - value) want = upper;
  else want = (lower & 1) ? upper : lower;
  return (out & 0x7fff) == want;
}

void check_oracle() {
  std::vector<uint32_t> patterns;
  const uint32_t stride = st::test::quick() ? 65537u * 7 : 4099u;
  for (uint64_t u = 0; u <= 0xffffffffull; u += stride) patterns.push_back(static_cast<uint32_t>(u));
  // Around every rounding boundary of every exponent, both signs: exact, just below/at/above a
  // half, with an even and an odd kept mantissa, and the last mantissa before the next binade.
  for (uint32_t sign : {0u, 1u})
    for (uint32_t exponent = 0; exponent < 256; ++exponent)
      for (uint32_t kept : {0u, 1u, 2u, 3u, 0x7eu, 0x7fu})
        for (uint32_t low : {0u, 1u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu})
          patterns.push_back(sign << 31 | exponent << 23 | kept << 16 | low);
  int bad = 0;
  for (uint32_t u : patterns) {
    const uint16_t out = st::bf16_from_f32_scalar(from_bits(u));
    if (!oracle_agrees(u, out) && ++bad <= 10) ST_CHECK(false, "scalar rule %08x -> %04x disagrees with the oracle", u, out);
  }
  ST_CHECK(bad == 0, "%d of %zu patterns disagree with the oracle", bad, patterns.size());
  // The named cases of the SPEC.
  ST_CHECK(st::bf16_from_f32_scalar(from_bits(0x7f7fffff)) == 0x7f80, "max float overflows to +Inf");
  ST_CHECK(st::bf16_from_f32_scalar(from_bits(0xff7f8000)) == 0xff80, "half past max bf16 ties to -Inf");
  ST_CHECK(st::bf16_from_f32_scalar(from_bits(0x7f7f7fff)) == 0x7f7f, "just below the half stays max");
  ST_CHECK(st::bf16_from_f32_scalar(from_bits(0x80000000)) == 0x8000, "-0");
  ST_CHECK(st::bf16_from_f32_scalar(from_bits(0x00008000)) == 0x0000, "subnormal tie to even 0");
  ST_CHECK(st::bf16_from_f32_scalar(from_bits(0x00018000)) == 0x0002, "subnormal tie to even up");
  ST_CHECK(st::bf16_from_f32_scalar(from_bits(0x007fffff)) == 0x0080, "largest subnormal rounds to min normal");
  ST_CHECK(st::bf16_from_f32_scalar(from_bits(0x7f800001)) == 0x7fc0, "signalling NaN quieted");
  ST_CHECK(st::bf16_from_f32_scalar(from_bits(0xffffffff)) == 0xffff, "negative NaN keeps payload and sign");
}

using ToBf16 = void (*)(uint16_t*, const float*, int64_t, bool);
using ToF32 = void (*)(float*, const uint16_t*, int64_t, bool);
using Round = void (*)(float*, const float*, int64_t, bool);

struct Path {
  const char* name;
  ToBf16 from_f32;
  ToF32 to_f32;
  Round round;
};

// Every pattern (or every `stride`-th block in quick mode) in blocks, both paths against the reference.
void check_all_patterns(const std::vector<Path>& paths) {
  constexpr int64_t kBlock = int64_t{1} << 16;
  const uint64_t block_stride = st::test::quick() ? 13 : 1;
  std::vector<uint32_t> src(kBlock);
  std::vector<uint16_t> want(kBlock), got(kBlock);
  std::vector<uint32_t> want_round(kBlock), got_round(kBlock);
  int64_t bad_convert = 0, bad_round = 0, blocks = 0;
  for (uint64_t base = 0; base <= 0xffffffffull; base += kBlock * block_stride) {
    ++blocks;
    for (int64_t i = 0; i < kBlock; ++i) src[i] = static_cast<uint32_t>(base + i);
    const auto* f = reinterpret_cast<const float*>(src.data());
    st::bf16_from_f32_reference(want.data(), f, kBlock);
    for (int64_t i = 0; i < kBlock; ++i) want_round[i] = static_cast<uint32_t>(want[i]) << 16;
    // Streaming stores on some blocks, the same answer either way.
    const bool stream = (base / kBlock) % 17 == 0;
    for (const Path& p : paths) {
      std::memset(got.data(), 0xa5, kBlock * 2);
      p.from_f32(got.data(), f, kBlock, stream);
      if (std::memcmp(got.data(), want.data(), kBlock * 2) != 0) {
        for (int64_t i = 0; i < kBlock; ++i)
          if (got[i] != want[i] && ++bad_convert <= 10)
            ST_CHECK(false, "%s f32->bf16 %08x: got %04x want %04x", p.name, src[i], got[i], want[i]);
      }
      std::memset(got_round.data(), 0xa5, kBlock * 4);
      p.round(reinterpret_cast<float*>(got_round.data()), f, kBlock, stream);
      if (std::memcmp(got_round.data(), want_round.data(), kBlock * 4) != 0) {
        for (int64_t i = 0; i < kBlock; ++i)
          if (got_round[i] != want_round[i] && ++bad_round <= 10)
            ST_CHECK(false, "%s round %08x: got %08x want %08x", p.name, src[i], got_round[i], want_round[i]);
      }
    }
  }
  ST_CHECK(bad_convert == 0, "%lld f32->bf16 mismatches", static_cast<long long>(bad_convert));
  ST_CHECK(bad_round == 0, "%lld round mismatches", static_cast<long long>(bad_round));
  std::printf("bf16: %lld patterns through %zu paths\n", static_cast<long long>(blocks * kBlock), paths.size());
}

void check_all_bf16(const std::vector<Path>& paths) {
  std::vector<uint16_t> src(65536);
  for (uint32_t h = 0; h < 65536; ++h) src[h] = static_cast<uint16_t>(h);
  std::vector<float> got(65536);
  for (const Path& p : paths)
    for (bool stream : {false, true}) {
      std::fill(got.begin(), got.end(), std::nanf(""));
      p.to_f32(got.data(), src.data(), 65536, stream);
      int bad = 0;
      for (uint32_t h = 0; h < 65536; ++h) {
        const float x = got[h];
        bool ok = bits(x) == h << 16;
        // And by value, built from the fields rather than by the shift.
        const int exponent = (h >> 7) & 0xff;
        const double mantissa = h & 0x7f;
        if (exponent != 0xff) {
          const double magnitude = exponent == 0 ? std::ldexp(mantissa, -133) : std::ldexp(128 + mantissa, exponent - 134);
          ok = ok && static_cast<double>(x) == ((h & 0x8000) ? -magnitude : magnitude);
        }
        if (!ok && ++bad <= 5) ST_CHECK(false, "%s bf16->f32 %04x: got %08x", p.name, h, bits(x));
      }
      ST_CHECK(bad == 0, "%s bf16->f32: %d wrong", p.name, bad);
    }
}

// Short lengths and misaligned pointers through the head/vector/tail split, streaming or not.
void check_edges(const std::vector<Path>& paths) {
  std::mt19937 rng(7);
  std::vector<uint32_t> src(200);
  std::vector<uint16_t> want(200), got(220);
  std::vector<float> want_f(200), got_f(220);
  for (const Path& p : paths)
    for (bool stream : {false, true})
      for (int64_t n : {0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 64, 100, 199})
        for (int offset = 0; offset < 16; ++offset) {
          for (auto& u : src) u = rng();
          const auto* f = reinterpret_cast<const float*>(src.data());
          st::bf16_from_f32_reference(want.data(), f, n);
          std::fill(got.begin(), got.end(), 0xdead);
          p.from_f32(got.data() + offset, f, n, stream);
          bool ok = std::memcmp(got.data() + offset, want.data(), n * 2) == 0 && got[offset + n] == 0xdead;
          for (int i = 0; i < offset; ++i) ok = ok && got[i] == 0xdead;
          ST_CHECK(ok, "%s f32->bf16 n %lld offset %d stream %d", p.name, static_cast<long long>(n), offset, stream);

          st::bf16_to_f32_reference(want_f.data(), want.data(), n);
          std::fill(got_f.begin(), got_f.end(), 1234.5f);
          p.to_f32(got_f.data() + offset, want.data(), n, stream);
          ok = std::memcmp(got_f.data() + offset, want_f.data(), n * 4) == 0 && got_f[offset + n] == 1234.5f;
          ST_CHECK(ok, "%s bf16->f32 n %lld offset %d stream %d", p.name, static_cast<long long>(n), offset, stream);

          st::bf16_round_reference(want_f.data(), f, n);
          std::fill(got_f.begin(), got_f.end(), 1234.5f);
          p.round(got_f.data() + offset, f, n, stream);
          ok = std::memcmp(got_f.data() + offset, want_f.data(), n * 4) == 0 && got_f[offset + n] == 1234.5f;
          ST_CHECK(ok, "%s round n %lld offset %d stream %d", p.name, static_cast<long long>(n), offset, stream);
        }
}

// The dispatcher: every ISA and thread count, lengths that take the threaded and streaming
// branches, misaligned views, round in place; outputs poisoned first.
void check_dispatch() {
  std::mt19937 rng(11);
  const int64_t big = st::test::quick() ? (int64_t{1} << 18) + 5 : 3'000'017;  // > the streaming threshold
  std::vector<uint32_t> src(big + 1);
  for (auto& u : src) u = rng();
  std::vector<uint16_t> want(big), got(big + 1);
  std::vector<float> want_f(big), got_f(big + 1);
  for (st::Isa isa : st::test::all_isas()) {
    if (!st::set_active_isa(isa)) continue;
    for (int threads : {1, 2, 3}) {
      st::set_num_threads(threads);
      for (int64_t n : {int64_t{0}, int64_t{5}, int64_t{1} << 17, (int64_t{1} << 17) + 3, big}) {
        for (int offset : {0, 1}) {
          const auto* f = reinterpret_cast<const float*>(src.data() + offset);
          st::bf16_from_f32_reference(want.data(), f, n);
          std::fill(got.begin(), got.end(), 0xdead);
          st::bf16_from_f32(got.data() + offset, f, n);
          ST_CHECK(std::memcmp(got.data() + offset, want.data(), n * 2) == 0, "%s x%d f32->bf16 n %lld",
                   st::isa_name(isa), threads, static_cast<long long>(n));
          st::bf16_to_f32_reference(want_f.data(), want.data(), n);
          std::fill(got_f.begin(), got_f.end(), std::nanf(""));
          st::bf16_to_f32(got_f.data() + offset, want.data(), n);
          ST_CHECK(std::memcmp(got_f.data() + offset, want_f.data(), n * 4) == 0, "%s x%d bf16->f32 n %lld",
                   st::isa_name(isa), threads, static_cast<long long>(n));
          st::bf16_round_reference(want_f.data(), f, n);
          std::fill(got_f.begin(), got_f.end(), std::nanf(""));
          st::bf16_round(got_f.data() + offset, f, n);
          ST_CHECK(std::memcmp(got_f.data() + offset, want_f.data(), n * 4) == 0, "%s x%d round n %lld",
                   st::isa_name(isa), threads, static_cast<long long>(n));
          std::memcpy(got_f.data(), f, n * 4);
          st::bf16_round(got_f.data(), got_f.data(), n);
          ST_CHECK(std::memcmp(got_f.data(), want_f.data(), n * 4) == 0, "%s x%d round in place n %lld",
                   st::isa_name(isa), threads, static_cast<long long>(n));
        }
      }
    }
  }
  st::set_active_isa(st::best_isa());
  st::set_num_threads(st::hardware_threads());
}

}  // namespace

int main() {
  std::vector<Path> paths = {{"sse2", st::bf16_from_f32_sse2, st::bf16_to_f32_sse2, st::bf16_round_sse2}};
  if (st::isa_supported(st::Isa::avx2))
    paths.push_back({"avx2", st::bf16_from_f32_avx2, st::bf16_to_f32_avx2, st::bf16_round_avx2});
  else
    std::printf("bf16: this CPU has no AVX2, only the portable path is checked\n");
  if (st::isa_supported(st::Isa::avx512))  // the widening stays AVX2's at this level
    paths.push_back({"avx512", st::bf16_from_f32_avx512, st::bf16_to_f32_avx2, st::bf16_round_avx512});
  else
    std::printf("bf16: this CPU has no AVX-512, its path is not checked\n");
  check_oracle();
  check_all_bf16(paths);
  check_edges(paths);
  check_dispatch();
  check_all_patterns(paths);
  return st::test::summary("bf16");
}
