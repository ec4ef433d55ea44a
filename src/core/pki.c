/* pki.c - certificates with OpenSSL (pki.h). */
#include "core/pki.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Untrusted PEM is bounded: a CSR or a certificate is a few hundred bytes. */
#define PEM_MAX (64 * 1024)

static int fail_ssl(struct berr *err, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "";
	if (e)
		ERR_error_string_n(e, buf, sizeof buf);
	ERR_clear_error();
	return berr_set(err, 400, "%s%s%s", what, *buf ? ": " : "", buf);
}

static char *bio_text(BIO *b)
{
	char *data;
	long n = BIO_get_mem_data(b, &data);
	char *s = xmalloc((size_t)n + 1);
	memcpy(s, data, (size_t)n);
	s[n] = 0;
	return s;
}

static EVP_PKEY *key_read(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	return k;
}

static X509 *cert_read(const char *pem, size_t len)
{
	if (!pem || len > PEM_MAX)
		return NULL;
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	return x;
}

/* The cluster CA is parsed once, not at every certificate or ticket it
 * signs (OpenSSL 3 takes ~1 ms to read a key from PEM): one remembered
 * certificate and one key, compared by their text, handed out with a new
 * reference each. */
static pthread_mutex_t parsed_lock = PTHREAD_MUTEX_INITIALIZER;
static char *parsed_key_pem, *parsed_cert_pem;
static EVP_PKEY *parsed_key;
static X509 *parsed_cert;

static EVP_PKEY *key_read_cached(const char *pem)
{
	pthread_mutex_lock(&parsed_lock);
	if (!parsed_key_pem || strcmp(parsed_key_pem, pem)) {
		EVP_PKEY *k = key_read(pem);
		if (k) {
			EVP_PKEY_free(parsed_key);
			if (parsed_key_pem)
				OPENSSL_cleanse(parsed_key_pem, strlen(parsed_key_pem));
			free(parsed_key_pem);
			parsed_key = k;
			parsed_key_pem = xstrdup(pem);
		} else {
			pthread_mutex_unlock(&parsed_lock);
			return NULL;
		}
	}
	EVP_PKEY *k = parsed_key;
	EVP_PKEY_up_ref(k);
	pthread_mutex_unlock(&parsed_lock);
	return k;
}

static X509 *cert_read_cached(const char *pem)
{
	size_t len = strlen(pem);
	pthread_mutex_lock(&parsed_lock);
	if (!parsed_cert_pem || strcmp(parsed_cert_pem, pem)) {
		X509 *x = cert_read(pem, len);
		if (!x) {
			pthread_mutex_unlock(&parsed_lock);
			return NULL;
		}
		X509_free(parsed_cert);
		free(parsed_cert_pem);
		parsed_cert = x;
		parsed_cert_pem = xstrdup(pem);
	}
	X509 *x = parsed_cert;
	X509_up_ref(x);
	pthread_mutex_unlock(&parsed_lock);
	return x;
}

static char *cert_pem_text(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, x);
	char *s = bio_text(b);
	BIO_free(b);
	return s;
}

int pki_key_new(char **key_pem, struct berr *err)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!k)
		return fail_ssl(err, "cannot make a key");
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	*key_pem = bio_text(b);
	BIO_free(b);
	EVP_PKEY_free(k);
	return 0;
}

static void name_set(X509_NAME *n, const char *cn, const char *ou)
{
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"berth", -1, -1,
				   0);
	if (ou)
		X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8, (const unsigned char *)ou, -1,
					   -1, 0);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!e)
		return -1;
	int r = X509_add_ext(x, e, -1) ? 0 : -1;
	X509_EXTENSION_free(e);
	return r;
}

static void serial_random(X509 *x)
{
	unsigned char raw[16];
	if (RAND_bytes(raw, sizeof raw) != 1)
		abort();
	raw[0] &= 0x7f; /* positive */
	BIGNUM *bn = BN_bin2bn(raw, sizeof raw, NULL);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
}

/* Backdated a minute: clocks of a cluster's machines differ a little. */
static void validity_set(X509 *x, int64_t ttl_s)
{
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), (long)ttl_s);
}

