#include "core/addr.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

int addr_parse(const char *s, struct sockaddr_in *out, struct berr *err)
{
	const char *p = s;
	if (!strncmp(p, "http://", 7))
		p += 7;
	const char *colon = strrchr(p, ':');
	if (!colon)
		return berr_set(err, 400, "bad address '%s': expected HOST:PORT", s);
	char host[256];
	size_t hl = (size_t)(colon - p);
	if (hl >= sizeof host)
		return berr_set(err, 400, "bad address '%s': host too long", s);
	memcpy(host, p, hl);
	host[hl] = 0;
	char *slash = strchr(colon, '/');
	char portbuf[16];
	size_t pl = slash ? (size_t)(slash - colon - 1) : strlen(colon + 1);
	if (pl == 0 || pl >= sizeof portbuf)
		return berr_set(err, 400, "bad address '%s': expected a port", s);
	memcpy(portbuf, colon + 1, pl);
	portbuf[pl] = 0;
	int64_t port;
	if (parse_int64(portbuf, &port) < 0 || port < 0 || port > 65535)
		return berr_set(err, 400, "bad address '%s': bad port '%s'", s, portbuf);
	memset(out, 0, sizeof *out);
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)port);
	if (!*host || !strcmp(host, "0.0.0.0"))
		out->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (!strcmp(host, "localhost"))
		out->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
		return berr_set(err, 400, "bad address '%s': '%s' is not an IPv4 address", s, host);
	return 0;
}

char *addr_to_url(const char *s)
{
	if (!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8)) {
		size_t n = strlen(s);
		while (n > 0 && s[n - 1] == '/')
			n--;
		return xstrndup(s, n);
	}
	return xasprintf("http://%s", s);
}
