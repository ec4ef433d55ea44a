/* docker-internal.h - what the Docker Engine API client (docker_api.c)
 * shares with the supervision of a docker task (docker_run.c). */
#ifndef BERTH_DOCKER_INTERNAL_H
#define BERTH_DOCKER_INTERNAL_H

#include <curl/curl.h>
#include <stdio.h>

#include "agent/driver/docker.h"

typedef void (*sink_fn)(void *ud, const char *data, size_t len);

struct xfer {
	CURL *c;
	struct curl_slist *hdrs;
	FILE *upload;
	struct sbuf buf; /* the reply, or an error reply of a stream */
	sink_fn sink;	 /* a successful reply's body goes here, as it comes */
	void *ud;
	char errbuf[CURL_ERROR_SIZE];
	long status;
	CURLcode rc;
	long os_errno;
};

/* A stop check for long transfers: returns true to abandon them. */
struct cancel {
	int wake_fd;
	bool (*check)(void *ud);
	void *ud;
};

struct logs_sink {
	struct docker_demux demux;
	docker_output_fn cb;
	void *ud;
};

const char *docker__sock_or_default(const char *sock);
/* A request on the API's versioned path (the version is negotiated once
 * per socket); 0, or -1 with err set. */
int docker__xfer_api(struct xfer *x, const char *sock, const char *method, const char *path,
		     const char *body, long timeout_ms, struct berr *err);
void docker__xfer_finish(struct xfer *x, CURLcode rc);
void docker__xfer_cleanup(struct xfer *x);
/* The transfer failed for want of a daemon (not an error reply). */
bool docker__xfer_unreachable(const struct xfer *x);
/* "docker is not reachable at 'SOCK': ..." */
int docker__reach_error(struct berr *err, const char *sock, const struct xfer *x);
/* "docker: WHAT: Docker's message" (or the reach error). */
int docker__call_error(struct berr *err, const char *sock, const struct xfer *x, const char *fmt,
		       ...) __attribute__((format(printf, 4, 5)));
/* Pull image unless present: 0 pulled or present, 1 cancelled, -1 error. */
int docker__pull(const char *sock, const char *image, const struct cancel *c, bool *fetched,
		 struct berr *err);
/* Set up GET /containers/ID/logs?follow=1 (tail=0 when only_new) into ls. */
int docker__logs_setup(struct xfer *x, const char *sock, const char *id, bool only_new,
		       struct logs_sink *ls, struct berr *err);

#endif