int pki_ca_new(const char *cn, int64_t ttl_s, char **cert_pem, char **key_pem, struct berr *err)
{
	if (pki_key_new(key_pem, err) < 0)
		return -1;
	EVP_PKEY *k = key_read(*key_pem);
	X509 *x = X509_new();
	X509_set_version(x, 2);
	serial_random(x);
	validity_set(x, ttl_s);
	name_set(X509_get_subject_name(x), cn, "ca");
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_set_pubkey(x, k);
	int r = -1;
	if (add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
	    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    add_ext(x, x, NID_subject_key_identifier, "hash") < 0 ||
	    !X509_sign(x, k, EVP_sha256())) {
		fail_ssl(err, "cannot make the cluster CA");
	} else {
		*cert_pem = cert_pem_text(x);
		r = 0;
	}
	X509_free(x);
	EVP_PKEY_free(k);
	if (r < 0) {
		free(*key_pem);
		*key_pem = NULL;
	}
	return r;
}

int pki_csr_new(const char *key_pem, const char *cn, char **csr_pem, struct berr *err)
{
	EVP_PKEY *k = key_read(key_pem);
	if (!k)
		return fail_ssl(err, "cannot read the private key");
	X509_REQ *rq = X509_REQ_new();
	X509_REQ_set_version(rq, 0);
	name_set(X509_REQ_get_subject_name(rq), cn, NULL);
	X509_REQ_set_pubkey(rq, k);
	int r = 0;
	if (!X509_REQ_sign(rq, k, EVP_sha256())) {
		r = fail_ssl(err, "cannot sign the certificate request");
	} else {
		BIO *b = BIO_new(BIO_s_mem());
		PEM_write_bio_X509_REQ(b, rq);
		*csr_pem = bio_text(b);
		BIO_free(b);
	}
	X509_REQ_free(rq);
	EVP_PKEY_free(k);
	return r;
}

static void name_get(X509_NAME *n, int nid, char *out, size_t cap)
{
	out[0] = 0;
	int i = X509_NAME_get_index_by_NID(n, nid, -1);
	if (i < 0)
		return;
	ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
	unsigned char *utf8 = NULL;
	int len = ASN1_STRING_to_UTF8(&utf8, s);
	if (len < 0)
		return;
	/* A name with a NUL or a control character is not a name. */
	bool ok = (size_t)len < cap;
	for (int k = 0; ok && k < len; k++)
		if (utf8[k] < 0x20 || utf8[k] == 0x7f)
			ok = false;
	if (ok) {
		memcpy(out, utf8, (size_t)len);
		out[len] = 0;
	}
	OPENSSL_free(utf8);
}

static X509_REQ *csr_read(const char *pem, size_t len, struct berr *err)
{
	if (!pem || len == 0 || len > PEM_MAX) {
		berr_set(err, 400, "certificate request: expected PEM text of at most %d bytes",
			 PEM_MAX);
		return NULL;
	}
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509_REQ *rq = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (!rq) {
		fail_ssl(err, "certificate request: not a PEM CERTIFICATE REQUEST");
		return NULL;
	}
	EVP_PKEY *k = X509_REQ_get0_pubkey(rq);
	if (!k || X509_REQ_verify(rq, k) != 1) {
		X509_REQ_free(rq);
		fail_ssl(err, "certificate request: its signature does not verify");
		return NULL;
	}
	return rq;
}

int pki_csr_check(const char *csr_pem, size_t len, char cn[PKI_NAME_MAX], struct berr *err)
{
	X509_REQ *rq = csr_read(csr_pem, len, err);
	if (!rq)
		return -1;
	name_get(X509_REQ_get_subject_name(rq), NID_commonName, cn, PKI_NAME_MAX);
	X509_REQ_free(rq);
	return 0;
}

/* "DNS:a,IP:1.2.3.4": only those two kinds, no other syntax reaches OpenSSL's
 * configuration parser. */
