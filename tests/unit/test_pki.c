/* test_pki.c - core/pki: a CA issues a node certificate from a CSR, with the
 * issuer's subject (not the CSR's); it verifies against its CA and not
 * against another; it expires; garbage CSRs and certificates are refused. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/pki.h"
#include "unit.h"

TEST(pki_issues_and_verifies_node_certificates)
{
	struct berr err = {0};
	char *ca = NULL, *cakey = NULL, *key = NULL, *csr = NULL, *cert = NULL;
	CHECK(pki_ca_new("berth test CA", 3600, &ca, &cakey, &err) == 0);
	CHECK(pki_key_new(&key, &err) == 0);
	/* The CSR asks to be "n2"; the issuer decides it is "n1". */
	CHECK(pki_csr_new(key, "n2", &csr, &err) == 0);
	char cn[PKI_NAME_MAX];
	CHECK(pki_csr_check(csr, strlen(csr), cn, &err) == 0);
	CHECK_STR(cn, "n2");
	int64_t not_after = 0;
	struct pki_issue what = {.cn = "n1",
				 .ou = "node",
				 .sans = "IP:127.0.0.1",
				 .ttl_s = 600,
				 .not_after = &not_after};
	CHECK(pki_issue(ca, cakey, csr, &what, &cert, &err) == 0);
	CHECK(pki_key_matches(cert, key));
	struct pki_cert_info info;
	int64_t now = (int64_t)time(NULL);
	CHECK(pki_verify_pem(ca, cert, now, &info, &err) == 0);
	CHECK_STR(info.cn, "n1");
	CHECK_STR(info.ou, "node");
	CHECK(info.not_after >= now + 590 && info.not_after <= now + 610);
	CHECK(not_after == info.not_after); /* told without decoding the result */
	CHECK(strlen(info.fingerprint) == 64);
	/* Expired an hour from now; not yet valid long ago. */
	CHECK(pki_verify_pem(ca, cert, now + 3600, &info, &err) < 0);
	CHECK(strstr(err.msg, "expired") != NULL);
	/* Another CA does not vouch for it. */
	char *ca2 = NULL, *ca2key = NULL;
	CHECK(pki_ca_new("other", 3600, &ca2, &ca2key, &err) == 0);
	CHECK(pki_verify_pem(ca2, cert, now, &info, &err) < 0);
	CHECK(!pki_key_matches(cert, ca2key));
	/* Names that are not DNS:/IP: never reach the issuer. */
	char *bad = NULL;
	what.sans = "URI:http://x,DNS:a";
	CHECK(pki_issue(ca, cakey, csr, &what, &bad, &err) < 0);
	what.sans = "DNS:a,IP:1.2.3.4\n";
	CHECK(pki_issue(ca, cakey, csr, &what, &bad, &err) < 0);
	CHECK(bad == NULL);
	/* A ticket signed by the CA's key checks with its certificate only. */
	char *sig = NULL;
	CHECK(pki_sign_hex(cakey, "logs|t1|99", 10, &sig, &err) == 0);
	CHECK(pki_verify_hex(ca, "logs|t1|99", 10, sig));
	CHECK(!pki_verify_hex(ca, "logs|t2|99", 10, sig));
	CHECK(!pki_verify_hex(ca2, "logs|t1|99", 10, sig));
	CHECK(!pki_verify_hex(ca, "logs|t1|99", 10, "zz"));
	CHECK(!pki_verify_hex(ca, "logs|t1|99", 10, ""));
	free(sig);
	free(ca);
	free(cakey);
	free(ca2);
	free(ca2key);
	free(key);
	free(csr);
	free(cert);
}

TEST(pki_refuses_garbage)
{
	struct berr err = {0};
	char cn[PKI_NAME_MAX];
	const char *junk[] = {"", "hello",
			      "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END "
			      "CERTIFICATE REQUEST-----\n"};
	for (size_t i = 0; i < ARRAY_SIZE(junk); i++)
		CHECK(pki_csr_check(junk[i], strlen(junk[i]), cn, &err) < 0);
	struct pki_cert_info info;
	CHECK(pki_verify_der("x", (const unsigned char *)"abc", 3, 0, &info, &err) < 0);
	CHECK(pki_cert_info("nope", &info, &err) < 0);
	/* A CSR whose signature does not match its key. */
	char *key = NULL, *csr = NULL;
	CHECK(pki_key_new(&key, &err) == 0);
	CHECK(pki_csr_new(key, "n1", &csr, &err) == 0);
	char *p = strstr(csr, "-----END");
	CHECK(p && p - csr > 80);
	p[-10] = p[-10] == 'A' ? 'B' : 'A';
	CHECK(pki_csr_check(csr, strlen(csr), cn, &err) < 0);
	free(key);
	free(csr);
}

TEST(pki_random_and_hashes)
{
	char a[65], b[65];
	pki_random_hex(a, 32);
	pki_random_hex(b, 32);
	CHECK(strlen(a) == 64 && strcmp(a, b));
	char h[65];
	pki_sha256_hex("abc", 3, h);
	CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	CHECK(pki_equal_secret("abc", "abc"));
	CHECK(!pki_equal_secret("abc", "abd"));
	CHECK(!pki_equal_secret("abc", "abcd"));
}

UNIT_MAIN(pki_issues_and_verifies_node_certificates, pki_refuses_garbage, pki_random_and_hashes)
