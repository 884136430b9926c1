/*
 * PKCS#1 v1.5 decryption with implicit rejection (OpenSSL 3.2+), on a
 * raw decryption by the token: a bad padding yields a synthetic message
 * that depends only on the key and the ciphertext, as in the IETF draft
 * (draft-irtf-cfrg-rsa-guidance), chosen without a branch on the
 * padding's validity.
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* RSA_padding_check_*: no EVP form */
#include "config.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "provider/asymcipher_rsa_ir.h"
#include "provider/errors.h"
#include "provider/provider.h"

/* 16-bit length candidates drawn for the synthetic message. */
#define IR_LEN_TRIES 128

/* The draft's PRF: HMAC-SHA256(kdk, I || label || bit length) blocks. */
static int ir_prf(struct p11b_prov *prov, const unsigned char *kdk,
                  const char *label, unsigned char *out, size_t outlen)
{
    unsigned char in[32], block[32];
    size_t llen = strlen(label), done = 0, n, len = 0;
    unsigned int i;
    int ok = 1;

    for (i = 0; ok && done < outlen; i++) {
        in[0] = (unsigned char)(i >> 8);
        in[1] = (unsigned char)i;
        memcpy(in + 2, label, llen);
        in[2 + llen] = (unsigned char)((outlen * 8) >> 8);
        in[3 + llen] = (unsigned char)(outlen * 8);
        ok = EVP_Q_mac(prov->libctx, "HMAC", P11B_SOFT_PROPQ, "SHA256",
                       NULL, kdk, 32, in, llen + 4, block, sizeof(block),
                       &len) != NULL && len == sizeof(block);
        n = outlen - done < len ? outlen - done : len;
        if (ok)
            memcpy(out + done, block, n);
        done += n;
    }
    OPENSSL_cleanse(block, sizeof(block));
    return ok;
}

/* The key-derivation key for this ciphertext. OpenSSL keys it with the
 * private exponent, which a token never reveals; here the secret is the
 * token's private operation on the fixed value 2 (2^d mod n), which only
 * the key's holder can compute either. */
static int ir_kdk(struct p11b_prov *prov, const struct dec_settings *st,
                  const unsigned char *sec, const unsigned char *in,
                  size_t inlen, unsigned char *kdk)
{
    unsigned char blk[1024], key[32];
    size_t k = st->modlen, len = 0;
    unsigned int klen = 0;
    int ok;

    ok = EVP_Digest(sec, k, key, &klen, EVP_sha256(), NULL);
    memset(blk, 0, k); /* the ciphertext, left-padded to the modulus */
    memcpy(blk + (k - inlen), in, inlen);
    ok = ok && EVP_Q_mac(prov->libctx, "HMAC", P11B_SOFT_PROPQ,
                         "SHA256", NULL, key, klen, blk, k, kdk, 32,
                         &len) != NULL;
    OPENSSL_cleanse(key, sizeof(key));
    if (!ok)
        P11B_RAISE(prov, P11B_R_INTERNAL,
                   "implicit rejection: deriving the key failed");
    return ok;
}

/* PKCS#1 v1.5 with implicit rejection on raw decryption `em`: a bad
 * padding yields a synthetic message that depends only on the key and the
 * ciphertext, chosen without branching on the padding's validity. */
int p11b_rsac_unpad_implicit(struct p11b_prov *prov,
                             const struct dec_settings *st,
                             const unsigned char *sec, const unsigned char *em,
                             const unsigned char *in, size_t inlen,
                             unsigned char *out, size_t *outlen)
{
    unsigned char msg[1024], synth[1024], lens[2 * IR_LEN_TRIES], kdk[32];
    unsigned int max = (unsigned int)st->modlen - 10, mask = max, cand;
    unsigned int synlen = 0, lt, good, i;
    unsigned char goodb;
    int n, ok;

    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    ok = ir_kdk(prov, st, sec, in, inlen, kdk) &&
         ir_prf(prov, kdk, "length", lens, sizeof(lens)) &&
         ir_prf(prov, kdk, "message", synth, st->modlen);
    OPENSSL_cleanse(kdk, sizeof(kdk));
    if (!ok)
        return 0;
    /* the last candidate below max - the draft's rule */
    for (i = 0; i < IR_LEN_TRIES; i++) {
        cand = (((unsigned int)lens[2 * i] << 8) | lens[2 * i + 1]) & mask;
        lt = 0U - ((cand - max) >> (sizeof(cand) * 8 - 1));
        synlen = (cand & lt) | (synlen & ~lt);
    }
    memset(msg, 0, sizeof(msg));
    ERR_set_mark();
    n = RSA_padding_check_PKCS1_type_2(msg, (int)sizeof(msg), em,
                                       (int)st->modlen, (int)st->modlen);
    ERR_pop_to_mark(); /* no trace of which check failed */
    good = ~(0U - ((unsigned int)n >> (sizeof(good) * 8 - 1)));
    goodb = (unsigned char)good;
    for (i = 0; i < max - 1; i++)
        out[i] = (unsigned char)((msg[i] & goodb) | (synth[i] & ~goodb));
    *outlen = ((unsigned int)n & good) | (synlen & ~good);
    OPENSSL_cleanse(msg, sizeof(msg));
    OPENSSL_cleanse(synth, sizeof(synth));
    OPENSSL_cleanse(lens, sizeof(lens));
    return 1;
}
