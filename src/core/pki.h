/* pki.h - the cluster's certificates (docs/security.md): a certificate
 * authority, keys, certificate requests, issuing and checking. Everything
 * goes in and out as PEM text; keys are ECDSA P-256.
 *
 * A certificate berth issues names what it is for in its subject's
 * organizational unit: "server" (a berth server's HTTPS), "node" (an
 * agent, its common name the node's name) or "ca". A node can only speak
 * for the node its certificate names.
 *
 * Input from the network (a CSR, a peer's certificate) is untrusted: the
 * parsers bound what they read and fail with a message, never crash
 * (fuzz/fuzz_pki.c). */
#ifndef BERTH_PKI_H
#define BERTH_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define PKI_NAME_MAX 128

struct pki_cert_info {
	char cn[PKI_NAME_MAX]; /* subject common name */
	char ou[32];	       /* "server", "node", "ca" */
	int64_t not_before;    /* unix seconds */
	int64_t not_after;     /* unix seconds */
	char fingerprint[65];  /* sha256 of the DER, hex */
};

/* A new ECDSA P-256 private key. */
int pki_key_new(char **key_pem, struct berr *err);
/* A self-signed CA valid for ttl_s seconds. */
int pki_ca_new(const char *cn, int64_t ttl_s, char **cert_pem, char **key_pem, struct berr *err);
/* A certificate request for key_pem, its subject CN=cn. */
int pki_csr_new(const char *key_pem, const char *cn, char **csr_pem, struct berr *err);
/* Parse a CSR (untrusted), check its signature; *cn gets its subject's
 * common name ("" when none). */
int pki_csr_check(const char *csr_pem, size_t len, char cn[PKI_NAME_MAX], struct berr *err);

struct pki_issue {
	const char *cn;	    /* the subject's common name (the CSR's is ignored) */
	const char *ou;	    /* "server" or "node" */
	const char *sans;   /* comma-separated "DNS:name" / "IP:addr", or NULL */
	int64_t ttl_s;	    /* lifetime from now */
	bool server_auth;   /* usable as a TLS server (else client only) */
	int64_t *not_after; /* if set: the certificate's end (unix seconds) */
};
/* Sign the CSR's public key with the CA, once the CSR's own signature
 * verifies. The subject and extensions are the issuer's choice, never the
 * CSR's. One decoding of the CSR and none of the result (OpenSSL 3 takes
 * ~1 ms per decoding: it counts in a join storm). */
int pki_issue(const char *ca_cert_pem, const char *ca_key_pem, const char *csr_pem,
	      const struct pki_issue *what, char **cert_pem, struct berr *err);

/* What a certificate says (no check of who signed it). */
int pki_cert_info(const char *cert_pem, struct pki_cert_info *info, struct berr *err);
/* Check a DER certificate (a TLS peer's) against the CA at time `now`
 * (unix seconds): signature, validity period. Fills info. */
int pki_verify_der(const char *ca_pem, const unsigned char *der, size_t len, int64_t now,
		   struct pki_cert_info *info, struct berr *err);
/* The same for PEM. */
int pki_verify_pem(const char *ca_pem, const char *cert_pem, int64_t now,
		   struct pki_cert_info *info, struct berr *err);
/* Does key_pem belong to cert_pem? */
bool pki_key_matches(const char *cert_pem, const char *key_pem);

/* A signature of data by a private key (the CA's: an agent checks with the
 * CA certificate it holds that a ticket comes from a server), as hex. */
int pki_sign_hex(const char *key_pem, const void *data, size_t len, char **sig_hex,
		 struct berr *err);
/* Does sig_hex (untrusted) sign data with cert_pem's key? */
bool pki_verify_hex(const char *cert_pem, const void *data, size_t len, const char *sig_hex);

/* nbytes of the system's CSPRNG as 2*nbytes hex characters (out holds
 * 2*nbytes+1). Aborts if the CSPRNG fails: no key is made from less. */
void pki_random_hex(char *out, size_t nbytes);
/* SHA-256 as 64 hex characters (out holds 65). */
void pki_sha256_hex(const void *data, size_t len, char out[65]);
/* Constant-time comparison of two equal-length strings. */
bool pki_equal_secret(const char *a, const char *b);

#endif
