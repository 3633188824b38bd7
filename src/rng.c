/*
 * A seeded, portable random number generator: dropout's masks, initialisation
 * and shuffles draw from it.
 *
 * xoshiro256** (Blackman and Vigna) is small, fast and uses only 64-bit
 * integer arithmetic, so a seed gives the same stream on every machine and
 * compiler. Its four words of state are filled by splitmix64, which turns any
 * seed, 0 included, into a state that is not all zero. The generator lives in
 * a caller's struct: the library keeps no global RNG.
 */
#include "internal.h"

#include <math.h>

#define TWO_PI 6.283185307179586476925286766559

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void tg_rng_seed(tg_rng *r, uint64_t seed)
{
    if (!r) return;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

uint64_t tg_rng_u64(tg_rng *r)
{
    if (!r) return 0;
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* The top 53 bits, the ones a double holds exactly, scaled by 2^-53. */
double tg_rng_uniform(tg_rng *r) { return (double)(tg_rng_u64(r) >> 11) * 0x1.0p-53; }

/* Box-Muller keeps only the cosine half, so a draw depends on no state other
 * than the four words: copying or reseeding the struct reproduces the stream. */
double tg_rng_normal(tg_rng *r)
{
    double u1 = 1.0 - tg_rng_uniform(r); /* (0, 1]: log(u1) is finite */
    double u2 = tg_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2);
}

/* Rejection of the 2^64 mod n lowest values leaves a whole number of copies of
 * [0, n), so 'x % n' is exactly uniform (the OpenBSD arc4random_uniform rule).
 * Fewer than one draw in two is rejected, whatever n. */
uint64_t tg_rng_below(tg_rng *r, uint64_t n)
{
    if (!r || n == 0) return 0;
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t x = tg_rng_u64(r);
        if (x >= threshold) return x % n;
    }
}
