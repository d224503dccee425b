// OpenSSL's low-level SHA-256 uses the CPU's SHA extensions and is several times faster than the
// one-shot SHA256() of OpenSSL 3, which fetches the digest on every call (see STACK.md). The low-level
// API is marked deprecated in OpenSSL 3, so it is wrapped here once, with the warning silenced, rather
// than called from Swift at every site.
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <stdint.h>
#include <stddef.h>
#include <openssl/sha.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>

static inline void keyglass_sha256(const void *data, size_t length, uint8_t out[32]) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, data, length);
    SHA256_Final(out, &ctx);
}

// Merkle node hash SHA-256(prefix || a || b) without building a buffer in Swift.
static inline void keyglass_sha256_prefixed(uint8_t prefix, const void *a, size_t alen,
                                            const void *b, size_t blen, uint8_t out[32]) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, &prefix, 1);
    if (alen) SHA256_Update(&ctx, a, alen);
    if (blen) SHA256_Update(&ctx, b, blen);
    SHA256_Final(out, &ctx);
}

// 1 when `point` is a valid SEC1 encoding (compressed or uncompressed) of a point on P-256 that is
// not the point at infinity; 0 otherwise. Validation only: no key is ever used for crypto here.
static inline int keyglass_p256_point_is_valid(const uint8_t *point, size_t length) {
    EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    if (!group) return 0;
    EC_POINT *p = EC_POINT_new(group);
    int ok = 0;
    if (p && EC_POINT_oct2point(group, p, point, length, NULL) == 1 &&
        !EC_POINT_is_at_infinity(group, p) && EC_POINT_is_on_curve(group, p, NULL) == 1) {
        ok = 1;
    }
    EC_POINT_free(p);
    EC_GROUP_free(group);
    return ok;
}