static bool sans_ok(const char *sans)
{
	for (const char *p = sans; *p;) {
		if (strncmp(p, "DNS:", 4) && strncmp(p, "IP:", 3))
			return false;
		p += p[0] == 'D' ? 4 : 3;
		size_t n = strcspn(p, ",");
		if (!n || n > 253)
			return false;
		for (size_t i = 0; i < n; i++) {
			char ch = p[i];
			if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			      (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == ':' ||
			      ch == '*'))
				return false;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return true;
}

static int64_t asn1_unix(const ASN1_TIME *t)
{
	struct tm tm;
	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

int pki_issue(const char *ca_cert_pem, const char *ca_key_pem, const char *csr_pem,
	      const struct pki_issue *what, char **cert_pem, struct berr *err)
{
	if (what->sans && *what->sans && !sans_ok(what->sans))
		return berr_set(err, 400,
				"certificate names: expected DNS:NAME or IP:ADDRESS, "
				"comma-separated");
	X509_REQ *rq = csr_read(csr_pem, strlen(csr_pem), err);
	if (!rq)
		return -1;
	X509 *ca = cert_read_cached(ca_cert_pem);
	EVP_PKEY *cakey = key_read_cached(ca_key_pem);
	X509 *x = X509_new();
	int r = -1;
	if (!ca || !cakey) {
		fail_ssl(err, "cannot read the cluster CA");
		goto out;
	}
	X509_set_version(x, 2);
	serial_random(x);
	validity_set(x, what->ttl_s);
	name_set(X509_get_subject_name(x), what->cn, what->ou);
	X509_set_issuer_name(x, X509_get_subject_name(ca));
	X509_set_pubkey(x, X509_REQ_get0_pubkey(rq));
	char eku[64];
	snprintf(eku, sizeof eku, "%s", what->server_auth ? "serverAuth,clientAuth" : "clientAuth");
	if (add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, ca, NID_key_usage, "critical,digitalSignature,keyAgreement") < 0 ||
	    add_ext(x, ca, NID_ext_key_usage, eku) < 0 ||
	    add_ext(x, ca, NID_authority_key_identifier, "keyid:always") < 0 ||
	    (what->sans && *what->sans && add_ext(x, ca, NID_subject_alt_name, what->sans) < 0) ||
	    !X509_sign(x, cakey, EVP_sha256())) {
		fail_ssl(err, "cannot issue the certificate");
		goto out;
	}
	*cert_pem = cert_pem_text(x);
	if (what->not_after)
		*what->not_after = asn1_unix(X509_get0_notAfter(x));
	r = 0;
out:
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(cakey);
	X509_REQ_free(rq);
	return r;
}

static void info_fill(X509 *x, struct pki_cert_info *info)
{
	memset(info, 0, sizeof *info);
	name_get(X509_get_subject_name(x), NID_commonName, info->cn, sizeof info->cn);
	name_get(X509_get_subject_name(x), NID_organizationalUnitName, info->ou, sizeof info->ou);
	info->not_before = asn1_unix(X509_get0_notBefore(x));
	info->not_after = asn1_unix(X509_get0_notAfter(x));
	unsigned char md[32];
	unsigned int n = 0;
	X509_digest(x, EVP_sha256(), md, &n);
	for (unsigned i = 0; i < n && i < 32; i++)
		snprintf(info->fingerprint + 2 * i, 3, "%02x", md[i]);
}

int pki_cert_info(const char *cert_pem, struct pki_cert_info *info, struct berr *err)
{
	X509 *x = cert_read(cert_pem, cert_pem ? strlen(cert_pem) : 0);
	if (!x)
		return fail_ssl(err, "not a PEM certificate");
	info_fill(x, info);
	X509_free(x);
	return 0;
}

static int verify_x509(const char *ca_pem, X509 *x, int64_t now, struct pki_cert_info *info,
		       struct berr *err)
{
	X509 *ca = strlen(ca_pem) <= PEM_MAX ? cert_read_cached(ca_pem) : NULL;
	if (!ca) {
		X509_free(x);
		return fail_ssl(err, "cannot read the cluster CA");
	}
	X509_STORE *st = X509_STORE_new();
	X509_STORE_add_cert(st, ca);
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	X509_STORE_CTX_init(ctx, st, x, NULL);
	X509_STORE_CTX_set_time(ctx, 0, (time_t)now);
	int ok = X509_verify_cert(ctx);
	int r = 0;
	if (ok != 1) {
		int e = X509_STORE_CTX_get_error(ctx);
		r = berr_set(err, 401, "certificate refused: %s", X509_verify_cert_error_string(e));
	} else {
		info_fill(x, info);
	}
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	X509_free(ca);
	X509_free(x);
	ERR_clear_error();
	return r;
}

int pki_verify_der(const char *ca_pem, const unsigned char *der, size_t len, int64_t now,
		   struct pki_cert_info *info, struct berr *err)
{
	if (!der || !len || len > PEM_MAX)
		return berr_set(err, 401, "certificate refused: empty or too large");
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	if (!x)
		return fail_ssl(err, "certificate refused: not DER");
	return verify_x509(ca_pem, x, now, info, err);
}

int pki_verify_pem(const char *ca_pem, const char *cert_pem, int64_t now,
		   struct pki_cert_info *info, struct berr *err)
{
	X509 *x = cert_read(cert_pem, cert_pem ? strlen(cert_pem) : 0);
	if (!x)
		return fail_ssl(err, "certificate refused: not PEM");
	return verify_x509(ca_pem, x, now, info, err);
}

bool pki_key_matches(const char *cert_pem, const char *key_pem)
{
	X509 *x = cert_read(cert_pem, cert_pem ? strlen(cert_pem) : 0);
	EVP_PKEY *k = key_pem ? key_read(key_pem) : NULL;
	bool ok = x && k && X509_check_private_key(x, k) == 1;
	X509_free(x);
	EVP_PKEY_free(k);
	ERR_clear_error();
	return ok;
}

int pki_sign_hex(const char *key_pem, const void *data, size_t len, char **sig_hex,
		 struct berr *err)
{
	EVP_PKEY *k = key_read_cached(key_pem);
	if (!k)
		return fail_ssl(err, "cannot read the signing key");
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char sig[256];
	size_t n = sizeof sig;
	int r = 0;
	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k) != 1 ||
	    EVP_DigestSign(md, sig, &n, data, len) != 1) {
		r = fail_ssl(err, "cannot sign");
	} else {
		*sig_hex = xmalloc(2 * n + 1);
		for (size_t i = 0; i < n; i++)
			snprintf(*sig_hex + 2 * i, 3, "%02x", sig[i]);
	}
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
	return r;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool pki_verify_hex(const char *cert_pem, const void *data, size_t len, const char *sig_hex)
{
	size_t hl = sig_hex ? strlen(sig_hex) : 0;
	if (!hl || hl % 2 || hl > 512)
		return false;
	unsigned char sig[256];
	for (size_t i = 0; i < hl / 2; i++) {
		int hi = hexval(sig_hex[2 * i]), lo = hexval(sig_hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		sig[i] = (unsigned char)(hi << 4 | lo);
	}
	X509 *x = cert_pem && strlen(cert_pem) <= PEM_MAX ? cert_read_cached(cert_pem) : NULL;
	EVP_PKEY *k = x ? X509_get0_pubkey(x) : NULL;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = k && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k) == 1 &&
		  EVP_DigestVerify(md, sig, hl / 2, data, len) == 1;
	EVP_MD_CTX_free(md);
	X509_free(x);
	ERR_clear_error();
	return ok;
}

void pki_random_hex(char *out, size_t nbytes)
{
	unsigned char buf[64];
	size_t done = 0;
	while (done < nbytes) {
		size_t n = nbytes - done < sizeof buf ? nbytes - done : sizeof buf;
		if (RAND_bytes(buf, (int)n) != 1)
			abort();
		for (size_t i = 0; i < n; i++)
			snprintf(out + 2 * (done + i), 3, "%02x", buf[i]);
		done += n;
	}
	out[2 * nbytes] = 0;
}

void pki_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256(data, len, md);
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

bool pki_equal_secret(const char *a, const char *b)
{
	size_t n = strlen(a);
	return n == strlen(b) && CRYPTO_memcmp(a, b, n) == 0;
}
