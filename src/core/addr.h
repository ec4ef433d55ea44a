/* addr.h - "HOST:PORT" and "http://HOST:PORT" parsing. */
#ifndef BERTH_ADDR_H
#define BERTH_ADDR_H

#include <netinet/in.h>

#include "core/util.h"

/* Parse "HOST:PORT", "http://HOST:PORT" or ":PORT" (all interfaces) into an
 * IPv4 socket address. HOST is a dotted quad, "localhost" or empty. */
int addr_parse(const char *s, struct sockaddr_in *out, struct berr *err);

/* Normalise to "http://HOST:PORT" (new string). */
char *addr_to_url(const char *s);

#endif
