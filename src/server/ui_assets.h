/* ui_assets.h - the web UI's files (ui/), built into the binary: the table
 * is generated at build time by scripts/embed.sh (build/gen/ui_assets.c). */
#ifndef BERTH_UI_ASSETS_H
#define BERTH_UI_ASSETS_H

#include <stddef.h>

struct ui_asset {
	const char *path; /* relative to ui/: "index.html", "app.js" */
	const char *type; /* its Content-Type */
	const char *etag; /* a quoted hash of its bytes */
	const unsigned char *data;
	size_t len;
};

extern const struct ui_asset ui_assets[];
extern const size_t ui_assets_count;

#endif
